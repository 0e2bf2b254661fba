//! The Approval lifecycle. Gateways create Approvals and consume them;
//! humans decide them with `kubectl patch`; this controller keeps the
//! record:
//!
//! - `status.phase` follows the decision, consumption and deadline
//!   (`Pending` → `Approved` / `Denied` / `Expired` → `Consumed`), requeued
//!   at `expiresAt` so an undecided approval expires on time;
//! - the decision is recorded once: who (`spec.decidedBy`, stamped from the
//!   authenticated user by the chart's admission policy) and when; a
//!   `decidedBy` / `decidedAt` someone else wrote into the status is not
//!   taken for a decision (see [`plan::desired_status`]);
//! - each outcome (approved, denied, expired) is audited through
//!   `palisade-audit` before the status write that records it, and
//!   announced with an Event after; consumption is audited by the gateway
//!   that consumed it;
//! - decided, expired and consumed approvals are deleted after the
//!   retention period.
//!
//! Status writes carry the `resourceVersion` read, so a write never
//! overwrites a gateway's consumption it has not seen.
//!
//! What the status should be is computed purely in [`plan`]; this module
//! watches (cluster-wide, or one controller per watched namespace) and
//! applies it.

mod notify;
mod plan;

use crate::config::MANAGER;
use crate::events::{PlannedEvent, publish};
use crate::guard::panic_message;
use futures_util::{FutureExt, StreamExt};
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
pub use notify::Webhook;
use palisade_audit::{ApprovalFacts, AuditEvent, AuditWriter};
use palisade_crds::{Approval, ApprovalDecision, ApprovalPhase, ApprovalStatus, Notification};
use plan::{Audited, keep_only};
pub use plan::{Outcome, desired_status, finished_at, newly_recorded};
use serde_json::json;
use std::panic::AssertUnwindSafe;
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
    /// The watched namespaces (`--watch-namespaces`); empty: all.
    pub namespaces: Vec<String>,
    /// Posts the notifications policies ask for (`spec.approvals.notify`).
    pub webhook: Webhook,
    /// Notifications sent whose recording status has not been seen yet,
    /// by approval uid (like [`Lifecycle::audited`]).
    pub notified: Arc<Mutex<std::collections::HashSet<(String, Notification)>>>,
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
    /// Reconciling this approval panicked (a bug): it is retried like any
    /// error, and the other approvals carry on.
    #[error("reconciling the approval panicked: {0}")]
    Panic(String),
}

