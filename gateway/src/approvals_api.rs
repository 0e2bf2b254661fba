//! The approvals HTTP surface and the held-call step of `/v1/tool-calls`.
//!
//! - A call whose decision is `RequireApproval` is held: `202` with the
//!   approval's name, where to poll and the expiry. Repeating the call with
//!   `"approval": NAME` uses the approval once (same agent, tool and
//!   argument digest, before expiry).
//! - `GET /v1/approvals/{name}?wait=30s`: the agent (its own approvals) or
//!   an operator polls; long-polls while `Pending`.
//! - Standalone only, with an operator token (never an agent key):
//!   `GET /v1/approvals`, `POST /v1/approvals/{name}/approve|deny`. In a
//!   cluster these answer 404: decisions go through Kubernetes RBAC
//!   (`kubectl patch approval ...`).

use crate::approvals::{Approvals, Consumed, Hold, View};
use crate::error::ApiError;
use crate::identity::Identity;
use crate::server::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_audit::AuditEvent;
use palisade_audit::approvals::DecideRefused;
use palisade_crds::ApprovalPhase;
use palisade_policy::{Decision, Policy, ReasonCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// People who may decide approvals over HTTP (standalone), known by the
/// SHA-256 of their token.
#[derive(Debug, Default)]
pub struct Operators {
    tokens: Vec<(String, [u8; 32])>,
}

impl Operators {
    pub fn new(named_tokens: Vec<(String, String)>) -> Self {
        Self {
            tokens: named_tokens
                .into_iter()
                .map(|(name, token)| (name, Sha256::digest(token.as_bytes()).into()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The operator whose token the request carries (compared against
    /// every token in constant time).
    fn identify(&self, headers: &HeaderMap) -> Option<String> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, want) in &self.tokens {
            let same = want
                .iter()
                .zip(digest.iter())
                .fold(0u8, |d, (a, b)| d | (a ^ b))
                == 0;
            if same && found.is_none() {
                found = Some(name.clone());
            }
        }
        found
    }
}

/// The call being decided.
#[derive(Debug)]
pub struct Call<'a> {
    pub tool: &'a str,
    pub arguments: &'a Value,
    pub digest: &'a str,
    pub request_id: &'a str,
    /// The approval the caller names, if any.
    pub approval: Option<&'a str>,
}

/// What happened to a held call.
#[derive(Debug)]
pub enum Step {
    /// Recorded (or found) and waiting: `202`.
    Held(View),
    /// An approved approval was used by this call: `200`, once.
    Allowed(View),
    /// The named approval cannot be used: `403`.
    Refused(ReasonCode, Option<View>),
}

fn unavailable(e: crate::approvals::ApprovalError) -> ApiError {
    tracing::error!(error = %e, "approvals store unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "approvals.unavailable",
        "the approvals store cannot be reached, so the held call cannot be recorded or checked; try again",
    )
}

/// Audits an approval outcome and counts it. Returns whether it was
/// accepted by the audit writer.
pub fn record_outcome(
    state: &AppState,
    view: &View,
    decision: &str,
    code: ReasonCode,
    actor: Option<&str>,
) -> bool {
    let f = view.facts(actor);
    count(state, code);
    state
        .audit
        .record(AuditEvent::approval_outcome(&f, decision, code.as_str()))
        .is_ok()
}

/// Holds the call, or uses the approval it names.
pub async fn step(
    state: &AppState,
    policy: &Policy,
    who: &Identity,
    decision: &Decision,
    call: Call<'_>,
) -> Result<Step, ApiError> {
    let Some(name) = call.approval else {
        let hold = Hold::new(
            policy,
            &who.agent,
            decision.rule.clone(),
            call.tool,
            call.arguments,
            call.digest.to_owned(),
            call.request_id,
        );
        let view = state
            .approvals
            .hold(&hold, jiff::Timestamp::now())
            .await
            .map_err(unavailable)?;
        state
            .metrics
            .approvals
            .with_label_values(&["requested"])
            .inc();
        return Ok(Step::Held(view));
    };
    let Some(view) = state
        .approvals
        .get(&who.namespace, name)
        .await
        .map_err(unavailable)?
    else {
        state
            .metrics
            .approvals
            .with_label_values(&["not_found"])
            .inc();
        return Ok(Step::Refused(ReasonCode::ApprovalNotFound, None));
    };
    match view.check_use(&who.agent, call.tool, call.digest) {
        Ok(()) => {}
        Err(ReasonCode::ApprovalPending) => return Ok(Step::Held(view)),
        Err(code) => {
            refused(state, &view, code);
            return Ok(Step::Refused(code, Some(view)));
        }
    }
    match state.approvals.consume(&view).await.map_err(unavailable)? {
        Consumed::Won(used) => {
            let by = used.consumed_by.clone();
            if !record_outcome(
                state,
                &used,
                "Consumed",
                ReasonCode::ApprovalConsumed,
                by.as_deref(),
            ) {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit.unavailable",
                    "the approval's use could not be audited, so the call is refused",
                ));
            }
            Ok(Step::Allowed(used))
        }
        Consumed::Lost(now) => {
            let code = now
                .check_use(&who.agent, call.tool, call.digest)
                .err()
                .unwrap_or(ReasonCode::ApprovalReplayRefused);
            refused(state, &now, code);
            Ok(Step::Refused(code, Some(now)))
        }
    }
}

/// Counts an approval outcome under its code's name (`approval.denied` →
/// `denied`).
fn count(state: &AppState, code: ReasonCode) {
    let outcome = code.as_str().trim_start_matches("approval.");
    state.metrics.approvals.with_label_values(&[outcome]).inc();
}

fn refused(state: &AppState, view: &View, code: ReasonCode) {
    if code == ReasonCode::ApprovalReplayRefused {
        record_outcome(state, view, "Deny", code, None);
    } else {
        count(state, code);
    }
}

impl Step {
    /// Adds the approval to the tool-call audit row.
    pub fn annotate(&self, event: &mut AuditEvent) {
        let (code, decision, view) = match self {
            Self::Held(v) => (ReasonCode::ApprovalPending, None, Some(v)),
            Self::Allowed(v) => (ReasonCode::ToolAllowedByApproval, Some("Allow"), Some(v)),
            Self::Refused(code, v) => (*code, Some("Deny"), v.as_ref()),
        };
        if let Some(d) = decision {
            event.decision = d.to_owned();
        }
        event.reason_codes.insert(0, code.as_str().to_owned());
        if let Some(v) = view {
            event.approval = Some(v.name.clone());
            event.decided_by = v.decided_by.clone();
        }
    }

    /// The HTTP answer.
    pub fn respond(self, mut body: Value, tool: &str, request_id: &str) -> Response {
        match self {
            Self::Held(view) => {
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
                body["reasonCodes"] =
                    json!([body["reasonCode"], ReasonCode::ApprovalPending.as_str()]);
                body["message"] = json!(message);
                body["approval"] = view.to_json();
                let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
                let h = response.headers_mut();
                for (k, v) in [
                    ("location", format!("/v1/approvals/{}", view.name)),
                    ("retry-after", "5".to_owned()),
                    ("x-request-id", request_id.to_owned()),
                    (
                        "x-palisade-reason",
                        ReasonCode::ApprovalPending.as_str().to_owned(),
                    ),
                ] {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        h.insert(k, v);
                    }
                }
                response
            }
            Self::Allowed(view) => {
                body["decision"] = json!("Allow");
                body["effectiveDecision"] = json!("Allow");
                body["reasonCode"] = json!(ReasonCode::ToolAllowedByApproval.as_str());
                body["approval"] = view.to_json();
                (
                    StatusCode::OK,
                    [("x-request-id", request_id.to_owned())],
                    Json(body),
                )
                    .into_response()
            }
            Self::Refused(code, view) => {
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
                body["reasonCode"] = json!(code.as_str());
                if let Some(v) = &view {
                    body["approval"] = v.to_json();
                }
                ApiError::new(StatusCode::FORBIDDEN, code.as_str(), message)
                    .with_palisade(body)
                    .into_response()
            }
        }
    }
}

