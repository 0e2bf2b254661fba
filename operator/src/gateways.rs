//! Which revision the gateways applied. Each gateway reports it in a Lease
//! of its own (the format is `palisade_crds::gateway_report`); the bundle
//! loop watches those Leases and shows, in each policy's status, how many
//! fresh gateways applied the revision that serves it — or a later one,
//! because every revision this operator writes contains what the earlier
//! ones served. To compare revisions (content hashes, not counters) the
//! operator keeps the order in which it wrote them: [`History`].

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use palisade_crds::gateway_report;
use std::collections::VecDeque;
use std::time::Duration;

/// A gateway report older than this does not count (the pod is gone).
pub const GATEWAY_FRESHNESS: Duration = Duration::from_secs(90);

/// The watch of the gateways' Leases in the installation's namespace.
pub fn watch(client: &Client, namespace: &str) -> (Api<Lease>, watcher::Config) {
    (
        Api::namespaced(client.clone(), namespace),
        watcher::Config::default().labels(&gateway_report::label_selector()),
    )
}

/// The revisions this operator wrote, oldest first (bounded), so that a
/// gateway's report can be placed in time: a gateway that applied revision
/// N has applied everything revision M ≤ N contained.
#[derive(Debug, Default, Clone)]
pub struct History {
    revisions: VecDeque<String>,
    /// Index of `revisions[0]` since the operator started.
    base: usize,
}

impl History {
    const KEEP: usize = 4096;

    pub fn push(&mut self, revision: &str) {
        if self.last() == Some(revision) {
            return;
        }
        self.revisions.push_back(revision.to_owned());
        if self.revisions.len() > Self::KEEP {
            self.revisions.pop_front();
            self.base += 1;
        }
    }

    /// Position of `revision`, if this operator knows it.
    pub fn position(&self, revision: &str) -> Option<usize> {
        self.revisions
            .iter()
            .rposition(|r| r == revision)
            .map(|i| i + self.base)
    }

    fn last(&self) -> Option<&str> {
        self.revisions.back().map(String::as_str)
    }

    /// Position of `revision` once `writing` (the revision a pass is about
    /// to write, if any) has been pushed.
    fn position_after(&self, revision: &str, writing: Option<&str>) -> Option<usize> {
        match writing {
            Some(w) if w == revision && self.last() != Some(w) => {
                Some(self.base + self.revisions.len())
            }
            _ => self.position(revision),
        }
    }
}

/// The fresh gateways' reports, placed in the history as it will be once
/// the pass that reads them has written its revision.
#[derive(Debug)]
pub struct Reports<'a> {
    history: &'a History,
    writing: Option<&'a str>,
    /// Positions of the revisions fresh gateways applied (unknown
    /// revisions are left out: they cannot be placed).
    applied: Vec<usize>,
}

impl<'a> Reports<'a> {
    /// Reads `leases` at `now`: only reports renewed within
    /// [`GATEWAY_FRESHNESS`] count.
    pub fn new(
        leases: &[Lease],
        history: &'a History,
        writing: Option<&'a str>,
        now: Timestamp,
    ) -> Self {
        let fresh_after = now - SignedDuration::try_from(GATEWAY_FRESHNESS).unwrap_or_default();
        let applied = leases
            .iter()
            .filter(|l| gateway_report::renewed_at(l).is_some_and(|t| t > fresh_after))
            .filter_map(|l| history.position_after(gateway_report::applied_revision(l)?, writing))
            .collect();
        Self {
            history,
            writing,
            applied,
        }
    }

    /// Gateways that applied `revision` or a later one.
    pub fn applied_since(&self, revision: &str) -> i32 {
        // A revision older than the history (written before a restart) is
        // contained in every revision the history knows.
        let since = self
            .history
            .position_after(revision, self.writing)
            .unwrap_or(0);
        i32::try_from(self.applied.iter().filter(|&&g| g >= since).count()).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn history(revisions: &[&str]) -> History {
        let mut h = History::default();
        for r in revisions {
            h.push(r);
        }
        h
    }

    #[test]
    fn gateways_count_for_the_revision_they_applied_and_every_earlier_one() {
        let h = history(&["r1", "r2", "r3"]);
        let now = t("2026-01-01T00:10:00Z");
        let leases = [
            gateway_report::report("a", "r3", now),
            gateway_report::report("b", "r2", now),
        ];
        let reports = Reports::new(&leases, &h, None, now);
        assert_eq!(reports.applied_since("r1"), 2);
        assert_eq!(reports.applied_since("r3"), 1, "one gateway is behind");
        assert_eq!(reports.applied_since("from-before-a-restart"), 2);
    }

    #[test]
    fn a_report_not_renewed_within_the_freshness_window_does_not_count() {
        let h = history(&["r1"]);
        let now = t("2026-01-01T00:10:00Z");
        let leases = [
            gateway_report::report("live", "r1", t("2026-01-01T00:09:00Z")),
            gateway_report::report("gone", "r1", t("2026-01-01T00:08:00Z")),
        ];
        assert_eq!(Reports::new(&leases, &h, None, now).applied_since("r1"), 1);
    }

    #[test]
    fn no_gateway_has_applied_the_revision_being_written_yet() {
        let h = history(&["r1", "r2"]);
        let now = t("2026-01-01T00:10:00Z");
        let leases = [gateway_report::report("a", "r2", now)];
        let reports = Reports::new(&leases, &h, Some("r3"), now);
        assert_eq!(reports.applied_since("r3"), 0);
        assert_eq!(reports.applied_since("r2"), 1);
        // Writing a revision again (r1 after r2) places it last, and so
        // every gateway that reports it.
        let again = [gateway_report::report("a", "r1", now)];
        let reports = Reports::new(&again, &h, Some("r1"), now);
        assert_eq!(reports.applied_since("r2"), 1);
    }
}
