//! `GET /v1/audit/events`: the audit query over HTTP, with the CLI's
//! filters, for the holder of the auditor token (GatewaySettings
//! `spec.audit.readTokenEnv`). Served only when that token is configured.

use crate::credentials::bearer;
use crate::error::GatewayError;
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use palisade_audit::{ChainedEvent, Filter};
use serde::Serialize;

/// The answer: the matching rows, oldest first.
#[derive(Debug, Serialize)]
pub struct Events {
    pub events: Vec<ChainedEvent>,
}

/// The filter the query parameters ask for (the CLI's filters, in
/// camelCase; times RFC 3339), or `400 invalid_parameter` saying what is
/// wrong.
fn filter_of(params: Vec<(String, String)>) -> Result<Filter, GatewayError> {
    let mut filter = Filter {
        limit: Some(1000),
        ..Filter::default()
    };
    for (name, value) in params {
        let time = |v: &str| {
            v.parse::<jiff::Timestamp>().map_err(|e| {
                GatewayError::AuditQueryParameter(format!(
                    "{name}: {v:?} is not an RFC 3339 time ({e}); write e.g. 2026-11-22T10:00:00Z"
                ))
            })
        };
        match name.as_str() {
            "since" => filter.since = Some(time(&value)?),
            "until" => filter.until = Some(time(&value)?),
            "limit" => {
                let n: i64 = value.parse().map_err(|_| {
                    GatewayError::AuditQueryParameter(format!(
                        "limit: {value:?} is not a whole number"
                    ))
                })?;
                filter.limit = Some(n.clamp(1, 10_000));
            }
            "requestId" => filter.request_id = Some(value),
            "namespace" => filter.namespace = Some(value),
            "agent" => filter.agent = Some(value),
            "decision" => filter.decision = Some(value),
            "reason" => filter.reason = Some(value),
            "tool" => filter.tool = Some(value),
            _ => {
                return Err(GatewayError::AuditQueryParameter(format!(
                    "unknown parameter {name:?}: use requestId, namespace, agent, decision, reason, tool, since, until, limit"
                )));
            }
        }
    }
    Ok(filter)
}

/// `GET /v1/audit/events?...`.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Events>, GatewayError> {
    let reader = state
        .audit_reader
        .as_ref()
        .filter(|r| bearer(&headers).and_then(|t| r.token.holder(t)).is_some())
        .ok_or(GatewayError::AuditReadUnauthorized)?;
    let Query(params) = query.map_err(|e| GatewayError::AuditQueryParameter(e.body_text()))?;
    let filter = filter_of(params)?;
    match reader.store.query(&filter).await {
        Ok(events) => Ok(Json(Events { events })),
        Err(e) => {
            tracing::error!(error = %e, "audit query failed");
            Err(GatewayError::AuditQueryUnavailable)
        }
    }
}
