//! The HTTP surface: `/healthz`, `/readyz`, `/metrics` and the tool-call
//! decision API `POST /v1/tool-calls`. Every decision is audited before it
//! is answered; if it cannot be audited the request is refused (fail
//! closed).

use crate::error::ApiError;
use crate::identity::authenticate;
use crate::metrics::GatewayMetrics;
use crate::snapshot::{Current, Snapshot};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use palisade_audit::{AuditEvent, AuditWriter, EventKind};
use palisade_policy::{
    ArgumentCapture, Decision, Outcome, ToolCall, argument_digest, redact_arguments,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// What every handler shares; cloning it (axum does, per request and
/// layer) copies one pointer.
#[derive(Clone, Debug)]
pub struct AppState(Arc<StateParts>);

impl From<StateParts> for AppState {
    fn from(parts: StateParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = StateParts;
    fn deref(&self) -> &StateParts {
        &self.0
    }
}

/// The parts of an [`AppState`].
#[derive(Debug)]
pub struct StateParts {
    pub config: Current,
    pub audit: AuditWriter,
    pub metrics: Arc<GatewayMetrics>,
    /// One pooled client for every provider (per-request timeouts).
    pub http: crate::upstream::HttpClient,
    /// ServiceAccount-token identity, when running in a cluster.
    pub tokens: Option<crate::kubernetes::TokenReviewer>,
    /// Where held calls are recorded.
    pub approvals: crate::approvals::Approvals,
    /// Standalone only: the people who may decide approvals over HTTP.
    /// Empty in a cluster, where decisions go through Kubernetes RBAC.
    pub operators: Arc<crate::approvals_api::Operators>,
    /// How long a client may take to send its request body.
    pub body_timeout: std::time::Duration,
}

/// Default for [`AppState::body_timeout`].
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl AppState {
    /// A standalone gateway's state: approvals in the audit database
    /// `store`, decided by `operators` (name, token) over HTTP.
    pub fn standalone(
        config: Current,
        audit: AuditWriter,
        metrics: Arc<GatewayMetrics>,
        store: palisade_audit::Store,
        operators: Vec<(String, String)>,
    ) -> Self {
        Self::from(StateParts {
            config,
            audit,
            metrics,
            http: crate::upstream::HttpClient::new(),
            tokens: None,
            approvals: crate::approvals::Approvals::Local {
                store: palisade_audit::approvals::ApprovalStore::new(store),
                instance: format!("gateway-{}", std::process::id()).into(),
            },
            operators: Arc::new(crate::approvals_api::Operators::new(operators)),
            body_timeout: BODY_TIMEOUT,
        })
    }
}

/// Who is calling: an agent API key, or (in a cluster) a ServiceAccount
/// token vouched for by a TokenReview.
pub async fn identify(
    state: &AppState,
    snapshot: &Snapshot,
    headers: &HeaderMap,
) -> Result<crate::identity::Identity, ApiError> {
    match authenticate(snapshot, headers) {
        Ok(who) => Ok(who),
        Err(unknown) => {
            let (Some(reviewer), Some(token)) = (
                &state.tokens,
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim),
            ) else {
                return Err(unknown);
            };
            reviewer.identify(snapshot, token).await.ok_or(unknown)
        }
    }
}

/// Refuses bodies that are not declared as JSON.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "send the body as application/json",
        ))
    }
}

/// The gateway plus the audit query endpoint, readable with `read_token`.
pub fn app_with_audit_query(
    state: AppState,
    store: palisade_audit::Store,
    read_token: String,
) -> Router {
    use sha2::{Digest, Sha256};
    let want: [u8; 32] = Sha256::digest(read_token.as_bytes()).into();
    let authorize: palisade_audit::http::Authorize = Arc::new(move |token: &str| {
        let got: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        got.iter()
            .zip(want.iter())
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0
    });
    app(state).merge(palisade_audit::http::router(store, authorize))
}

/// The gateway as an axum router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/tool-calls", post(tool_calls))
        .route("/v1/chat/completions", post(crate::chat::chat_completions))
        .route("/v1/approvals", get(crate::approvals_api::list))
        .route("/v1/approvals/{name}", get(crate::approvals_api::get))
        .route(
            "/v1/approvals/{name}/{verb}",
            post(crate::approvals_api::decide),
        )
        .route("/openapi.json", get(crate::openapi::serve_document))
        .route("/docs", get(crate::openapi::serve_docs))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            read_body_in_time,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Request latency by matched route (never the raw path).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Reads the whole body (at most [`BODY_LIMIT`]) within the body timeout:
/// a client that trickles its body cannot hold a connection and a task
/// forever (the header timeout covers the headers). `408` when too slow,
/// `413` when too large.
async fn read_body_in_time(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!(
                "the request body is larger than {} bytes (or was cut off)",
                BODY_LIMIT
            ),
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            format!(
                "the request body did not arrive within {:?}",
                state.body_timeout
            ),
        )
        .into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.config.load_full() {
        Some(s) => Json(
            json!({"ready": true, "revision": s.revision(), "loadedAt": s.loaded_at.to_string()}),
        )
        .into_response(),
        None => ApiError::not_ready().into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// `POST /v1/tool-calls` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ToolCallRequest {
    /// The tool the agent wants to run.
    tool: String,
    /// Its arguments (a JSON object).
    #[serde(default = "empty_object")]
    arguments: Value,
    /// The caller's request id, for correlating audit rows.
    request_id: Option<String>,
    /// The approved Approval this call uses (after a `202`).
    approval: Option<String>,
}

