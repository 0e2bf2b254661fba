//! The Approval lifecycle. Gateways create Approvals and consume them;
//! humans decide them with `kubectl patch`; this controller keeps the
//! record:
//!
//! - `status.phase` follows the decision, consumption and deadline
//!   (`Pending` → `Approved` / `Denied` / `Expired` → `Consumed`), requeued
//!   at `expiresAt` so an undecided approval expires on time;
//! - the decision is recorded once: who (`spec.decidedBy`, stamped from the
//!   authenticated user by the chart's admission policy) and when;
//! - each outcome (approved, denied, expired) is audited through
//!   `palisade-audit` before the status write that records it, and
//!   announced with an Event after; consumption is audited by the gateway
//!   that consumed it;
//! - decided, expired and consumed approvals are deleted after the
//!   retention period.
//!
//! Status writes carry the `resourceVersion` read, so a write never
//! overwrites a gateway's consumption it has not seen.

use crate::reconcile::{MANAGER, publish};
use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use palisade_audit::{ApprovalFacts, AuditEvent, AuditWriter};
use palisade_crds::{Approval, ApprovalDecision, ApprovalPhase, ApprovalStatus};
use palisade_policy::ReasonCode;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the lifecycle needs.
#[derive(Clone)]
pub struct Lifecycle {
    pub client: Client,
    pub recorder: Recorder,
    /// Where outcomes are audited (`--audit-url`); `None` logs a warning
    /// per outcome instead.
    pub audit: Option<AuditWriter>,
    /// How long decided, expired and consumed approvals are kept.
    pub retention: Duration,
    pub metrics: Arc<crate::metrics::OperatorMetrics>,
    /// Outcomes audited whose recording status has not been seen yet, by
    /// approval uid: when the write loses a race (409), or a pass runs on
    /// a copy older than the write, the outcome is not audited again.
    /// (An expiry audited on a copy from just before a gateway consumed
    /// the approval at its deadline stays in the audit beside the
    /// consumption: outcomes are audited before they are written.)
    pub audited: Arc<Mutex<Audited>>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("audit", &self.audit.is_some())
            .field("retention", &self.retention)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The outcome could not be made durable (the database down and the
    /// spool full or unwritable): the status keeps its old phase and the
    /// approval is tried again.
    #[error("approval outcome not audited: {0}")]
    Audit(#[from] palisade_audit::AuditError),
}

/// The status an approval should have at `now`, given what it has. Pure:
/// unit-tested without a server.
pub fn desired_status(a: &Approval, now: Timestamp) -> ApprovalStatus {
    let old = a.status.clone().unwrap_or_default();
    let phase = a.phase_at(now);
    let decided = a.spec.decision.is_some();
    ApprovalStatus {
        observed_generation: a.metadata.generation,
        phase: Some(phase),
        decided_by: old.decided_by.clone().or_else(|| a.spec.decided_by.clone()),
        decided_at: match (&old.decided_at, decided) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some(Time(now)),
            (None, false) => None,
        },
        consumed_at: old.consumed_at.clone(),
        consumed_by: old.consumed_by.clone(),
        conditions: old.conditions.clone(),
    }
}

/// When an approval reached its final phase, if it has.
pub fn finished_at(a: &Approval, now: Timestamp) -> Option<Timestamp> {
    let status = a.status.as_ref();
    match a.phase_at(now) {
        ApprovalPhase::Consumed => status.and_then(|s| s.consumed_at.as_ref()).map(|t| t.0),
        ApprovalPhase::Denied => Some(
            status
                .and_then(|s| s.decided_at.as_ref())
                .map(|t| t.0)
                .unwrap_or(a.spec.requested_at.0),
        ),
        ApprovalPhase::Expired => Some(a.spec.expires_at.0),
        ApprovalPhase::Pending | ApprovalPhase::Approved => None,
    }
}

fn until(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or_default() + Duration::from_millis(10)
}

fn outcome(phase: ApprovalPhase) -> Option<(ReasonCode, &'static str)> {
    match phase {
        ApprovalPhase::Approved => Some((ReasonCode::ApprovalApproved, "Approved")),
        ApprovalPhase::Denied => Some((ReasonCode::ApprovalDenied, "Denied")),
        ApprovalPhase::Expired => Some((ReasonCode::ApprovalExpired, "Expired")),
        _ => None,
    }
}

fn typed(o: &DynamicObject) -> Result<Approval, serde_json::Error> {
    serde_json::to_value(o).and_then(serde_json::from_value)
}

async fn reconcile(o: Arc<DynamicObject>, cx: Arc<Lifecycle>) -> Result<Action, LifecycleError> {
    let a = match typed(&o) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(approval = %o.name_any(), error = %e, "skipping a malformed Approval");
            cx.metrics
                .errors
                .with_label_values(&["malformed_object"])
                .inc();
            return Ok(Action::await_change());
        }
    };
    let now = Timestamp::now();
    let namespace = a.namespace().unwrap_or_default();
    let name = a.name_any();
    let api: Api<Approval> = Api::namespaced(cx.client.clone(), &namespace);

    if let Some(done) = finished_at(&a, now) {
        let collect_at = done
            .checked_add(jiff::SignedDuration::try_from(cx.retention).unwrap_or_default())
            .unwrap_or(done);
        if collect_at <= now {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => cx
                    .metrics
                    .approval_outcomes
                    .with_label_values(&["collected"])
                    .inc(),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Action::await_change());
        }
    }

    let desired = desired_status(&a, now);
    let uid = a.uid().unwrap_or_default();
    let outcomes = newly_recorded(a.status.as_ref(), &desired, &a);
    // Outcomes audited for an earlier pass are remembered until a version
    // whose status records them is seen (a pass on a stale copy, or after
    // a 409, does not audit them again); what this version no longer needs
    // to record is dropped.
    cx.keep_only(&uid, &outcomes);
    if a.status.as_ref() != Some(&desired) {
        // The outcomes this write is the first to record are audited
        // first, durably: a status that shows a decision or an expiry
        // always has its audit row. Should the operator stop in between,
        // the next pass finds the old status and audits them again (at
        // least once, never none).
        for &(code, decision) in &outcomes {
            audit_outcome(&cx, &a, &uid, code, decision, &desired).await?;
        }
        let patch = json!({
            "metadata": {"resourceVersion": a.resource_version()},
            "status": serde_json::to_value(&desired).unwrap_or_default(),
        });
        match api
            .patch_status(
                &name,
                &PatchParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {}
            // Someone (a gateway consuming it) wrote first: the watch
            // brings the new version and we decide again (what was audited
            // is remembered, not audited twice).
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(50)));
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                cx.keep_only(&uid, &[]);
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e.into()),
        }
        for &(code, decision) in &outcomes {
            announce(&cx, &a, code, decision, &desired).await;
        }
    }

    Ok(match finished_at(&a, now) {
        Some(done) => Action::requeue(until(done, now) + cx.retention),
        // Pending or Approved: look again when it expires.
        None => Action::requeue(until(a.spec.expires_at.0, now)),
    })
}

