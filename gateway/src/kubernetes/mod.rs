//! The gateway in a cluster.
//!
//! - [`config_watch`]: the one Secret the operator writes, watched through
//!   the API (not a mounted volume: a kill switch must land in
//!   milliseconds), decoded and swapped in; a bundle that does not decode
//!   is rejected and the previous one keeps serving.
//! - [`lease_report`]: the revision this gateway applied, in its own Lease
//!   (narrow RBAC: leases in the installation's namespace), for the
//!   operator to count.
//! - [`token_review`]: agents inside the cluster authenticate with their
//!   ServiceAccount token, checked with a TokenReview (cached briefly);
//!   [`crate::auth`] maps the account to its agent.
//! - [`WatchNamespaces`]: where Approvals may be created and read
//!   (`--watch-namespaces`, the operator's list).
//!
//! Every request is namespaced, except the TokenReview (a cluster-scoped
//! create, nothing listed): the configuration Secret and the report Lease
//! in the installation's namespace, Approvals in the agent's namespace
//! (one object, by name; a long-poll watches that one name). Nothing is
//! listed or watched cluster-wide, so the gateway needs no cluster-wide
//! read access when the installation watches only some namespaces.

pub mod config_watch;
pub mod lease_report;
pub mod token_review;

pub use config_watch::watch;
pub use token_review::TokenReviewer;

use std::sync::Arc;

/// Where the gateway finds its configuration in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSource {
    pub namespace: String,
    pub secret_name: String,
    /// This gateway's name in reports (the pod name).
    pub instance: String,
}

pub use palisade_crds::namespaces::NotANamespace;

/// The namespaces this gateway creates and reads Approvals in (the
/// operator's `--watch-namespaces`; empty: every namespace). An agent of
/// another namespace cannot get into the configuration the operator
/// compiles; this refuses, fail closed, anything that would still reach
/// an Approval there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchNamespaces(Arc<[String]>);

impl WatchNamespaces {
    /// Parses `ns1,ns2` (the flag, or `PALISADE_WATCH_NAMESPACES`): blanks
    /// and empty items are ignored, duplicates dropped; a name that is not
    /// a valid namespace name fails.
    pub fn parse(list: &str) -> Result<Self, NotANamespace> {
        palisade_crds::namespaces::parse_list(list).map(|names| Self(names.into()))
    }

    /// Whether approvals in `namespace` may be created and read.
    pub fn contains(&self, namespace: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|n| n == namespace)
    }

    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }

    /// The namespaces named (empty: every namespace).
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// How the list reads in logs.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            "all namespaces".into()
        } else {
            format!("namespaces {}", self.0.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WatchNamespaces;

    #[test]
    fn watch_namespaces_are_a_trimmed_list_and_empty_means_every_namespace() {
        let all = WatchNamespaces::parse(" , ").unwrap();
        assert!(all.is_all() && all.contains("anything"));
        let two = WatchNamespaces::parse(" clinic, billing,,clinic ").unwrap();
        assert_eq!(two.describe(), "namespaces clinic, billing");
        assert!(two.contains("clinic") && two.contains("billing"));
        assert!(!two.contains("other") && !two.contains(""));
        for bad in ["Clinic", "a_b", "-a", "a-", "a/b"] {
            let err = WatchNamespaces::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a namespace name"), "{bad}: {err}");
        }
    }
}
