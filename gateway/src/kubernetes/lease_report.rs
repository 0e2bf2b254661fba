//! The revision this gateway applied, reported in its own Lease
//! (`palisade-gateway-<instance>` in the installation's namespace, built by
//! [`palisade_crds::gateway_report`], which the operator reads) with
//! server-side apply, and renewed every [`REPORT_EVERY`] so the operator
//! can tell live gateways from gone ones.

use super::ClusterSource;
use crate::snapshot::Current;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use palisade_crds::gateway_report;
use std::time::Duration;

/// How often a gateway renews its applied-revision report.
pub const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Writes `revision` into this gateway's Lease (its shape is
/// [`palisade_crds::gateway_report`]'s, which the operator reads).
pub async fn report(
    client: &kube::Client,
    source: &ClusterSource,
    revision: &str,
) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &source.namespace);
    let lease = gateway_report::report(&source.instance, revision, jiff::Timestamp::now());
    leases
        .patch(
            &gateway_report::lease_name(&source.instance),
            &PatchParams::apply("palisade-gateway").force(),
            &Patch::Apply(lease),
        )
        .await?;
    Ok(())
}

/// Renews the report of whatever `current` serves, every
/// [`REPORT_EVERY`], until aborted (or dropped: see [`AbortOnDrop`]).
pub fn renew(client: kube::Client, source: ClusterSource, current: Current) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(REPORT_EVERY).await;
            if let Some(s) = current.load_full()
                && let Err(e) = report(&client, &source, s.revision()).await
            {
                tracing::warn!(error = %e, "cannot renew the applied-revision report");
            }
        }
    }))
}

/// A task that ends with its owner.
#[derive(Debug)]
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
