//! Status, computed purely from a compilation report and the status the
//! object already has. `lastTransitionTime` moves only when a condition's
//! status changes, and nothing else carries a timestamp, so writing the
//! same status twice is a no-op and the operator never triggers itself.

use crate::text::{CONDITION_MESSAGE_BYTES, cut_to};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use palisade_crds::{
    AIPolicyStatus, Diagnostic, GrantReport, GrantState, PolicyReport, QuarantinedAgent,
    ToolGrantStatus,
};

/// A condition, keeping the previous transition time if its status did not change.
pub fn condition(
    existing: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = existing
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// The diagnostics as one message (without their object: the status
/// belongs to it).
fn joined(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(Diagnostic::short)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why the bundle could not be written, if it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Written with this revision.
    Revision(String),
    /// Not written (too large, API error): the message says why.
    Failed(String),
}

pub fn policy_status(
    report: &PolicyReport,
    existing: Option<&AIPolicyStatus>,
    served: &Served,
    now: Timestamp,
) -> AIPolicyStatus {
    let conditions = existing.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let generation = report.generation;
    let accepted = if report.accepted() {
        condition(
            conditions,
            "Accepted",
            true,
            "Compiled",
            format!("generation {generation} compiled"),
            generation,
            now,
        )
    } else {
        let problems = joined(&report.diagnostics);
        let serving = match report.served_generation {
            Some(g) => format!("; generation {g} is still served"),
            None => "; no generation is served, so its agents are denied (policy.invalid)".into(),
        };
        let mut message = format!("{problems}{serving}");
        cut_to(&mut message, CONDITION_MESSAGE_BYTES);
        condition(
            conditions,
            "Accepted",
            false,
            report.refusal(),
            message,
            generation,
            now,
        )
    };
    // The revision that first served this generation stays its revision
    // while the generation is served (every later revision contains it):
    // another policy's change does not rewrite this status.
    let kept;
    let served = match (served, existing) {
        (Served::Revision(_), Some(old))
            if old.served_generation.is_some()
                && old.served_generation == report.served_generation
                && old.served_revision.is_some() =>
        {
            kept = Served::Revision(old.served_revision.clone().unwrap_or_default());
            &kept
        }
        _ => served,
    };
    let (ready, revision) = match (served, report.served_generation) {
        (Served::Revision(r), Some(g)) if g == generation => (
            condition(
                conditions,
                "Ready",
                true,
                "Served",
                format!("generation {g} is in configuration revision {r}"),
                generation,
                now,
            ),
            Some(r.clone()),
        ),
        (Served::Revision(r), Some(g)) => (
            condition(
                conditions,
                "Ready",
                false,
                "ServingPrevious",
                format!(
                    "generation {g} is served (revision {r}), with any kill switch generation {generation} turns on; generation {generation} {}",
                    if report.over_budget {
                        "is over the size budget"
                    } else {
                        "does not compile"
                    }
                ),
                generation,
                now,
            ),
            Some(r.clone()),
        ),
        (Served::Revision(_), None) => (
            condition(
                conditions,
                "Ready",
                false,
                "NotServed",
                "no generation of this policy compiles".into(),
                generation,
                now,
            ),
            None,
        ),
        (Served::Failed(why), _) => (
            condition(
                conditions,
                "Ready",
                false,
                "NotWritten",
                why.clone(),
                generation,
                now,
            ),
            None,
        ),
    };
    AIPolicyStatus {
        observed_generation: Some(generation),
        conditions: vec![accepted, ready],
        served_generation: report.served_generation,
        served_revision: revision,
        // Filled in by the plan from the gateways' reports.
        gateways_applied: existing.and_then(|s| s.gateways_applied),
        agents: Some(i32::try_from(report.agents).unwrap_or(i32::MAX)),
        quarantined: report
            .quarantined
            .iter()
            .map(|(agent, reason)| QuarantinedAgent {
                agent: agent.clone(),
                reason: reason.clone(),
            })
            .collect(),
    }
}

/// The status of a policy whose status could not be computed (the
/// operator panicked on it: a bug, see its log). Built from fixed text
/// only, so it cannot fail the same way; the compiled facts it carries
/// are the report's.
pub fn failed_policy_status(
    report: &PolicyReport,
    existing: Option<&AIPolicyStatus>,
    now: Timestamp,
) -> AIPolicyStatus {
    let old = existing.cloned().unwrap_or_default();
    let generation = report.generation;
    let message = format!(
        "the operator could not compute this policy's status for generation {generation} (its log says why: palisade_operator_reconcile_errors_total{{kind=\"panic\"}})"
    );
    let failed = |type_: &str| {
        let (ok, reason) = (false, STATUS_FAILED);
        condition(
            &old.conditions,
            type_,
            ok,
            reason,
            message.clone(),
            generation,
            now,
        )
    };
    AIPolicyStatus {
        observed_generation: Some(generation),
        conditions: vec![failed("Accepted"), failed("Ready")],
        served_generation: report.served_generation,
        agents: Some(i32::try_from(report.agents).unwrap_or(i32::MAX)),
        // What gateways were last seen serving stays as it was.
        ..old
    }
}

/// The condition reason of a status the operator could not compute.
pub const STATUS_FAILED: &str = "StatusFailed";

pub fn grant_status(
    report: &GrantReport,
    existing: Option<&ToolGrantStatus>,
    now: Timestamp,
) -> ToolGrantStatus {
    let conditions = existing.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let generation = report.generation;
    let message = (!report.diagnostics.is_empty()).then(|| {
        let mut message = joined(&report.diagnostics);
        cut_to(&mut message, CONDITION_MESSAGE_BYTES);
        message
    });
    let accepted = match report.state {
        GrantState::Invalid => condition(
            conditions,
            "Accepted",
            false,
            "Invalid",
            message.clone().unwrap_or_default(),
            generation,
            now,
        ),
        GrantState::Expired => condition(
            conditions,
            "Accepted",
            false,
            "Expired",
            message.clone().unwrap_or_default(),
            generation,
            now,
        ),
        GrantState::Active => condition(
            conditions,
            "Accepted",
            true,
            "Active",
            "the grant is in force".into(),
            generation,
            now,
        ),
    };
    ToolGrantStatus {
        observed_generation: Some(generation),
        state: Some(report.state),
        message,
        conditions: vec![accepted],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crds::ObjectRef;

    fn report(generation: i64, served: Option<i64>, bad: bool) -> PolicyReport {
        let object = ObjectRef::new("AIPolicy", "ns", "p");
        PolicyReport {
            diagnostics: if bad {
                vec![Diagnostic::new(
                    &object,
                    "spec.routing.defaultProvider",
                    "names provider \"x\"",
                    "name one of: a",
                )]
            } else {
                vec![]
            },
            object,
            generation,
            served_generation: served,
            agents: 2,
            over_budget: false,
            quarantined: Vec::new(),
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_compiled_served_policy_is_accepted_and_ready() {
        let s = policy_status(
            &report(3, Some(3), false),
            None,
            &Served::Revision("abc".into()),
            t("2026-01-01T00:00:00Z"),
        );
        let c: Vec<(&str, &str, &str)> = s
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            c,
            [
                ("Accepted", "True", "Compiled"),
                ("Ready", "True", "Served")
            ]
        );
        assert_eq!(
            (
                s.observed_generation,
                s.served_generation,
                s.served_revision.as_deref(),
                s.agents
            ),
            (Some(3), Some(3), Some("abc"), Some(2))
        );
    }

    #[test]
    fn another_policys_change_does_not_rewrite_this_status() {
        let first = policy_status(
            &report(3, Some(3), false),
            None,
            &Served::Revision("rev-1".into()),
            t("2026-01-01T00:00:00Z"),
        );
        // A later bundle (someone else's change) still serves generation 3.
        let later = policy_status(
            &report(3, Some(3), false),
            Some(&first),
            &Served::Revision("rev-2".into()),
            t("2026-01-01T00:05:00Z"),
        );
        assert_eq!(later, first, "no write for an unrelated change");
        // Its own new generation moves it.
        let own = policy_status(
            &report(4, Some(4), false),
            Some(&first),
            &Served::Revision("rev-3".into()),
            t("2026-01-01T00:06:00Z"),
        );
        assert_eq!(own.served_revision.as_deref(), Some("rev-3"));
    }

    #[test]
    fn an_invalid_update_says_what_and_which_generation_is_still_served() {
        let s = policy_status(
            &report(4, Some(3), true),
            None,
            &Served::Revision("abc".into()),
            t("2026-01-01T00:00:00Z"),
        );
        assert_eq!(s.conditions[0].status, "False");
        assert_eq!(
            s.conditions[0].message,
            "spec.routing.defaultProvider: names provider \"x\" (fix: name one of: a); generation 3 is still served"
        );
        assert_eq!(
            (s.conditions[1].reason.as_str(), s.served_generation),
            ("ServingPrevious", Some(3))
        );
    }

    /// Issue 22: the message was cut with `String::truncate(4000)`, which
    /// panics when byte 4,000 falls inside a character.
    #[test]
    fn a_long_invalid_message_is_cut_on_a_character_boundary() {
        let object = ObjectRef::new("AIPolicy", "ns", "p");
        let diagnostics = (0..30)
            .map(|i| {
                Diagnostic::new(
                    &object,
                    format!("spec.tools.rules[{i}].tools[0]"),
                    format!("\"xx[{}\" is not a valid glob", "é".repeat(60)),
                    "fix the glob",
                )
            })
            .collect::<Vec<_>>();
        let joined = diagnostics
            .iter()
            .map(|d| d.short())
            .collect::<Vec<_>>()
            .join("; ");
        assert!(!joined.is_char_boundary(4000), "byte 4000 is inside an é");
        let report = PolicyReport {
            diagnostics,
            object,
            generation: 1,
            served_generation: None,
            agents: 0,
            over_budget: false,
            quarantined: Vec::new(),
        };
        let s = policy_status(
            &report,
            None,
            &Served::Revision("abc".into()),
            t("2026-01-01T00:00:00Z"),
        );
        let message = &s.conditions[0].message;
        assert_eq!(
            message.len(),
            3999,
            "cut before the é that straddles byte 4000"
        );
        assert!(joined.starts_with(message.as_str()));
    }

    /// The conditions as (type, status, reason).
    fn conditions(s: &AIPolicyStatus) -> Vec<(&str, &str, &str)> {
        s.conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_status_that_could_not_be_computed_says_so_and_keeps_what_is_served() {
        let at = t("2026-01-01T00:00:00Z");
        let served = policy_status(
            &report(3, Some(3), false),
            None,
            &Served::Revision("rev-1".into()),
            at,
        );
        let failed = failed_policy_status(&report(4, Some(3), true), Some(&served), at);
        let failed_reason = ("False", STATUS_FAILED);
        assert_eq!(
            conditions(&failed),
            [
                ("Accepted", failed_reason.0, failed_reason.1),
                ("Ready", failed_reason.0, failed_reason.1)
            ]
        );
        let kept = (
            failed.observed_generation,
            failed.served_generation,
            failed.served_revision.as_deref(),
        );
        assert_eq!(kept, (Some(4), Some(3), Some("rev-1")));
    }

    #[test]
    fn the_transition_time_only_moves_when_the_status_changes() {
        let first = policy_status(
            &report(1, Some(1), false),
            None,
            &Served::Revision("a".into()),
            t("2026-01-01T00:00:00Z"),
        );
        let same = policy_status(
            &report(1, Some(1), false),
            Some(&first),
            &Served::Revision("a".into()),
            t("2026-06-01T00:00:00Z"),
        );
        assert_eq!(
            first, same,
            "recomputing changes nothing, so writing it is a no-op"
        );
        let broken = policy_status(
            &report(2, Some(1), true),
            Some(&same),
            &Served::Revision("a".into()),
            t("2026-06-01T00:00:00Z"),
        );
        assert_eq!(
            broken.conditions[0].last_transition_time,
            Time(t("2026-06-01T00:00:00Z"))
        );
    }
}
