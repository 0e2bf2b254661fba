//! `GET /v1/audit/events` (the audit query over HTTP, with the CLI's
//! filters), `GET /v1/audit/usage` (tokens and requests per agent,
//! provider and model) and `GET /v1/security/alerts` (the security
//! alerts' rows), for the holder of the auditor token
//! (GatewaySettings `spec.audit.readTokenEnv`). Served only when that
//! token is configured.

use crate::credentials::bearer;
use crate::error::GatewayError;
use crate::state::{AppState, AuditReader};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use palisade_audit::{ChainedEvent, Filter, Usage, UsageFilter};
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
        match name.as_str() {
            "since" => filter.since = Some(time(&name, &value)?),
            "until" => filter.until = Some(time(&name, &value)?),
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

/// The audit database, for the holder of the auditor token only.
fn reader<'s>(state: &'s AppState, headers: &HeaderMap) -> Result<&'s AuditReader, GatewayError> {
    state
        .audit_reader
        .as_ref()
        .filter(|r| bearer(headers).and_then(|t| r.token.holder(t)).is_some())
        .ok_or(GatewayError::AuditReadUnauthorized)
}

/// A database error, logged; `503 audit_unavailable` to the caller.
fn unavailable(e: palisade_audit::AuditError) -> GatewayError {
    tracing::error!(error = %e, "audit query failed");
    GatewayError::AuditQueryUnavailable
}

/// `GET /v1/audit/events?...`.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Events>, GatewayError> {
    let reader = reader(&state, &headers)?;
    let Query(params) = query.map_err(|e| GatewayError::AuditQueryParameter(e.body_text()))?;
    let filter = filter_of(params)?;
    state.audit.caught_up().await;
    let events = reader.store.query(&filter).await.map_err(unavailable)?;
    Ok(Json(Events { events }))
}

/// One security alert, as `GET /v1/security/alerts` lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    pub time: jiff::Timestamp,
    pub namespace: String,
    pub agent: String,
    /// `path_traversal`, `sql_injection`, `denial_burst`,
    /// `repeated_held_call`, `new_tool`, `token_jump`.
    pub kind: String,
    pub policy: Option<String>,
    pub tool: Option<String>,
    pub argument_digest: Option<String>,
    pub detail: Option<String>,
    /// The request that raised it (its own decision row has this id).
    pub request_id: String,
}

impl AlertView {
    /// The alert a `security_alert` audit row records.
    pub fn of(e: palisade_audit::AuditEvent) -> Self {
        let kind = e
            .reason_codes
            .first()
            .map(|r| r.trim_start_matches("alert.").to_owned())
            .unwrap_or_default();
        Self {
            time: e.time,
            namespace: e.namespace,
            agent: e.agent,
            kind,
            policy: e.policy,
            tool: e.tool,
            argument_digest: e.argument_digest,
            detail: e.detail,
            request_id: e.request_id,
        }
    }
}

/// The answer of `GET /v1/security/alerts`.
#[derive(Debug, Serialize)]
pub struct Alerts {
    pub alerts: Vec<AlertView>,
}

/// `GET /v1/security/alerts?namespace=&agent=&kind=&since=&until=&limit=`
/// (`since` defaults to 24 hours ago): the security alerts in the audit,
/// newest last, for the holder of the auditor token.
pub async fn alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Alerts>, GatewayError> {
    let reader = reader(&state, &headers)?;
    let Query(params) = query.map_err(|e| GatewayError::AuditQueryParameter(e.body_text()))?;
    let mut translated = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "kind" => translated.push(("reason".to_owned(), format!("alert.{value}"))),
            "namespace" | "agent" | "since" | "until" | "limit" => translated.push((name, value)),
            _ => {
                return Err(GatewayError::AuditQueryParameter(format!(
                    "unknown parameter {name:?}: use namespace, agent, kind, since, until, limit"
                )));
            }
        }
    }
    let mut filter = filter_of(translated)?;
    filter.decision = Some(palisade_audit::AuditDecision::Alert.as_str().to_owned());
    if filter.since.is_none() {
        filter.since = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_hours(24))
            .ok();
    }
    state.audit.caught_up().await;
    let rows = reader.store.query(&filter).await.map_err(unavailable)?;
    let alerts = rows.into_iter().map(|c| AlertView::of(c.event)).collect();
    Ok(Json(Alerts { alerts }))
}

/// The answer of `GET /v1/audit/usage`: totals per namespace, agent,
/// provider and model.
#[derive(Debug, Serialize)]
pub struct UsageTotals {
    pub usage: Vec<Usage>,
}

/// `GET /v1/audit/usage?namespace=&agent=&since=&until=` (times RFC 3339;
/// `since` defaults to 24 hours ago): what `palisade-gateway audit usage`
/// prints.
pub async fn usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<UsageTotals>, GatewayError> {
    let reader = reader(&state, &headers)?;
    let Query(params) = query.map_err(|e| GatewayError::AuditQueryParameter(e.body_text()))?;
    let mut filter = UsageFilter {
        since: jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_hours(24))
            .ok(),
        ..UsageFilter::default()
    };
    for (name, value) in params {
        match name.as_str() {
            "since" => filter.since = Some(time(&name, &value)?),
            "until" => filter.until = Some(time(&name, &value)?),
            "namespace" => filter.namespace = Some(value),
            "agent" => filter.agent = Some(value),
            _ => {
                return Err(GatewayError::AuditQueryParameter(format!(
                    "unknown parameter {name:?}: use namespace, agent, since, until"
                )));
            }
        }
    }
    state.audit.caught_up().await;
    let usage = reader.store.usage(&filter).await.map_err(unavailable)?;
    Ok(Json(UsageTotals { usage }))
}

/// A time parameter, or `400 invalid_parameter` naming it.
fn time(name: &str, value: &str) -> Result<jiff::Timestamp, GatewayError> {
    value.parse::<jiff::Timestamp>().map_err(|e| {
        GatewayError::AuditQueryParameter(format!(
            "{name}: {value:?} is not an RFC 3339 time ({e}); write e.g. 2026-11-22T10:00:00Z"
        ))
    })
}
