//! `POST /v1/tool-calls`: may this agent run this tool with these
//! arguments? `200` allow, `403` deny (with the reason code and rule),
//! `202` held for a human's approval (with where to poll); a repeat naming
//! the approved approval is allowed once. Every decision is audited before
//! it is answered, and refused (`503`) if it cannot be.

use crate::api::{json_body, request_id};
use crate::auth::Agent;
use crate::decisions::held::{self, Step};
use crate::decisions::{
    Proposed, ToolCallDecision, ToolCallRequest, admit, bounded_tool_name, decide_tool_call,
    recorded,
};
use crate::error::GatewayError;
use crate::limits::UnreadBody;
use crate::state::AppState;
use crate::telemetry;
use crate::tools;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use palisade_crds::ApprovalPhase;
use palisade_policy::{MAX_TOOL_NAME_BYTES, Outcome, PolicyRef, ReasonCode, ToolArguments};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tracing::Instrument;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ToolCallBody {
    /// The tool the agent wants to run.
    tool: String,
    /// Its arguments (a JSON object), as the text that was sent: parsed
    /// once, strictly, by [`ToolArguments::parse`], so what is decided is
    /// exactly what was sent (a key given twice, or anything but an
    /// object, is `tool.arguments_invalid`). Left out: `{}`.
    #[serde(default, deserialize_with = "raw")]
    arguments: Option<Box<RawValue>>,
    /// The caller's request id, for correlating audit rows.
    request_id: Option<String>,
    /// The approved Approval this call uses (after a `202`).
    approval: Option<String>,
    /// Run the call too, if it is allowed and the policy declares the
    /// tool in `spec.tools.run`: the answer then carries its result.
    #[serde(default)]
    execute: bool,
}

/// Any JSON value as its text (`null` too, which `Option` alone would
/// read as left out).
fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// The decision, as the answer's body (or its error's `palisade` object)
/// carries it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DecisionBody<'a> {
    decision: &'static str,
    effective_decision: &'static str,
    enforced: bool,
    reason_code: &'static str,
    /// Held calls: the policy's code, then where the approval stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_codes: Option<[&'static str; 2]>,
    rule: Option<&'a str>,
    policy: Option<&'a PolicyRef>,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<Value>,
    /// With `"execute": true`: what running it gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution: Option<Value>,
}

impl<'a> DecisionBody<'a> {
    fn of(decided: &'a ToolCallDecision<'_>, request_id: &'a str) -> Self {
        let d = &decided.decision;
        Self {
            decision: d.outcome.as_str(),
            effective_decision: d.effective_outcome().as_str(),
            enforced: d.enforced,
            reason_code: d.reason_code.as_str(),
            reason_codes: None,
            rule: d.rule.as_deref(),
            policy: d.policy.as_ref(),
            request_id,
            message: None,
            approval: None,
            result: None,
            execution: None,
        }
    }

