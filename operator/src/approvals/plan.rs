//! The pure half of the Approval lifecycle: the status an approval should
//! have at a given instant, when it finished, and which outcomes a status
//! write records for the first time (and so must audit first). Unit-tested
//! without a server; [`super`] applies it.

use crate::status::condition;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use palisade_audit::AuditDecision;
use palisade_crds::{Approval, ApprovalDecision, ApprovalPhase, ApprovalStatus};
use palisade_policy::ReasonCode;
use std::collections::HashSet;

/// The status an approval should have at `now`, given what it has. Pure:
/// unit-tested without a server.
///
/// Who decided comes from the spec (stamped from the deciding user by
/// admission, final once set), never from the status: the status
/// subresource is written by others too (gateways record consumption
/// there), so a `decidedBy` / `decidedAt` already in it counts only when it
/// records the decision the spec holds.
pub fn desired_status(a: &Approval, now: Timestamp) -> ApprovalStatus {
    let old = a.status.clone().unwrap_or_default();
    let decided = a.spec.decision.is_some();
    let phase = a.phase_at(now);
    ApprovalStatus {
        observed_generation: a.metadata.generation,
        phase: Some(phase),
        decided_by: a.spec.decided_by.clone().filter(|_| decided),
        decided_at: match recorded_decision_at(a.status.as_ref(), a) {
            Some(t) => Some(Time(t)),
            None if decided => Some(Time(now)),
            None => None,
        },
        consumed_at: old.consumed_at.clone(),
        consumed_by: old.consumed_by.clone(),
        conditions: conditions(a, phase, &old.conditions, now),
        notified: old.notified.clone(),
    }
}

/// The condition types an Approval carries, so that
/// `kubectl wait --for=condition=Approved approval/NAME` (or `Denied`,
/// `Expired`, `Consumed`) waits for that outcome.
pub const CONDITION_TYPES: [&str; 4] = ["Approved", "Denied", "Expired", "Consumed"];

/// One condition per [`CONDITION_TYPES`]: `Approved` and `Denied` follow
/// the human's decision (an approval used or expired after it was
/// approved stays `Approved`), `Expired` and `Consumed` the phase. Each
/// one's reason is the phase, its message says what the agent may do.
fn conditions(
    a: &Approval,
    phase: ApprovalPhase,
    old: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    let (agent, tool) = (&a.spec.call.agent, &a.spec.call.tool);
    let message = match phase {
        ApprovalPhase::Pending => format!(
            "{agent} waits to run {tool}; decide before {}",
            a.spec.expires_at.0
        ),
        ApprovalPhase::Approved => format!("{agent} may run {tool} once"),
        ApprovalPhase::Consumed => format!("{agent} ran {tool}; the approval is used"),
        ApprovalPhase::Denied => format!("{agent} may not run {tool}"),
        ApprovalPhase::Expired => format!(
            "expired at {}; {agent} may not run {tool}",
            a.spec.expires_at.0
        ),
    };
    let holds = |type_: &str| match type_ {
        "Approved" => a.spec.decision == Some(ApprovalDecision::Approved),
        "Denied" => a.spec.decision == Some(ApprovalDecision::Denied),
        "Expired" => phase == ApprovalPhase::Expired,
        _ => phase == ApprovalPhase::Consumed,
    };
    let generation = a.metadata.generation.unwrap_or_default();
    CONDITION_TYPES
        .iter()
        .map(|type_| {
            condition(
                old,
                type_,
                holds(type_),
                phase.as_str(),
                message.clone(),
                generation,
                now,
            )
        })
        .collect()
}

/// When the status recorded the spec's decision, if it did: a `decidedAt`
/// beside the spec's decider and a phase that follows a decision.
fn recorded_decision_at(status: Option<&ApprovalStatus>, a: &Approval) -> Option<Timestamp> {
    let status = status?;
    a.spec.decision?;
    let follows = status.phase.is_some_and(|p| p != ApprovalPhase::Pending);
    (follows && status.decided_by == a.spec.decided_by)
        .then(|| status.decided_at.as_ref().map(|t| t.0))
        .flatten()
}

/// When an approval reached its final phase, if it has.
pub fn finished_at(a: &Approval, now: Timestamp) -> Option<Timestamp> {
    let status = a.status.as_ref();
    match a.phase_at(now) {
        ApprovalPhase::Consumed => status.and_then(|s| s.consumed_at.as_ref()).map(|t| t.0),
        // Denied: from when the decision was recorded (now, if this pass
        // is the one recording it).
        ApprovalPhase::Denied => Some(recorded_decision_at(status, a).unwrap_or(now)),
        ApprovalPhase::Expired => Some(a.spec.expires_at.0),
        ApprovalPhase::Pending | ApprovalPhase::Approved => None,
    }
}

