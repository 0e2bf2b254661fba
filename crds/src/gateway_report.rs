//! The gateways' half of the contract with the operator (the operator's
//! half is [`crate::bundle_secret`]): each gateway reports the revision it
//! applied in a Lease of its own, `palisade-gateway-<instance>` in the
//! installation's namespace, labelled as a gateway's, renewed
//! periodically. The operator watches those Leases by label and shows in
//! each policy's status how many fresh gateways applied its revision.
//! Both sides build and read the Lease here, so they cannot drift.

use crate::labels;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

/// The name of a gateway's Lease is this prefix and its instance (pod) name.
pub const LEASE_PREFIX: &str = "palisade-gateway-";
/// Annotation with the revision the gateway applied.
pub const APPLIED_REVISION_ANNOTATION: &str = "palisade.dev/applied-revision";

/// The Lease of gateway `instance`.
pub fn lease_name(instance: &str) -> String {
    format!("{LEASE_PREFIX}{instance}")
}

/// The label selector of every gateway's Lease
/// (`app.kubernetes.io/component=gateway`).
pub fn label_selector() -> String {
    format!("{}={}", labels::COMPONENT, labels::GATEWAY)
}

/// The report gateway `instance` writes (server-side apply) once it
/// applied `revision`, renewed at `now`.
pub fn report(instance: &str, revision: &str, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(instance)),
            labels: Some(
                [
                    (labels::PART_OF.to_owned(), labels::PALISADE.to_owned()),
                    (labels::COMPONENT.to_owned(), labels::GATEWAY.to_owned()),
                ]
                .into(),
            ),
            annotations: Some(
                [(APPLIED_REVISION_ANNOTATION.to_owned(), revision.to_owned())].into(),
            ),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(instance.to_owned()),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// The revision a gateway's Lease reports, if any.
pub fn applied_revision(lease: &Lease) -> Option<&str> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(APPLIED_REVISION_ANNOTATION)
        .map(String::as_str)
}

/// When the gateway last renewed its report.
pub fn renewed_at(lease: &Lease) -> Option<Timestamp> {
    Some(lease.spec.as_ref()?.renew_time.as_ref()?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_and_matches_the_operators_selector() {
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let lease = report("gw-0", "rev-7", now);
        assert_eq!(
            lease.metadata.name.as_deref(),
            Some("palisade-gateway-gw-0")
        );
        assert_eq!(applied_revision(&lease), Some("rev-7"));
        assert_eq!(renewed_at(&lease), Some(now));
        let (key, value) = label_selector()
            .split_once('=')
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .unwrap();
        assert_eq!(lease.metadata.labels.unwrap().get(&key), Some(&value));
        // Server-side apply needs the kind in the body.
        let body = serde_json::to_value(report("gw-0", "rev-7", now)).unwrap();
        assert_eq!(
            (body["apiVersion"].as_str(), body["kind"].as_str()),
            (Some("coordination.k8s.io/v1"), Some("Lease"))
        );
    }
}