    /// Allowed by the human's approval `view`.
    fn approved(&mut self, view: Value) {
        let allow = Outcome::Allow.as_str();
        self.decision = allow;
        self.effective_decision = allow;
        self.reason_code = ReasonCode::ToolAllowedByApproval.as_str();
        self.approval = Some(view);
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `POST /v1/tool-calls`.
pub async fn handle(
    State(state): State<AppState>,
    Agent { who, snapshot }: Agent,
    headers: HeaderMap,
    body: UnreadBody,
) -> Result<Response, GatewayError> {
    // Read only now that the agent is authenticated.
    let body = body.read().await?;
    let req: ToolCallBody = json_body(&headers, &body, |e| {
        format!(
            "invalid tool-call request: {e}; expected {{\"tool\": \"name\", \"arguments\": {{...}}}}"
        )
    })?;
    let arguments = ToolArguments::parse(req.arguments.as_deref().map_or("", RawValue::get));
    let request_id = request_id(&headers, req.request_id.as_deref());
    let span = telemetry::tool_span(
        &req.tool,
        &who,
        &request_id,
        crate::api::traceparent(&headers),
    );
    async {
        admit(&state, &request_id).await?;
        let call = ToolCallRequest {
            proposed: Proposed::Api,
            request_id: &request_id,
            who: &who,
            tool: &req.tool,
            arguments: &arguments,
            approval: req.approval.as_deref(),
        };
        let decided = decide_tool_call(&state, &snapshot, &call);
        let d = &decided.decision;
        telemetry::record_decision(d.outcome.as_str(), d.reason_code.as_str(), d.rule.as_deref());

        // A held call: hold it (202), or use the approval it names.
        let step = match (decided.decision.effective_outcome(), decided.policy) {
            (Outcome::RequireApproval, Some(policy)) => {
                Some(held::step(&state, policy, &call, &decided, req.approval.as_deref()).await?)
            }
            _ => None,
        };
        // Answered means recorded: the decision is given once its row is
        // durable (many requests share one commit).
        recorded(decided.audit(&state, &call, step.as_ref())?, &request_id).await?;

        let mut body = DecisionBody::of(&decided, &request_id);
        if let Some(step) = step {
            if req.execute
                && let Step::Allowed(view) = &step
            {
                // Approved, and to be run: exactly the call that was
                // approved (its digest was checked), once.
                body.approved(view.to_json());
                return execute(&state, &call, &decided, body).await;
            }
            return Ok(respond_held(step, body, &req.tool));
        }
        let d = &decided.decision;
        let tool = bounded_tool_name(&req.tool);
        let message = match (d.effective_outcome(), d.reason_code) {
            (Outcome::Allow, _) if req.execute => {
                return execute(&state, &call, &decided, body).await;
            }
            (Outcome::Allow, _) => return Ok(allowed(&body)),
            (_, ReasonCode::ToolNameTooLong) => format!(
                "tool: the name is {} bytes long; tool names are at most {MAX_TOOL_NAME_BYTES} bytes",
                req.tool.len()
            ),
            (_, ReasonCode::ToolArgumentsInvalid) => format!(
                "arguments of tool {:?} cannot be decided: {}; send a JSON object with each key once",
                tool,
                arguments
                    .error()
                    .map_or_else(|| "not an object".to_owned(), ToString::to_string)
            ),
            (Outcome::Deny, _) => format!(
                "tool {:?} is denied for agent {:?} ({}{})",
                tool,
                who.agent,
                d.reason_code,
                d.rule
                    .as_deref()
                    .map(|r| format!(", rule {r}"))
                    .unwrap_or_default()
            ),
            (Outcome::RequireApproval, _) => format!(
                "tool {:?} needs a human's approval, but no policy names agent {:?}; the call is refused",
                tool, who.agent
            ),
        };
        Err(GatewayError::Refused {
            code: d.reason_code,
            message,
            details: body.to_value(),
        })
    }
    .instrument(span)
    .await
}

/// Runs an allowed call Palisade runs itself, audits what came of it
/// (before answering), and answers `200` with the result, or the
/// failure's status and reason code.
async fn execute(
    state: &AppState,
    call: &ToolCallRequest<'_>,
    decided: &ToolCallDecision<'_>,
    mut body: DecisionBody<'_>,
) -> Result<Response, GatewayError> {
    let policy = decided.policy;
    let Some((policy, tool)) = policy.and_then(|p| p.runnable.get(call.tool).map(|t| (p, t)))
    else {
        let declared: Vec<String> = policy
            .map(|p| p.runnable.all().map(|t| t.name().to_owned()).collect())
            .unwrap_or_default();
        return Err(GatewayError::BadRequest(format!(
            "tool {:?} is allowed, but Palisade does not run it: {}; leave out \"execute\" and run the tool yourself, or declare it in the policy's spec.tools.run",
            bounded_tool_name(call.tool),
            if declared.is_empty() {
                "the policy declares no tool in spec.tools.run".to_owned()
            } else {
                format!("the policy runs {}", declared.join(", "))
            }
        )));
    };
    let ran = tools::run_recorded(
        state,
        call,
        &decided.decision,
        tool,
        &policy.runnable.results,
    )
    .await?;
    let mut execution = serde_json::json!({
        "reasonCode": ran.code().as_str(),
        "durationMs": ran.duration.as_secs_f64() * 1000.0,
    });
    match ran.outcome {
        Ok(result) => {
            execution["truncated"] = result.truncated.into();
            body.execution = Some(execution);
            body.result = Some(result.value);
            Ok(allowed(&body))
        }
        Err(failure) => {
            body.execution = Some(execution);
            Err(GatewayError::ToolRun {
                failure,
                details: body.to_value(),
            })
        }
    }
}

/// `200` with the decision.
fn allowed(body: &DecisionBody<'_>) -> Response {
    let mut response = (StatusCode::OK, Json(body)).into_response();
    set_headers(&mut response, &[("x-request-id", body.request_id)]);
    response
}

fn set_headers(response: &mut Response, headers: &[(&'static str, &str)]) {
    let h = response.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
}

/// The answer to a held call: `202` while it waits, `200` when its
/// approval was used, `403` when the approval cannot be, `429` when no
/// approval can be recorded for now.
fn respond_held(step: Step, mut body: DecisionBody<'_>, tool: &str) -> Response {
    match step {
        Step::Held(view) => {
            let message = match view.phase {
                ApprovalPhase::Approved => format!(
                    "tool {tool:?} was approved by {}; repeat the call with \"approval\": {:?} to run it once",
                    view.decided_by.as_deref().unwrap_or("a human"),
                    view.name
                ),
                _ => format!(
                    "tool {tool:?} needs a human's approval; poll GET /v1/approvals/{} (until {}), then repeat the call with \"approval\": {:?}",
                    view.name, view.expires_at, view.name
                ),
            };
            // `reasonCode` stays the policy's (why approval is needed);
            // `reasonCodes` adds where the approval stands.
            let pending = ReasonCode::ApprovalPending.as_str();
            body.reason_codes = Some([body.reason_code, pending]);
            body.message = Some(message);
            body.approval = Some(view.to_json());
            let mut response = (StatusCode::ACCEPTED, Json(&body)).into_response();
            let location = format!("/v1/approvals/{}", view.name);
            set_headers(
                &mut response,
                &[
                    ("location", &location),
                    ("retry-after", "5"),
                    ("x-request-id", body.request_id),
                    ("x-palisade-reason", pending),
                ],
            );
            response
        }
        Step::Allowed(view) => {
            body.approved(view.to_json());
            allowed(&body)
        }
        Step::Limited { pending, limit } => {
            let code = ReasonCode::LimitPendingApprovals;
            body.reason_code = code.as_str();
            let mut response = GatewayError::Refused {
                code,
                message: format!(
                    "tool {tool:?} needs a human's approval, but this agent already has {pending} approvals pending, as many as its policy allows ({limit}, spec.approvals.maxPendingPerAgent); none was recorded. Wait for a decision on those (or for them to expire) and try again"
                ),
                details: body.to_value(),
            }
            .into_response();
            set_headers(&mut response, &[("retry-after", "30")]);
            response
        }
        Step::Refused(code, view) => {
            let message = match (code, &view) {
                (ReasonCode::ApprovalNotFound, _) => "the named approval does not exist in your namespace; make the call without it to request one".to_owned(),
                (ReasonCode::ApprovalMismatch, _) => "the approval was made for a different agent, tool or arguments; it can only be used for exactly the call that was approved".to_owned(),
                (ReasonCode::ApprovalDenied, Some(v)) => format!(
                    "tool {tool:?} was denied by {}{}",
                    v.decided_by.as_deref().unwrap_or("a human"),
                    v.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                ),
                (ReasonCode::ApprovalExpired, Some(v)) => format!("the approval expired at {}; make the call again to request a new one", v.expires_at),
                (ReasonCode::ApprovalReplayRefused, Some(v)) => format!(
                    "the approval was already used (by {}); an approval allows one call",
                    v.consumed_by.as_deref().unwrap_or("another call")
                ),
                _ => format!("the approval cannot be used ({code})"),
            };
            body.reason_code = code.as_str();
            body.approval = view.as_ref().map(|v| v.to_json());
            GatewayError::Refused {
                code,
                message,
                details: body.to_value(),
            }
            .into_response()
        }
    }
}