fn empty_object() -> Value {
    json!({})
}

/// The caller's request id (body, then `x-request-id`), or a new one.
pub fn request_id(headers: &HeaderMap, body: Option<&str>) -> String {
    body.map(String::from)
        .or_else(|| {
            headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        })
        .filter(|r| !r.is_empty() && r.len() <= 128)
        .unwrap_or_else(|| format!("req-{}", uuid::Uuid::now_v7().simple()))
}

fn ready(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    state.config.load_full().ok_or_else(ApiError::not_ready)
}

fn decision_json(d: &Decision, request_id: &str) -> Value {
    json!({
        "decision": d.outcome.as_str(),
        "effectiveDecision": d.effective_outcome().as_str(),
        "enforced": d.enforced,
        "reasonCode": d.reason_code.as_str(),
        "rule": d.rule,
        "policy": d.policy,
        "requestId": request_id,
    })
}

async fn tool_calls(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    decide_tool_call(&state, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn decide_tool_call(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let snapshot = ready(state)?;
    let who = identify(state, &snapshot, headers).await?;
    require_json(headers)?;
    crate::limits::check_json_depth(body)?;
    let req: ToolCallRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid tool-call request: {e}; expected {{\"tool\": \"name\", \"arguments\": {{...}}}}")))?;
    if !req.arguments.is_object() {
        return Err(ApiError::bad_request("arguments must be a JSON object"));
    }
    let request_id = request_id(headers, req.request_id.as_deref());
    let decision = snapshot.bundle.evaluate_tool(
        &ToolCall {
            namespace: &who.namespace,
            agent: &who.agent,
            tool: &req.tool,
            arguments: &req.arguments,
        },
        jiff::Timestamp::now(),
    );
    let digest = argument_digest(&req.arguments);
    let policy = snapshot
        .bundle
        .policy_for(&who.namespace, &who.agent)
        .map(|(p, _)| p);
    let shown = policy.map(|p| match p.audit.arguments {
        ArgumentCapture::Digest => None,
        ArgumentCapture::Redacted => Some(redact_arguments(&req.arguments, &p.audit.redact_keys)),
        ArgumentCapture::Full => Some(req.arguments.clone()),
    });

    // A held call: hold it (202), or use the approval it names.
    let step = match (decision.effective_outcome(), policy) {
        (Outcome::RequireApproval, Some(policy)) => Some(
            crate::approvals_api::step(
                state,
                policy,
                &who,
                &decision,
                crate::approvals_api::Call {
                    tool: &req.tool,
                    arguments: &req.arguments,
                    digest: &digest,
                    request_id: &request_id,
                    approval: req.approval.as_deref(),
                },
            )
            .await?,
        ),
        _ => None,
    };

    let mut event = AuditEvent::from_decision(
        EventKind::ToolCall,
        &request_id,
        &who.namespace,
        &who.agent,
        &decision,
    );
    event.tool = Some(req.tool.clone());
    event.argument_digest = Some(digest.clone());
    event.arguments = shown.flatten();
    if let Some(step) = &step {
        step.annotate(&mut event);
    }
    if let Err(e) = state.audit.record(event) {
        tracing::error!(error = %e, request_id, "decision not audited; refusing the request");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit.unavailable",
            "the decision could not be audited, so it is not given; try again",
        )
        .with_palisade(json!({"requestId": request_id})));
    }
    // The tool label names tools a rule or grant matched; anything else is
    // "other", so callers cannot grow the series with made-up names.
    let tool_label = match decision.rule.as_deref() {
        Some(r)
            if r != "spec.tools.default"
                && !r.starts_with("spec.agents")
                && r != "spec.suspend" =>
        {
            req.tool.as_str()
        }
        _ => "other",
    };
    state
        .metrics
        .decisions
        .with_label_values(&[
            "tool_call",
            decision.outcome.as_str(),
            decision.reason_code.as_str(),
            tool_label,
        ])
        .inc();
    if decision.reason_code.is_kill_switch() {
        let scope = if decision.reason_code == palisade_policy::ReasonCode::KillSwitchPolicy {
            "policy"
        } else {
            "agent"
        };
        state
            .metrics
            .kill_switch_hits
            .with_label_values(&[who.namespace.as_str(), scope])
            .inc();
    }

    let body = decision_json(&decision, &request_id);
    if let Some(step) = step {
        return Ok(step.respond(body, &req.tool, &request_id));
    }
    Ok(match decision.effective_outcome() {
        Outcome::Allow => (StatusCode::OK, [("x-request-id", request_id.clone())], Json(body)).into_response(),
        Outcome::Deny => ApiError::new(
            StatusCode::FORBIDDEN,
            decision.reason_code.as_str(),
            format!(
                "tool {:?} is denied for agent {:?} ({}{})",
                req.tool,
                who.agent,
                decision.reason_code,
                decision.rule.as_deref().map(|r| format!(", rule {r}")).unwrap_or_default()
            ),
        )
        .with_palisade(body)
        .into_response(),
        Outcome::RequireApproval => ApiError::new(
            StatusCode::FORBIDDEN,
            decision.reason_code.as_str(),
            format!("tool {:?} needs a human's approval, but no policy names agent {:?}; the call is refused", req.tool, who.agent),
        )
        .with_palisade(body)
        .into_response(),
    })
}
