//! Start-up: check that the CRDs are served (and readable) wherever they
//! will be watched, then run the two loops side by side — the bundle loop
//! ([`crate::reconcile`]) and the Approval lifecycle
//! ([`crate::approvals`]).

use crate::config::{Error, MANAGER, OperatorConfig};
use crate::scope;
use kube::Client;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use palisade_crds::{AIPolicy, Approval, ToolGrant};
use std::sync::Arc;

/// Runs until the task is dropped. Fails only when the CRDs are missing
/// (or cannot be listed).
pub async fn run(client: Client, config: OperatorConfig) -> Result<(), Error> {
    tracing::info!(
        "reading AIPolicies, ToolGrants and Approvals in {}",
        scope::describe(&config.watch_namespaces)
    );
    check_crds(&client, &config.watch_namespaces).await?;
    let lifecycle = crate::approvals::Lifecycle {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(config.instance.clone()),
            },
        ),
        audit: config.audit.clone(),
        retention: config.approval_retention,
        metrics: Arc::clone(&config.metrics),
        audited: Default::default(),
        namespaces: config.watch_namespaces.clone(),
        webhook: crate::approvals::Webhook::new(),
        notified: Default::default(),
    };
    tokio::select! {
        result = crate::reconcile::run(client, config) => result,
        () = crate::approvals::run(lifecycle) => Ok(()),
    }
}

/// Lists each kind once where it will be watched (cluster-wide, or in
/// each watched namespace), so a missing CRD or a missing RoleBinding
/// says so at start-up.
async fn check_crds(client: &Client, namespaces: &[String]) -> Result<(), Error> {
    let lp = ListParams::default().limit(1);
    let mut results = Vec::new();
    for api in scope::apis::<AIPolicy>(client, namespaces) {
        results.push(api.list_metadata(&lp).await.map(|_| ()));
    }
    for api in scope::apis::<ToolGrant>(client, namespaces) {
        results.push(api.list_metadata(&lp).await.map(|_| ()));
    }
    for api in scope::apis::<Approval>(client, namespaces) {
        results.push(api.list_metadata(&lp).await.map(|_| ()));
    }
    for result in results {
        match result {
            Err(kube::Error::Api(e)) if e.code == 404 => {
                return Err(Error::CrdsMissing(e.message.clone()));
            }
            Err(e) => return Err(Error::Kube(e)),
            Ok(()) => {}
        }
    }
    Ok(())
}
