//! `GET /v1/audit/events`: the audit query over HTTP, with the same
//! filters as the CLI, for the gateway to serve. Callers must present a
//! bearer token the `authorize` function accepts; the gateway decides
//! which.

use crate::store::{Filter, Store};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Decides whether a bearer token may read the audit.
pub type Authorize = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone)]
struct AppState {
    store: Store,
    authorize: Authorize,
}

/// Query parameters; times are RFC 3339.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    pub request_id: Option<String>,
    pub namespace: Option<String>,
    pub agent: Option<String>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub tool: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<i64>,
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error", "code": code}})),
    )
        .into_response()
}

/// An RFC 3339 time parameter, or the message saying how to write one.
fn parse_time(field: &str, value: Option<&String>) -> Result<Option<jiff::Timestamp>, String> {
    value
        .map(|v| {
            v.parse::<jiff::Timestamp>().map_err(|e| {
                format!(
                    "{field}: {v:?} is not an RFC 3339 time ({e}); write e.g. 2026-11-22T10:00:00Z"
                )
            })
        })
        .transpose()
}

async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| (state.authorize)(t)) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "reading the audit needs a valid bearer token".into(),
        );
    }
    let Query(p) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_parameter", e.body_text()),
    };
    let (since, until) = match (
        parse_time("since", p.since.as_ref()),
        parse_time("until", p.until.as_ref()),
    ) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(m), _) | (_, Err(m)) => return error(StatusCode::BAD_REQUEST, "invalid_parameter", m),
    };
    let filter = Filter {
        request_id: p.request_id,
        namespace: p.namespace,
        agent: p.agent,
        decision: p.decision,
        reason: p.reason,
        tool: p.tool,
        since,
        until,
        after: None,
        limit: Some(p.limit.unwrap_or(1000).clamp(1, 10_000)),
    };
    match state.store.query(&filter).await {
        Ok(rows) => Json(json!({"events": rows})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "audit query failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit database is unavailable".into(),
            )
        }
    }
}

/// The router to mount in the gateway.
pub fn router(store: Store, authorize: Authorize) -> Router {
    Router::new()
        .route("/v1/audit/events", get(events))
        .with_state(AppState { store, authorize })
}