/// Who is asking about approvals.
enum Caller {
    Operator,
    Agent(Identity),
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if state.operators.identify(headers).is_some() {
        return Ok(Caller::Operator);
    }
    let snapshot = state.config.load_full().ok_or_else(ApiError::not_ready)?;
    Ok(Caller::Agent(
        crate::server::identify(state, &snapshot, headers).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct GetParams {
    /// Long-poll: wait up to this long (`30s`, at most 60s) while pending.
    wait: Option<String>,
    /// Operators: the approval's namespace (default: found by name).
    namespace: Option<String>,
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ReasonCode::ApprovalNotFound.as_str(),
        format!("no approval {name:?} that you can see"),
    )
}

/// The namespace an operator means: as given, or the one approval of that
/// name.
async fn operator_namespace(
    approvals: &Approvals,
    name: &str,
    given: Option<String>,
) -> Result<String, ApiError> {
    if let Some(ns) = given {
        return Ok(ns);
    }
    let Approvals::Local { store, .. } = approvals else {
        return Err(not_found(name));
    };
    let found = store.find(name).await.map_err(|e| unavailable(e.into()))?;
    match found.as_slice() {
        [one] => Ok(one.namespace.clone()),
        [] => Err(not_found(name)),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request",
            format!("approvals named {name:?} exist in several namespaces; add ?namespace=..."),
        )),
    }
}

