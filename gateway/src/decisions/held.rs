//! Held tool calls: a call whose decision is `RequireApproval` is recorded
//! as an approval (a `202` for `/v1/tool-calls`, an explanation in chat);
//! repeating it naming an approved approval uses the approval once. Every
//! approval outcome (approved, denied, expired, consumed, a replay refused)
//! is audited and counted here.

use super::{AuditDecision, ToolCallDecision, ToolCallRequest};
use crate::approvals::{Approvals, Consumed, Hold, Recorded, View, decide_and_audit};
use crate::error::GatewayError;
use crate::state::AppState;
use palisade_audit::AuditEvent;
use palisade_audit::approvals::{ApprovalStore, DecideRefused};
use palisade_crds::ApprovalDecision;
use palisade_policy::{Policy, ReasonCode};
use std::sync::Arc;
use std::time::Duration;

/// What happened to a held call.
#[derive(Debug)]
pub enum Step {
    /// Recorded (or found) and waiting: `202`.
    Held(View),
    /// An approved approval was used by this call: `200`, once.
    Allowed(View),
    /// The named approval cannot be used: `403`.
    Refused(ReasonCode, Option<View>),
    /// Not recorded: the agent has `pending` approvals waiting, as many as
    /// its policy allows (`limit`): `429 limit.pending_approvals`.
    Limited { pending: u64, limit: u32 },
}

/// The approval a held call is recorded as.
fn hold_of(policy: &Policy, call: &ToolCallRequest<'_>, decided: &ToolCallDecision<'_>) -> Hold {
    Hold::new(
        policy,
        &call.who.agent,
        decided.decision.rule.clone(),
        call.tool,
        // Held calls have valid arguments: invalid ones are denied.
        call.arguments.value().unwrap_or(&serde_json::Value::Null),
        decided.digest.clone(),
        call.request_id,
    )
}

/// Holds the call (`policy` needs approval for it), or uses the approval
/// it names.
pub async fn step(
    state: &AppState,
    policy: &Policy,
    call: &ToolCallRequest<'_>,
    decided: &ToolCallDecision<'_>,
    approval: Option<&str>,
) -> Result<Step, GatewayError> {
    let Some(name) = approval else {
        let recorded = state
            .approvals
            .hold(&hold_of(policy, call, decided), jiff::Timestamp::now())
            .await?;
        count(state, outcome_of_hold(&recorded));
        return Ok(match recorded {
            Recorded::Held(view) => Step::Held(*view),
            Recorded::TooManyPending { pending, limit } => Step::Limited { pending, limit },
        });
    };
    let Some(view) = state.approvals.get(&call.who.namespace, name).await? else {
        count(state, "not_found");
        return Ok(Step::Refused(ReasonCode::ApprovalNotFound, None));
    };
    match view.check_use(&call.who.agent, call.tool, &decided.digest) {
        Ok(()) => {}
        Err(ReasonCode::ApprovalPending) => return Ok(Step::Held(view)),
        Err(code) => {
            refused(state, &view, code);
            return Ok(Step::Refused(code, Some(view)));
        }
    }
    match state.approvals.consume(&view).await? {
        Consumed::Won(used) => {
            let by = used.consumed_by.clone();
            let code = ReasonCode::ApprovalConsumed;
            if !record_outcome(state, &used, AuditDecision::Consumed, code, by.as_deref()) {
                // Used up, but unaudited: the call is refused.
                return Err(GatewayError::AuditUnavailable {
                    request_id: Some(call.request_id.to_owned()),
                });
            }
            Ok(Step::Allowed(used))
        }
        Consumed::Lost(now) => {
            let code = now
                .check_use(&call.who.agent, call.tool, &decided.digest)
                .err()
                .unwrap_or(ReasonCode::ApprovalReplayRefused);
            refused(state, &now, code);
            Ok(Step::Refused(code, Some(now)))
        }
    }
}

/// Records the approval of a tool call the model proposed in chat and
/// returns its name at once: the name is derived from the request, so it
/// is known before the record is written, and the write (idempotent) runs
/// in the background, the stream not waiting for it. Once approved, the
/// agent runs the call through `POST /v1/tool-calls` with `"approval"`.
pub fn hold_in_background(
    state: &AppState,
    policy: &Policy,
    call: &ToolCallRequest<'_>,
    decided: &ToolCallDecision<'_>,
) -> String {
    let hold = hold_of(policy, call, decided);
    let name = hold.name();
    let approvals = state.approvals.clone();
    let metrics = Arc::clone(&state.metrics);
    tokio::spawn(async move {
        match approvals.hold(&hold, jiff::Timestamp::now()).await {
            Ok(recorded) => {
                let outcome = outcome_of_hold(&recorded);
                metrics.approvals.with_label_values(&[outcome]).inc();
                if let Recorded::TooManyPending { pending, limit } = recorded {
                    tracing::warn!(approval = %hold.name(), agent = %hold.call.agent, pending, limit, "a held tool call was not recorded: the agent has as many approvals pending as its policy allows (limit.pending_approvals)");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, approval = %hold.name(), "could not record the approval of a held tool call")
            }
        }
    });
    name
}