/// What the operator records about an approval: a human's decision, or
/// the deadline passing first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Decided(ApprovalDecision),
    Expired,
}

impl Outcome {
    /// `approval.approved`, `approval.denied` or `approval.expired`.
    pub fn code(self) -> ReasonCode {
        match self {
            Self::Decided(ApprovalDecision::Approved) => ReasonCode::ApprovalApproved,
            Self::Decided(ApprovalDecision::Denied) => ReasonCode::ApprovalDenied,
            Self::Expired => ReasonCode::ApprovalExpired,
        }
    }

    /// Its name in the audit's `decision` column and as an Event's
    /// reason: `Approved`, `Denied` or `Expired`.
    pub fn as_str(self) -> &'static str {
        AuditDecision::from(self).as_str()
    }
}

impl From<Outcome> for AuditDecision {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Decided(d) => d.into(),
            Outcome::Expired => Self::Expired,
        }
    }
}

/// Outcomes audited, by approval uid.
pub(super) type Audited = HashSet<(String, Outcome)>;

pub(super) fn keep_only(audited: &mut Audited, uid: &str, outcomes: &[Outcome]) {
    audited.retain(|(u, o)| u != uid || outcomes.contains(o));
}

/// The outcomes `desired` records that `old` did not: a decision (its
/// first `decidedAt`) and an expiry, in that order. An approval approved,
/// or approved and used, while the operator was away still has its
/// decision audited.
pub fn newly_recorded(
    old: Option<&ApprovalStatus>,
    desired: &ApprovalStatus,
    a: &Approval,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    // A status recorded by someone else, or before the decision, does not
    // count as the operator having recorded (and audited) it.
    let was_decided = recorded_decision_at(old, a).is_some();
    if !was_decided && desired.decided_at.is_some() {
        outcomes.extend(a.spec.decision.map(Outcome::Decided));
    }
    let was_expired = old.and_then(|s| s.phase) == Some(ApprovalPhase::Expired);
    if !was_expired && desired.phase == Some(ApprovalPhase::Expired) {
        outcomes.push(Outcome::Expired);
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crds::{ApprovalSpec, HeldCall};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn approval(decision: Option<ApprovalDecision>) -> Approval {
        let mut a = Approval::new(
            "intake-0a1b2c3d4e5f",
            ApprovalSpec {
                call: HeldCall {
                    agent: "intake".into(),
                    tool: "send_email".into(),
                    arguments_preview: "{}".into(),
                    arguments_truncated: false,
                    arguments_digest: format!("sha256:{}", "0".repeat(64)),
                    request_id: "r-1".into(),
                    policy: "clinic".into(),
                    policy_generation: 3,
                    rule: None,
                    requested_by: None,
                },
                arguments: None,
                requested_at: Time(t("2026-11-22T10:00:00Z")),
                expires_at: Time(t("2026-11-22T10:15:00Z")),
                decision,
                reason: None,
                decided_by: decision.map(|_| "alice".to_owned()),
            },
        );
        a.metadata.generation = Some(1);
        a
    }

    #[test]
    fn a_decision_is_recorded_once_with_who_and_when_and_then_kept() {
        let undecided = approval(None);
        let s = desired_status(&undecided, t("2026-11-22T10:01:00Z"));
        assert_eq!(
            (s.phase, s.decided_by, s.decided_at),
            (Some(ApprovalPhase::Pending), None, None)
        );

        let mut decided = approval(Some(ApprovalDecision::Approved));
        let first = desired_status(&decided, t("2026-11-22T10:02:00Z"));
        assert_eq!(first.phase, Some(ApprovalPhase::Approved));
        assert_eq!(first.decided_by.as_deref(), Some("alice"));
        assert_eq!(first.decided_at, Some(Time(t("2026-11-22T10:02:00Z"))));
        // Later passes keep the recorded time: no status churn.
        decided.status = Some(first.clone());
        assert_eq!(desired_status(&decided, t("2026-11-22T10:05:00Z")), first);
    }

    /// What `kubectl wait --for=condition=...` reads, through the life of
    /// an approval; a condition's transition time moves only when its
    /// status does.
    #[test]
    fn conditions_follow_the_decision_and_the_phase() {
        let states = |s: &ApprovalStatus| -> Vec<(String, String, String)> {
            s.conditions
                .iter()
                .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
                .collect()
        };
        let row = |approved: &str, denied: &str, expired: &str, consumed: &str, reason: &str| {
            [
                ("Approved", approved),
                ("Denied", denied),
                ("Expired", expired),
                ("Consumed", consumed),
            ]
            .map(|(t, v)| (t.to_owned(), v.to_owned(), reason.to_owned()))
            .to_vec()
        };
        let mut a = approval(None);
        let pending = desired_status(&a, t("2026-11-22T10:01:00Z"));
        assert_eq!(
            states(&pending),
            row("False", "False", "False", "False", "Pending")
        );
        assert!(
            pending.conditions[0]
                .message
                .contains("decide before 2026-11-22T10:15:00Z")
        );

        a.status = Some(pending.clone());
        a.spec.decision = Some(ApprovalDecision::Approved);
        a.spec.decided_by = Some("alice".into());
        let approved = desired_status(&a, t("2026-11-22T10:02:00Z"));
        assert_eq!(
            states(&approved),
            row("True", "False", "False", "False", "Approved")
        );
        assert_eq!(
            approved.conditions[0].last_transition_time,
            Time(t("2026-11-22T10:02:00Z"))
        );
        // Denied did not change: it keeps its first transition time.
        assert_eq!(
            approved.conditions[1].last_transition_time,
            Time(t("2026-11-22T10:01:00Z"))
        );

        let mut used = approved.clone();
        used.consumed_at = Some(Time(t("2026-11-22T10:03:00Z")));
        a.status = Some(used);
        let consumed = desired_status(&a, t("2026-11-22T10:04:00Z"));
        assert_eq!(
            states(&consumed),
            row("True", "False", "False", "True", "Consumed")
        );

        let mut denied = approval(Some(ApprovalDecision::Denied));
        denied.status = Some(pending);
        let s = desired_status(&denied, t("2026-11-22T10:05:00Z"));
        assert_eq!(states(&s), row("False", "True", "False", "False", "Denied"));

        let s = desired_status(&approval(None), t("2026-11-22T10:15:00Z"));
        assert_eq!(
            states(&s),
            row("False", "False", "True", "False", "Expired")
        );
    }

    #[test]
    fn deadlines_expire_undecided_and_unused_approvals_and_consumption_wins() {
        let pending = approval(None);
        let late = t("2026-11-22T10:15:00Z");
        assert_eq!(
            desired_status(&pending, late).phase,
            Some(ApprovalPhase::Expired)
        );
        assert_eq!(finished_at(&pending, late), Some(late));

        let mut approved = approval(Some(ApprovalDecision::Approved));
        assert_eq!(
            finished_at(&approved, t("2026-11-22T10:05:00Z")),
            None,
            "still usable"
        );
        approved.status = Some(ApprovalStatus {
            consumed_at: Some(Time(t("2026-11-22T10:06:00Z"))),
            consumed_by: Some("gw-1".into()),
            ..Default::default()
        });
        let s = desired_status(&approved, late);
        assert_eq!(
            s.phase,
            Some(ApprovalPhase::Consumed),
            "consumed beats expiry"
        );
        assert_eq!(
            s.consumed_by.as_deref(),
            Some("gw-1"),
            "the gateway's record is kept"
        );
        assert_eq!(
            finished_at(&approved, late),
            Some(t("2026-11-22T10:06:00Z"))
        );

        let denied = approval(Some(ApprovalDecision::Denied));
        assert_eq!(
            desired_status(&denied, late).phase,
            Some(ApprovalPhase::Denied),
            "a denial stays a denial"
        );
    }

    /// What each status write records for the first time, and so audits
    /// before it is written.
    #[test]
    fn outcomes_are_audited_when_the_status_first_records_them_even_after_an_absence() {
        let codes = |a: &Approval, at: &str| {
            let desired = desired_status(a, t(at));
            newly_recorded(a.status.as_ref(), &desired, a)
                .into_iter()
                .map(Outcome::code)
                .collect::<Vec<_>>()
        };
        let during = "2026-11-22T10:05:00Z";
        let after = "2026-11-22T10:20:00Z";

        assert_eq!(codes(&approval(None), during), vec![]);
        assert_eq!(
            codes(&approval(None), after),
            vec![ReasonCode::ApprovalExpired]
        );
        assert_eq!(
            codes(&approval(Some(ApprovalDecision::Denied)), during),
            vec![ReasonCode::ApprovalDenied]
        );

        // Recorded once: later passes (and the consumption) add nothing.
        let mut approved = approval(Some(ApprovalDecision::Approved));
        assert_eq!(codes(&approved, during), vec![ReasonCode::ApprovalApproved]);
        approved.status = Some(desired_status(&approved, t(during)));
        assert_eq!(codes(&approved, during), vec![]);
        let mut used = approved.clone();
        if let Some(s) = used.status.as_mut() {
            s.phase = Some(ApprovalPhase::Consumed);
            s.consumed_at = Some(Time(t(during)));
        }
        assert_eq!(codes(&used, after), vec![]);
        // Approved but not used in time: the expiry is an outcome too.
        assert_eq!(codes(&approved, after), vec![ReasonCode::ApprovalExpired]);

        // Approved and used while the operator was away: the gateway wrote
        // the status (Consumed, no decidedAt), the approval is still audited.
        let mut away = approval(Some(ApprovalDecision::Approved));
        away.status = Some(ApprovalStatus {
            phase: Some(ApprovalPhase::Consumed),
            consumed_at: Some(Time(t(during))),
            consumed_by: Some("gw-1".into()),
            ..Default::default()
        });
        assert_eq!(codes(&away, after), vec![ReasonCode::ApprovalApproved]);
        // Approved while away and never used: both.
        assert_eq!(
            codes(&approval(Some(ApprovalDecision::Approved)), after),
            vec![ReasonCode::ApprovalApproved, ReasonCode::ApprovalExpired]
        );
    }

    /// The status subresource is written by others too (gateways record
    /// consumption there): what it claims about a decision counts only when
    /// the spec, which admission guards, holds that decision.
    #[test]
    fn a_status_claiming_a_decision_the_spec_does_not_hold_is_not_trusted() {
        let forged = ApprovalStatus {
            phase: Some(ApprovalPhase::Approved),
            decided_by: Some("mallory".into()),
            decided_at: Some(Time(t("2026-11-22T10:00:30Z"))),
            ..Default::default()
        };
        let mut undecided = approval(None);
        undecided.status = Some(forged.clone());
        let during = t("2026-11-22T10:01:00Z");
        let s = desired_status(&undecided, during);
        assert_eq!(
            (s.phase, s.decided_by, s.decided_at),
            (Some(ApprovalPhase::Pending), None, None),
            "an undecided approval stays Pending, whatever its status says"
        );

        // A human then denies it: recorded (and so audited) as theirs, now,
        // and kept from then on, not from the forged time.
        let mut denied = approval(Some(ApprovalDecision::Denied));
        denied.status = Some(forged);
        let at = t("2026-11-22T10:02:00Z");
        let s = desired_status(&denied, at);
        assert_eq!(s.decided_by.as_deref(), Some("alice"));
        assert_eq!(s.decided_at, Some(Time(at)));
        assert_eq!(
            newly_recorded(denied.status.as_ref(), &s, &denied),
            vec![Outcome::Decided(ApprovalDecision::Denied)]
        );
        assert_eq!(finished_at(&denied, at), Some(at));
        // Once the operator has recorded it, it is kept.
        denied.status = Some(s.clone());
        let later = t("2026-11-22T10:09:00Z");
        assert_eq!(desired_status(&denied, later), s);
        assert_eq!(finished_at(&denied, later), Some(at));
    }

    #[test]
    fn an_audited_outcome_is_remembered_until_a_status_records_it() {
        let approved = Outcome::Decided(ApprovalDecision::Approved);
        let mut audited = Audited::new();
        audited.insert(("uid-1".into(), approved));
        audited.insert(("uid-2".into(), Outcome::Expired));
        // A pass on a stale copy (or after a 409) still has it to record.
        keep_only(&mut audited, "uid-1", &[approved]);
        assert!(audited.contains(&("uid-1".into(), approved)));
        // The status now records it: forgotten; other approvals untouched.
        keep_only(&mut audited, "uid-1", &[]);
        assert!(!audited.contains(&("uid-1".into(), approved)));
        assert!(audited.contains(&("uid-2".into(), Outcome::Expired)));
    }

    #[test]
    fn outcomes_are_named_as_the_audit_and_the_events_name_them() {
        let named: Vec<(&str, &str)> = [
            Outcome::Decided(ApprovalDecision::Approved),
            Outcome::Decided(ApprovalDecision::Denied),
            Outcome::Expired,
        ]
        .into_iter()
        .map(|o| (o.as_str(), o.code().as_str()))
        .collect();
        assert_eq!(
            named,
            [
                ("Approved", "approval.approved"),
                ("Denied", "approval.denied"),
                ("Expired", "approval.expired")
            ]
        );
    }
}
