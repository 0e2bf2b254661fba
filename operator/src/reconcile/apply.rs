//! The last stage of a bundle pass: writes what [`super::plan`] planned
//! (the loop runs only while this replica leads, so only the leader
//! writes). Every write is a server-side apply with the operator's field
//! manager. Each status update publishes its Events first, then writes
//! the status; every update is tried even when one fails, so one object
//! the API server refuses does not hold back the others.

use super::plan::{Counts, Plan, Status, StatusUpdate};
use crate::config::MANAGER;
use crate::events::publish;
use crate::metrics::OperatorMetrics;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::Recorder;
use kube::{Client, Resource};
use palisade_crds::{AIPolicy, ToolGrant};
use serde::Serialize;
use serde_json::json;

/// Server-side apply with the operator's field manager, forced: the
/// operator owns what it writes (the Secret, the status subresources).
fn owned() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Writes the bundle Secret.
pub async fn write_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    secret: &Secret,
) -> Result<(), kube::Error> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    secrets.patch(name, &owned(), &Patch::Apply(secret)).await?;
    Ok(())
}

/// Publishes each update's Events, then writes its status. Returns the
/// first error once every update has been tried.
pub async fn write_statuses(
    client: &Client,
    recorder: &Recorder,
    updates: &[StatusUpdate],
) -> Result<(), kube::Error> {
    let mut first_error = None;
    for update in updates {
        for event in &update.events {
            publish(recorder, event).await;
        }
        let (ns, name) = (&update.object.namespace, &update.object.name);
        let written = match &update.status {
            Status::Policy(s) => patch_status::<AIPolicy>(client, ns, name, s).await,
            Status::Grant(s) => patch_status::<ToolGrant>(client, ns, name, s).await,
        };
        if let Err(e) = written {
            tracing::warn!(object = %update.object, error = %e, "cannot write status");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn patch_status<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &impl Serialize,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    let objects = Api::<K>::namespaced(client.clone(), namespace);
    objects
        .patch_status(name, &owned(), &Patch::Apply(body))
        .await?;
    Ok(())
}

/// Counts what the pass found, and logs and counts what it could not plan.
pub fn record(metrics: &OperatorMetrics, plan: &Plan) {
    let Counts {
        policies,
        grants,
        bundle_bytes,
        bundle_too_large,
    } = &plan.counts;
    metrics.policies.reset();
    for (state, n) in policies {
        metrics.policies.with_label_values(&[*state]).set(*n);
    }
    metrics.grants.reset();
    for (state, n) in grants {
        metrics.grants.with_label_values(&[*state]).set(*n);
    }
    if let Some(size) = bundle_bytes {
        metrics
            .bundle_bytes
            .set(i64::try_from(*size).unwrap_or(i64::MAX));
    }
    if *bundle_too_large {
        metrics
            .errors
            .with_label_values(&["bundle_too_large"])
            .inc();
    }
    for failure in &plan.failures {
        metrics.errors.with_label_values(&["panic"]).inc();
        tracing::error!(object = %failure.object, panic = %failure.panic, "cannot plan this object's status; the others carry on");
    }
}
