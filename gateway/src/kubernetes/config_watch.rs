//! The operator's configuration Secret, watched through the API: each new
//! revision is decoded, swapped in and reported in the gateway's Lease; one
//! that does not decode is counted and logged, and the previous revision
//! keeps serving.

use super::ClusterSource;
use super::lease_report::{renew, report};
use crate::metrics::GatewayMetrics;
use crate::snapshot::{Current, Snapshot};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;

/// Watches the configuration Secret until the task is aborted.
pub fn watch(
    client: kube::Client,
    source: ClusterSource,
    current: Current,
    metrics: Arc<GatewayMetrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &source.namespace);
        let config =
            watcher::Config::default().fields(&format!("metadata.name={}", source.secret_name));
        let mut events = watcher(secrets, config).boxed();
        let _renewing = renew(client.clone(), source.clone(), current.clone());
        while let Some(event) = events.next().await {
            let secret = match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => s,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "configuration watch error (retrying)");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            match palisade_crds::bundle_secret::decode(&secret) {
                Ok(bundle) => {
                    let snapshot = Snapshot::new(bundle);
                    let revision = snapshot.revision().to_owned();
                    if current
                        .load()
                        .as_ref()
                        .is_some_and(|s| s.revision() == revision)
                    {
                        continue;
                    }
                    metrics.served(&revision, snapshot.loaded_at);
                    current.store(Some(Arc::new(snapshot)));
                    tracing::info!(revision, "configuration applied");
                    if let Err(e) = report(&client, &source, &revision).await {
                        tracing::warn!(error = %e, "cannot report the applied revision");
                    }
                }
                Err(e) => {
                    metrics.config_reload_errors.inc();
                    tracing::error!(error = %e, "configuration rejected; the previous one keeps serving");
                }
            }
        }
    })
}