/// Outcomes audited, by approval uid and decision.
type Audited = HashSet<(String, &'static str)>;

impl Lifecycle {
    /// Forgets the outcomes remembered for `uid` other than `outcomes`.
    fn keep_only(&self, uid: &str, outcomes: &[(ReasonCode, &'static str)]) {
        keep_only(
            &mut self.audited.lock().unwrap_or_else(|p| p.into_inner()),
            uid,
            outcomes,
        );
    }
}

fn keep_only(audited: &mut Audited, uid: &str, outcomes: &[(ReasonCode, &'static str)]) {
    audited.retain(|(u, d)| u != uid || outcomes.iter().any(|(_, o)| o == d));
}

/// The outcomes `desired` records that `old` did not: a decision (its
/// first `decidedAt`) and an expiry, in that order. An approval approved,
/// or approved and used, while the operator was away still has its
/// decision audited.
pub fn newly_recorded(
    old: Option<&ApprovalStatus>,
    desired: &ApprovalStatus,
    a: &Approval,
) -> Vec<(ReasonCode, &'static str)> {
    let mut outcomes = Vec::new();
    let was_decided = old.is_some_and(|s| s.decided_at.is_some());
    if !was_decided && desired.decided_at.is_some() {
        outcomes.extend(a.spec.decision.and_then(|d| {
            outcome(match d {
                ApprovalDecision::Approved => ApprovalPhase::Approved,
                ApprovalDecision::Denied => ApprovalPhase::Denied,
            })
        }));
    }
    let was_expired = old.and_then(|s| s.phase) == Some(ApprovalPhase::Expired);
    if !was_expired && desired.phase == Some(ApprovalPhase::Expired) {
        outcomes.extend(outcome(ApprovalPhase::Expired));
    }
    outcomes
}

/// Audits one outcome and waits until it is durable (in the database or
/// the spool), unless it was audited already for a status write that
/// lost a race.
async fn audit_outcome(
    cx: &Lifecycle,
    a: &Approval,
    uid: &str,
    code: ReasonCode,
    decision: &'static str,
    status: &ApprovalStatus,
) -> Result<(), LifecycleError> {
    let name = a.name_any();
    let Some(audit) = &cx.audit else {
        tracing::warn!(approval = %name, outcome = decision, "approval outcome not audited: start the operator with --audit-url");
        return Ok(());
    };
    let key = (uid.to_owned(), decision);
    if cx
        .audited
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&key)
    {
        return Ok(());
    }
    let namespace = a.namespace().unwrap_or_default();
    // Who decided: an expiry has no decider.
    let actor = if code == ReasonCode::ApprovalExpired {
        None
    } else {
        status.decided_by.as_deref()
    };
    let facts = ApprovalFacts {
        namespace: &namespace,
        name: &name,
        agent: &a.spec.agent,
        tool: &a.spec.tool,
        arguments_digest: &a.spec.arguments_digest,
        request_id: &a.spec.request_id,
        policy: &a.spec.policy,
        rule: a.spec.rule.as_deref(),
        actor,
    };
    let mut event = AuditEvent::approval_outcome(&facts, decision, code.as_str());
    event.policy_generation = Some(a.spec.policy_generation);
    // On failure the reconcile fails (logged and retried by error_policy).
    audit.record_durable(event).await?;
    cx.audited
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key);
    Ok(())
}

/// Counts and announces (with an Event) an outcome the operator just
/// recorded.
async fn announce(
    cx: &Lifecycle,
    a: &Approval,
    code: ReasonCode,
    decision: &'static str,
    status: &ApprovalStatus,
) {
    let label = code.as_str().trim_start_matches("approval.");
    cx.metrics
        .approval_outcomes
        .with_label_values(&[label])
        .inc();
    let decided_by = status.decided_by.as_deref();
    let who = decided_by.unwrap_or("an unrecorded user");
    let expired = status.phase == Some(ApprovalPhase::Expired);
    let (type_, note) = match code {
        // Approved too late, or while the operator was away and then left
        // unused: either way it cannot be used any more.
        ReasonCode::ApprovalApproved if expired => (
            EventType::Warning,
            format!(
                "approved by {who}, but it expired unused at {}; {} may not run {}",
                a.spec.expires_at.0, a.spec.agent, a.spec.tool
            ),
        ),
        ReasonCode::ApprovalApproved => (
            EventType::Normal,
            format!(
                "{} may run {} once; approved by {who}",
                a.spec.agent, a.spec.tool
            ),
        ),
        ReasonCode::ApprovalDenied => (
            EventType::Normal,
            format!(
                "{} may not run {}; denied by {who}",
                a.spec.agent, a.spec.tool
            ),
        ),
        _ if a.spec.decision.is_some() => (
            EventType::Warning,
            format!(
                "approved but not used before {}; {} may not run {}",
                a.spec.expires_at.0, a.spec.agent, a.spec.tool
            ),
        ),
        _ => (
            EventType::Warning,
            format!(
                "nobody decided before {}; {} may not run {}",
                a.spec.expires_at.0, a.spec.agent, a.spec.tool
            ),
        ),
    };
    publish(&cx.recorder, a, type_, decision, note).await;
    if code != ReasonCode::ApprovalExpired && decided_by.is_none() {
        publish(
            &cx.recorder,
            a,
            EventType::Warning,
            "DeciderNotRecorded",
            "the decision carries no spec.decidedBy: install the chart's admission policies so the deciding user is stamped from the request".into(),
        )
        .await;
    }
}

fn error_policy(_: Arc<DynamicObject>, e: &LifecycleError, cx: Arc<Lifecycle>) -> Action {
    tracing::warn!(error = %e, "approval reconcile failed; retrying");
    cx.metrics.errors.with_label_values(&["approvals"]).inc();
    Action::requeue(Duration::from_secs(1))
}

/// Runs the lifecycle controller until dropped.
pub async fn run(cx: Lifecycle) {
    // Untyped objects, converted one by one in `reconcile`: a malformed
    // Approval is skipped and never stalls the others (see crate::watch).
    let resource = ApiResource::erase::<Approval>(&());
    let api: Api<DynamicObject> = Api::all_with(cx.client.clone(), &resource);
    let controller = Controller::new_with(api, watcher::Config::default(), resource);
    let store = controller.store();
    let metrics = Arc::clone(&cx.metrics);
    // Approvals by phase, from the controller's cache.
    let gauge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let now = Timestamp::now();
            let mut counts = [0i64; 5];
            for a in store.state().iter().filter_map(|o| typed(o).ok()) {
                counts[a.phase_at(now) as usize] += 1;
            }
            for (phase, n) in [
                ApprovalPhase::Pending,
                ApprovalPhase::Approved,
                ApprovalPhase::Denied,
                ApprovalPhase::Expired,
                ApprovalPhase::Consumed,
            ]
            .iter()
            .zip(counts)
            {
                metrics
                    .approvals
                    .with_label_values(&[phase.as_str()])
                    .set(n);
            }
        }
    });
    let _gauge = crate::leader::AbortOnDrop(Some(gauge));
    controller
        .run(reconcile, error_policy, Arc::new(cx))
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crds::ApprovalSpec;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn approval(decision: Option<ApprovalDecision>) -> Approval {
        let mut a = Approval::new(
            "intake-0a1b2c3d4e5f",
            ApprovalSpec {
                agent: "intake".into(),
                tool: "send_email".into(),
                arguments: json!({}),
                arguments_digest: format!("sha256:{}", "0".repeat(64)),
                request_id: "r-1".into(),
                policy: "clinic".into(),
                policy_generation: 3,
                rule: None,
                requested_by: None,
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
                .map(|(code, _)| code)
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

    #[test]
    fn an_audited_outcome_is_remembered_until_a_status_records_it() {
        let approved = outcome(ApprovalPhase::Approved)
            .into_iter()
            .collect::<Vec<_>>();
        let mut audited = Audited::new();
        audited.insert(("uid-1".into(), "Approved"));
        audited.insert(("uid-2".into(), "Expired"));
        // A pass on a stale copy (or after a 409) still has it to record.
        keep_only(&mut audited, "uid-1", &approved);
        assert!(audited.contains(&("uid-1".into(), "Approved")));
        // The status now records it: forgotten; other approvals untouched.
        keep_only(&mut audited, "uid-1", &[]);
        assert!(!audited.contains(&("uid-1".into(), "Approved")));
        assert!(audited.contains(&("uid-2".into(), "Expired")));
    }
}
