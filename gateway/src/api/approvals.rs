//! The approvals HTTP surface (the held-call step of `/v1/tool-calls` is
//! in [`crate::decisions::held`]):
//!
//! - `GET /v1/approvals/{name}?wait=30s`: the agent (its own approvals) or
//!   an operator polls; long-polls while `Pending`.
//! - Standalone only, with an operator token (never an agent key):
//!   `GET /v1/approvals`, `POST /v1/approvals/{name}/approve|deny`. In a
//!   cluster these answer 404: decisions go through Kubernetes RBAC
//!   (`kubectl patch approval ...`).

use crate::api::json_body;
use crate::approvals::{ApprovalError, Approvals, View};
use crate::auth::{Agent, Caller};
use crate::decisions::held;
use crate::error::GatewayError;
use crate::limits::UnreadBody;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use palisade_audit::approvals::ApprovalStore;
use palisade_crds::ApprovalDecision;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub struct GetParams {
    /// Long-poll: wait up to this long (`30s`, at most 60s) while pending.
    wait: Option<String>,
    /// Operators: the approval's namespace (default: found by name).
    namespace: Option<String>,
}

/// The namespace an operator means: as given, or the one approval of that
/// name.
async fn operator_namespace(
    approvals: &Approvals,
    name: &str,
    given: Option<String>,
) -> Result<String, GatewayError> {
    if let Some(ns) = given {
        return Ok(ns);
    }
    let Approvals::Local { store, .. } = approvals else {
        return Err(GatewayError::ApprovalNotFound(name.to_owned()));
    };
    let found = store.find(name).await.map_err(ApprovalError::from)?;
    match found.as_slice() {
        [one] => Ok(one.namespace.clone()),
        [] => Err(GatewayError::ApprovalNotFound(name.to_owned())),
        _ => Err(GatewayError::AmbiguousApproval(name.to_owned())),
    }
}

/// `GET /v1/approvals/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<GetParams>,
    caller: Caller,
) -> Result<Json<Value>, GatewayError> {
    let wait = match params.wait.as_deref() {
        None => Duration::ZERO,
        Some(w) => palisade_crds::duration::parse_duration(w).map_err(|e| {
            GatewayError::BadRequest(format!("wait: {e}; use e.g. wait=30s (at most 60s)"))
        })?,
    };
    let (namespace, agent) = match caller {
        Caller::Operator(_) => (
            operator_namespace(&state.approvals, &name, params.namespace).await?,
            None,
        ),
        Caller::Agent(Agent { who, .. }) => (who.namespace, Some(who.agent)),
    };
    let view = state
        .approvals
        .wait(&namespace, &name, wait)
        .await?
        .filter(|v| agent.as_ref().is_none_or(|a| *a == v.call.agent))
        .ok_or(GatewayError::ApprovalNotFound(name))?;
    Ok(Json(view.to_json()))
}

/// The standalone approvals store and the operator calling, or why not:
/// `404` in a cluster, `403` for an agent key, `401` for no key at all.
fn operator_store<'s>(
    state: &'s AppState,
    headers: &HeaderMap,
) -> Result<(&'s ApprovalStore, String), GatewayError> {
    let Approvals::Local { store, .. } = &state.approvals else {
        return Err(GatewayError::DecisionsOff);
    };
    match state.auth.operator(headers) {
        Some(name) => Ok((store, name.to_owned())),
        None if headers.contains_key(header::AUTHORIZATION) => Err(GatewayError::OperatorOnly),
        None => Err(GatewayError::Unauthenticated),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    namespace: Option<String>,
    /// Only approvals waiting for a decision.
    #[serde(default)]
    pending: bool,
}

/// The list answer.
#[derive(Debug, Serialize)]
pub struct Items {
    pub items: Vec<Value>,
}

/// `GET /v1/approvals` (standalone operators).
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> Result<Json<Items>, GatewayError> {
    let (store, _) = operator_store(&state, &headers)?;
    let now = jiff::Timestamp::now();
    let rows = store
        .list(params.namespace.as_deref(), params.pending, now, 500)
        .await
        .map_err(ApprovalError::from)?;
    let items = rows
        .into_iter()
        .map(|r| View::of_row(r, now).to_json())
        .collect();
    Ok(Json(Items { items }))
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
    body: UnreadBody,
) -> Result<Json<Value>, GatewayError> {
    let decision = match verb.as_str() {
        "approve" => ApprovalDecision::Approved,
        "deny" => ApprovalDecision::Denied,
        _ => return Err(GatewayError::UnknownAction(verb)),
    };
    let (store, operator) = operator_store(&state, &headers)?;
    // Read only now that the operator is authenticated.
    let body = body.read().await?;
    let req: DecideBody = if body.is_empty() {
        DecideBody::default()
    } else {
        json_body(&headers, &body, |e| {
            format!("invalid body: {e}; expected {{\"reason\": \"...\"}}")
        })?
    };
    if req.reason.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(GatewayError::BadRequest(
            "reason: at most 1024 characters".into(),
        ));
    }
    let namespace = operator_namespace(&state.approvals, &name, req.namespace).await?;
    let decided_by = format!("operator:{operator}");
    let view = held::decide(
        &state,
        store,
        &namespace,
        &name,
        decision,
        req.reason.as_deref(),
        &decided_by,
    )
    .await?;
    Ok(Json(view.to_json()))
}