impl Step {
    /// Adds the approval to the tool-call audit row.
    pub fn annotate(&self, event: &mut AuditEvent) {
        let (code, decision, view) = match self {
            Self::Held(v) => (ReasonCode::ApprovalPending, None, Some(v)),
            Self::Allowed(v) => (
                ReasonCode::ToolAllowedByApproval,
                Some(AuditDecision::Allow),
                Some(v),
            ),
            Self::Refused(code, v) => (*code, Some(AuditDecision::Deny), v.as_ref()),
            Self::Limited { .. } => (
                ReasonCode::LimitPendingApprovals,
                Some(AuditDecision::Deny),
                None,
            ),
        };
        if let Some(d) = decision {
            event.set_decision(d);
        }
        event.reason_codes.insert(0, code.as_str().to_owned());
        if let Some(v) = view {
            event.approval = Some(v.name.clone());
            event.decided_by = v.decided_by.clone();
        }
    }
}

/// Audits an approval outcome and counts it. Returns whether the audit
/// writer took it.
pub fn record_outcome(
    state: &AppState,
    view: &View,
    decision: AuditDecision,
    code: ReasonCode,
    actor: Option<&str>,
) -> bool {
    count(state, outcome_of(code));
    state
        .audit
        .record(AuditEvent::approval_outcome(
            &view.facts(actor),
            decision,
            code.as_str(),
        ))
        .is_ok()
}

/// An outcome's label: its code's name (`approval.denied` → `denied`).
fn outcome_of(code: ReasonCode) -> &'static str {
    let code = code.as_str();
    code.strip_prefix("approval.").unwrap_or(code)
}

/// A hold's label: `requested`, or `limited` when none was recorded.
fn outcome_of_hold(recorded: &Recorded) -> &'static str {
    match recorded {
        Recorded::Held(_) => "requested",
        Recorded::TooManyPending { .. } => "limited",
    }
}

fn count(state: &AppState, outcome: &str) {
    state.metrics.approvals.with_label_values(&[outcome]).inc();
}

/// A use refused: a replay is audited (someone tried to run a call twice),
/// anything else only counted.
fn refused(state: &AppState, view: &View, code: ReasonCode) {
    if code == ReasonCode::ApprovalReplayRefused {
        record_outcome(state, view, AuditDecision::Deny, code, None);
    } else {
        count(state, outcome_of(code));
    }
}

/// Records a standalone decision made over HTTP (audited durably before
/// it is confirmed) and counts it.
pub async fn decide(
    state: &AppState,
    store: &ApprovalStore,
    namespace: &str,
    name: &str,
    decision: ApprovalDecision,
    reason: Option<&str>,
    decided_by: &str,
) -> Result<View, GatewayError> {
    let decided = decide_and_audit(
        store,
        &state.audit,
        namespace,
        name,
        decision,
        reason,
        decided_by,
    )
    .await?;
    match decided {
        Ok(view) => {
            count(state, &decision.as_str().to_lowercase());
            Ok(view)
        }
        Err(DecideRefused::NotFound) => Err(GatewayError::ApprovalNotFound(name.to_owned())),
        Err(DecideRefused::AlreadyDecided(d)) => Err(GatewayError::ApprovalAlreadyDecided {
            name: name.to_owned(),
            decision: d,
        }),
        Err(DecideRefused::Expired) => Err(GatewayError::ApprovalExpiredUndecided(name.to_owned())),
    }
}

/// Standalone: audits each approval that expired undecided, once (in a
/// cluster the operator does).
pub async fn sweep_expired(state: AppState) {
    let Approvals::Local { store, .. } = &state.approvals else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = jiff::Timestamp::now();
        match store.take_expired(now).await {
            Ok(rows) => {
                for row in rows {
                    let view = View::of_row(row, now);
                    let code = ReasonCode::ApprovalExpired;
                    record_outcome(&state, &view, AuditDecision::Expired, code, None);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check for expired approvals"),
        }
    }
}