/// `GET /v1/approvals/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<GetParams>,
    headers: HeaderMap,
) -> Response {
    get_inner(&state, &name, params, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn get_inner(
    state: &AppState,
    name: &str,
    params: GetParams,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let wait = match params.wait.as_deref() {
        None => Duration::ZERO,
        Some(w) => palisade_crds::duration::parse_duration(w).map_err(|e| {
            ApiError::bad_request(format!("wait: {e}; use e.g. wait=30s (at most 60s)"))
        })?,
    };
    let (namespace, agent) = match caller(state, headers).await? {
        Caller::Operator => (
            operator_namespace(&state.approvals, name, params.namespace).await?,
            None,
        ),
        Caller::Agent(who) => (who.namespace, Some(who.agent)),
    };
    let view = state
        .approvals
        .wait(&namespace, name, wait)
        .await
        .map_err(unavailable)?
        .filter(|v| agent.as_ref().is_none_or(|a| *a == v.agent))
        .ok_or_else(|| not_found(name))?;
    Ok(Json(view.to_json()).into_response())
}

fn decisions_off() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "approvals.decisions_off",
        "deciding approvals over HTTP is off on this gateway: in a cluster, decide with `kubectl patch approval NAME -n NAMESPACE --type=merge -p '{\"spec\":{\"decision\":\"Approved\",\"reason\":\"...\"}}'`; standalone, configure GatewaySettings spec.approvals.operators",
    )
}

fn operators_only() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "approvals.operator_only",
        "listing and deciding approvals needs an operator token (GatewaySettings spec.approvals.operators); agent keys cannot decide",
    )
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    namespace: Option<String>,
    /// Only approvals waiting for a decision.
    #[serde(default)]
    pending: bool,
}

/// `GET /v1/approvals` (standalone operators).
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Response {
    let result: Result<Response, ApiError> = async {
        let Approvals::Local { store, .. } = &state.approvals else {
            return Err(decisions_off());
        };
        if state.operators.identify(&headers).is_none() {
            return Err(if headers.contains_key(header::AUTHORIZATION) {
                operators_only()
            } else {
                ApiError::unauthorized()
            });
        }
        let now = jiff::Timestamp::now();
        let rows = store
            .list(params.namespace.as_deref(), params.pending, now, 500)
            .await
            .map_err(|e| unavailable(e.into()))?;
        let items: Vec<Value> = rows
            .into_iter()
            .map(|r| crate::approvals::view_of_row(r, now).to_json())
            .collect();
        Ok(Json(json!({"items": items})).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    reason: Option<String>,
    namespace: Option<String>,
}

/// `POST /v1/approvals/{name}/approve|deny` (standalone operators).
pub async fn decide(
    State(state): State<AppState>,
    Path((name, verb)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    decide_inner(&state, &name, &verb, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn decide_inner(
    state: &AppState,
    name: &str,
    verb: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let decision = match verb {
        "approve" => "Approved",
        "deny" => "Denied",
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request",
                format!("unknown action {verb:?}: use /approve or /deny"),
            ));
        }
    };
    let Approvals::Local { store, .. } = &state.approvals else {
        return Err(decisions_off());
    };
    let Some(operator) = state.operators.identify(headers) else {
        return Err(if headers.contains_key(header::AUTHORIZATION) {
            operators_only()
        } else {
            ApiError::unauthorized()
        });
    };
    let req: DecideBody = if body.is_empty() {
        DecideBody::default()
    } else {
        crate::server::require_json(headers)?;
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "invalid body: {e}; expected {{\"reason\": \"...\"}}"
            ))
        })?
    };
    if req.reason.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(ApiError::bad_request("reason: at most 1024 characters"));
    }
    let namespace = operator_namespace(&state.approvals, name, req.namespace).await?;
    let decided_by = format!("operator:{operator}");
    let outcome = decide_local(
        state,
        store,
        &namespace,
        name,
        decision,
        req.reason.as_deref(),
        &decided_by,
    )
    .await?;
    Ok(Json(outcome.to_json()).into_response())
}

/// Records a standalone decision over HTTP, audits and counts it.
async fn decide_local(
    state: &AppState,
    store: &palisade_audit::approvals::ApprovalStore,
    namespace: &str,
    name: &str,
    decision: &str,
    reason: Option<&str>,
    decided_by: &str,
) -> Result<View, ApiError> {
    match crate::approvals::decide_and_audit(
        store,
        &state.audit,
        namespace,
        name,
        decision,
        reason,
        decided_by,
    )
    .await
    .map_err(unavailable)?
    {
        Ok(view) => {
            let outcome = if decision == "Approved" {
                "approved"
            } else {
                "denied"
            };
            state.metrics.approvals.with_label_values(&[outcome]).inc();
            Ok(view)
        }
        Err(DecideRefused::NotFound) => Err(not_found(name)),
        Err(DecideRefused::AlreadyDecided(d)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "approval.already_decided",
            format!("approval {name:?} was already decided ({d}); a decision is final"),
        )),
        Err(DecideRefused::Expired) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ReasonCode::ApprovalExpired.as_str(),
            format!("approval {name:?} expired before it was decided"),
        )),
    }
}

/// Standalone: audits each approval that expired undecided, once.
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
                    let view = crate::approvals::view_of_row(row, now);
                    record_outcome(&state, &view, "Expired", ReasonCode::ApprovalExpired, None);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not check for expired approvals"),
        }
    }
}