fn until(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or_default() + Duration::from_millis(10)
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
    if !crate::scope::contains(&cx.namespaces, &namespace) {
        // The watches are namespaced; this never acts outside them anyway.
        return Ok(Action::await_change());
    }
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
        for &outcome in &outcomes {
            audit_outcome(&cx, &a, &uid, outcome, &desired).await?;
        }
        let mut status = serde_json::to_value(&desired).unwrap_or_default();
        // A merge patch keeps what it does not name: a decider or time the
        // status claimed without the spec's decision is removed by name.
        for field in ["decidedBy", "decidedAt"] {
            if status.get(field).is_none() {
                status[field] = serde_json::Value::Null;
            }
        }
        let patch = json!({
            "metadata": {"resourceVersion": a.resource_version()},
            "status": status,
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
        if a.status.as_ref().and_then(|s| s.phase).is_none()
            && desired.phase == Some(ApprovalPhase::Pending)
        {
            publish(&cx.recorder, &requested(&a)).await;
        }
        for &outcome in &outcomes {
            announce(&cx, &a, outcome, &desired).await;
        }
    }
    let reminder = notify_if_due(&cx, &a, &desired, now).await?;

    Ok(match finished_at(&a, now) {
        Some(done) => Action::requeue(until(done, now) + cx.retention),
        // Pending or Approved: look again when it expires, or when a
        // reminder falls due.
        None => Action::requeue(until(
            reminder.map_or(a.spec.expires_at.0, |r| r.min(a.spec.expires_at.0)),
            now,
        )),
    })
}

/// The Event that says a call is waiting, and how to look and decide.
fn requested(a: &Approval) -> PlannedEvent {
    let call = &a.spec.call;
    let namespace = a.namespace().unwrap_or_default();
    let name = a.name_any();
    PlannedEvent::about(
        a,
        EventType::Normal,
        "Requested",
        format!(
            "{} wants to run {} (policy {}); decide before {}: kubectl palisade show {name} -n {namespace}",
            call.agent, call.tool, call.policy, a.spec.expires_at.0
        ),
    )
}

/// Sends the notification due for a pending approval, if its policy asks
/// for them (`spec.approvals.notify`), and records it in
/// `status.notified`. Returns when the next one falls due. A webhook that
/// refuses is retried on the next pass (30 s later) until the approval
/// stops pending; each failure is a Warning Event.
async fn notify_if_due(
    cx: &Lifecycle,
    a: &Approval,
    status: &ApprovalStatus,
    now: Timestamp,
) -> Result<Option<Timestamp>, LifecycleError> {
    let phase = status.phase.unwrap_or(ApprovalPhase::Pending);
    // What the status records, and what this process sent that a status
    // it has seen does not record yet (a pass on a copy older than its own
    // write must not send it again).
    let uid = a.uid().unwrap_or_default();
    let sent: Vec<Notification> = {
        let mut memory = cx.notified.lock().unwrap_or_else(|p| p.into_inner());
        memory.retain(|(u, kind)| u != &uid || !status.notified.contains(kind));
        let mut sent = status.notified.clone();
        sent.extend(memory.iter().filter(|(u, _)| u == &uid).map(|(_, k)| *k));
        sent
    };
    let sent = &sent;
    if phase != ApprovalPhase::Pending || sent.contains(&Notification::Expiring) {
        return Ok(None);
    }
    let namespace = a.namespace().unwrap_or_default();
    let failed = |e: notify::NotifyError| {
        cx.metrics
            .approval_notifications
            .with_label_values(&["failed"])
            .inc();
        PlannedEvent::about(
            a,
            EventType::Warning,
            "NotificationFailed",
            format!("the policy's approval notification was not sent: {e}"),
        )
    };
    let target = match cx
        .webhook
        .target(&cx.client, &namespace, &a.spec.call.policy)
        .await
    {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(None),
        Err(e) => {
            publish(&cx.recorder, &failed(e)).await;
            return Ok(now.checked_add(RETRY_NOTIFICATION).ok());
        }
    };
    let Some(kind) = notify::due(a, phase, sent, target.before_expiry, now) else {
        return Ok(notify::next_due(a, sent, target.before_expiry));
    };
    if let Err(e) = cx
        .webhook
        .post(&target.url, &notify::payload(a, kind))
        .await
    {
        publish(&cx.recorder, &failed(e)).await;
        return Ok(now.checked_add(RETRY_NOTIFICATION).ok());
    }
    cx.metrics
        .approval_notifications
        .with_label_values(&["sent"])
        .inc();
    cx.notified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((uid.clone(), kind));
    let mut notified = sent.clone();
    notified.push(kind);
    let api: Api<Approval> = Api::namespaced(cx.client.clone(), &namespace);
    let patch = json!({"status": {"notified": notified}});
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch_status(&a.name_any(), &params, &Patch::Merge(patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {
            // Gone: nothing more to remember for it.
            cx.notified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(u, _)| u != &uid);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(notify::next_due(a, &notified, target.before_expiry))
}

/// What `palisade_operator_approvals_expiring` counts: pending with less
/// than this left.
const EXPIRING_SOON: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// How soon a notification that could not be sent is tried again.
const RETRY_NOTIFICATION: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

impl Lifecycle {
    /// Forgets the outcomes remembered for `uid` other than `outcomes`.
    fn keep_only(&self, uid: &str, outcomes: &[Outcome]) {
        keep_only(
            &mut self.audited.lock().unwrap_or_else(|p| p.into_inner()),
            uid,
            outcomes,
        );
    }
}

/// Audits one outcome and waits until it is durable (in the database or
/// the spool), unless it was audited already for a status write that
/// lost a race.
async fn audit_outcome(
    cx: &Lifecycle,
    a: &Approval,
    uid: &str,
    outcome: Outcome,
    status: &ApprovalStatus,
) -> Result<(), LifecycleError> {
    let name = a.name_any();
    let Some(audit) = &cx.audit else {
        tracing::warn!(approval = %name, outcome = outcome.as_str(), "approval outcome not audited: start the operator with --audit-url");
        return Ok(());
    };
    let key = (uid.to_owned(), outcome);
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
    let actor = if outcome == Outcome::Expired {
        None
    } else {
        status.decided_by.as_deref()
    };
    let facts = ApprovalFacts {
        namespace: &namespace,
        name: &name,
        call: &a.spec.call,
        actor,
    };
    let event = AuditEvent::approval_outcome(&facts, outcome.into(), outcome.code().as_str());
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
async fn announce(cx: &Lifecycle, a: &Approval, outcome: Outcome, status: &ApprovalStatus) {
    let label = outcome.code().as_str().trim_start_matches("approval.");
    cx.metrics
        .approval_outcomes
        .with_label_values(&[label])
        .inc();
    for event in announcements(a, outcome, status) {
        publish(&cx.recorder, &event).await;
    }
}

/// The Events that announce `outcome`.
fn announcements(a: &Approval, outcome: Outcome, status: &ApprovalStatus) -> Vec<PlannedEvent> {
    let decided_by = status.decided_by.as_deref();
    let who = decided_by.unwrap_or("an unrecorded user");
    let expired = status.phase == Some(ApprovalPhase::Expired);
    let (agent, tool, expires_at) = (&a.spec.call.agent, &a.spec.call.tool, &a.spec.expires_at.0);
    let (type_, note) = match outcome {
        // Approved too late, or while the operator was away and then left
        // unused: either way it cannot be used any more.
        Outcome::Decided(ApprovalDecision::Approved) if expired => (
            EventType::Warning,
            format!(
                "approved by {who}, but it expired unused at {expires_at}; {agent} may not run {tool}"
            ),
        ),
        Outcome::Decided(ApprovalDecision::Approved) => (
            EventType::Normal,
            format!("{agent} may run {tool} once; approved by {who}"),
        ),
        Outcome::Decided(ApprovalDecision::Denied) => (
            EventType::Normal,
            format!("{agent} may not run {tool}; denied by {who}"),
        ),
        Outcome::Expired if a.spec.decision.is_some() => (
            EventType::Warning,
            format!("approved but not used before {expires_at}; {agent} may not run {tool}"),
        ),
        Outcome::Expired => (
            EventType::Warning,
            format!("nobody decided before {expires_at}; {agent} may not run {tool}"),
        ),
    };
    let mut events = vec![PlannedEvent::about(a, type_, outcome.as_str(), note)];
    if outcome != Outcome::Expired && decided_by.is_none() {
        events.push(PlannedEvent::about(
            a,
            EventType::Warning,
            "DeciderNotRecorded",
            "the decision carries no spec.decidedBy: install the chart's admission policies so the deciding user is stamped from the request".into(),
        ));
    }
    events
}

/// [`reconcile`], with a panic caught: one approval cannot stop the
/// controller (and with it every other approval).
async fn guarded(o: Arc<DynamicObject>, cx: Arc<Lifecycle>) -> Result<Action, LifecycleError> {
    AssertUnwindSafe(reconcile(o, cx))
        .catch_unwind()
        .await
        .unwrap_or_else(|payload| Err(LifecycleError::Panic(panic_message(&*payload))))
}

fn error_policy(_: Arc<DynamicObject>, e: &LifecycleError, cx: Arc<Lifecycle>) -> Action {
    tracing::warn!(error = %e, "approval reconcile failed; retrying");
    let kind = match e {
        LifecycleError::Panic(_) => "panic",
        _ => "approvals",
    };
    cx.metrics.errors.with_label_values(&[kind]).inc();
    Action::requeue(Duration::from_secs(1))
}

/// Runs the lifecycle controller until dropped: one cluster-wide, or one
/// per watched namespace (a controller's cache is one reflector store,
/// which cannot be fed by several watches).
pub async fn run(cx: Lifecycle) {
    // Untyped objects, converted one by one in `reconcile`: a malformed
    // Approval is skipped and never stalls the others (see crate::watch).
    let resource = ApiResource::erase::<Approval>(&());
    let controllers: Vec<Controller<DynamicObject>> =
        crate::scope::dynamic_apis(&cx.client, &cx.namespaces, &resource)
            .into_iter()
            .map(|api| Controller::new_with(api, watcher::Config::default(), resource.clone()))
            .collect();
    let stores: Vec<_> = controllers.iter().map(Controller::store).collect();
    let metrics = Arc::clone(&cx.metrics);
    // Approvals by phase, from the controller's cache.
    let gauge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let now = Timestamp::now();
            let mut counts = [0i64; 5];
            let mut expiring: std::collections::BTreeMap<String, i64> = Default::default();
            let objects = stores.iter().flat_map(|s| s.state());
            for a in objects.filter_map(|o| typed(&o).ok()) {
                let phase = a.phase_at(now);
                counts[phase as usize] += 1;
                if phase == ApprovalPhase::Pending
                    && a.spec.expires_at.0.duration_since(now) < EXPIRING_SOON
                {
                    *expiring
                        .entry(a.namespace().unwrap_or_default())
                        .or_default() += 1;
                }
            }
            metrics.approvals_expiring.reset();
            for (namespace, n) in expiring {
                metrics
                    .approvals_expiring
                    .with_label_values(&[namespace.as_str()])
                    .set(n);
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
    let cx = Arc::new(cx);
    let runs = controllers.into_iter().map(|c| {
        c.run(guarded, error_policy, Arc::clone(&cx))
            .for_each(|_| async {})
    });
    futures_util::future::join_all(runs).await;
}
