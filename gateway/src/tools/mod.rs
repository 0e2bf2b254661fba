//! Tools Palisade runs itself (`spec.tools.run`): once a call is allowed
//! (decided exactly like any other), the gateway runs it — the built-in
//! `sql_query` ([`sql`]), `read_file` / `write_file` ([`files`]), or a
//! registered HTTP tool ([`http`]) — so a denied call cannot happen at all
//! and the agent never holds the tool's credentials.
//!
//! Every result is sanitized and capped (`spec.tools.results`,
//! [`palisade_policy::sanitize_json`]) before anyone sees it, and every run
//! is audited as a `tool_result` row (outcome, duration, bytes, the
//! result's digest) and counted in `palisade_tool_runs_total`.

pub(crate) mod files;
mod http;
mod results;
mod sql;

pub use results::{finish, sanitize_tool_messages};

use crate::decisions::ToolCallRequest;
use crate::error::GatewayError;
use crate::metrics::GatewayMetrics;
use crate::state::AppState;
use axum::http::StatusCode;
use base64::Engine;
use palisade_audit::{AuditDecision, AuditEvent, EventKind};
use palisade_policy::{
    Decision, ReasonCode, Redactions, ResultSettings, Runnable, cap, sanitize_bytes, sanitize_text,
    sha256_hex,
};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// Why a run produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The arguments do not fit the tool (`tool.input_invalid`).
    InputInvalid(String),
    /// A file path was refused (`tool.path_refused`).
    PathRefused(String),
    /// The database refused the query (`tool.query_refused`).
    QueryRefused(String),
    /// The tool ran and failed (`tool.execution_failed`).
    Failed(String),
    /// It ran past its timeout (`tool.timeout`).
    Timeout(String),
    /// Something was over its size cap (`tool.too_large`).
    TooLarge(String),
}

impl Failure {
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::InputInvalid(_) => ReasonCode::ToolInputInvalid,
            Self::PathRefused(_) => ReasonCode::ToolPathRefused,
            Self::QueryRefused(_) => ReasonCode::ToolQueryRefused,
            Self::Failed(_) => ReasonCode::ToolExecutionFailed,
            Self::Timeout(_) => ReasonCode::ToolTimeout,
            Self::TooLarge(_) => ReasonCode::ToolTooLarge,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::InputInvalid(m)
            | Self::PathRefused(m)
            | Self::QueryRefused(m)
            | Self::Failed(m)
            | Self::Timeout(m)
            | Self::TooLarge(m) => m,
        }
    }

    /// The HTTP status `POST /v1/tool-calls` answers it with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InputInvalid(_) => StatusCode::BAD_REQUEST,
            Self::PathRefused(_) | Self::QueryRefused(_) => StatusCode::FORBIDDEN,
            Self::Failed(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// A result as it may be handed on: sanitized and capped.
#[derive(Debug, Clone)]
pub struct ToolResult {
    /// For a client: the result as JSON, or (when cut) the capped text.
    pub value: Value,
    /// For a model: the result's text, at most `spec.tools.results.maxBytes`.
    pub content: String,
    pub truncated: bool,
}

/// One run and what came of it.
#[derive(Debug)]
pub struct Ran {
    pub outcome: Result<ToolResult, Failure>,
    pub duration: Duration,
    /// Bytes the tool produced, before sanitizing.
    pub produced: u64,
    /// A registered HTTP tool's status.
    pub http_status: Option<u16>,
}

impl Ran {
    pub fn code(&self) -> ReasonCode {
        self.outcome
            .as_ref()
            .map_or_else(Failure::code, |_| ReasonCode::ToolExecuted)
    }

    /// The `tool_result` audit row, after the decision's `decision` row.
    pub fn event(&self, call: &ToolCallRequest<'_>, decision: &Decision) -> AuditEvent {
        let mut e = AuditEvent::from_decision(
            EventKind::ToolResult,
            call.request_id,
            &call.who.namespace,
            &call.who.agent,
            decision,
        );
        e.set_decision(match self.outcome {
            Ok(_) => AuditDecision::Executed,
            Err(_) => AuditDecision::Failed,
        });
        e.reason_codes = vec![self.code().as_str().to_owned()];
        e.tool = Some(crate::decisions::bounded_tool_name(call.tool).into_owned());
        e.argument_digest = Some(call.arguments.digest().to_owned());
        e.latency_us = Some(i64::try_from(self.duration.as_micros()).unwrap_or(i64::MAX));
        e.upstream_status = self.http_status.map(i64::from);
        e.result_bytes = Some(i64::try_from(self.produced).unwrap_or(i64::MAX));
        if let Ok(r) = &self.outcome {
            e.result_sha256 = Some(sha256_hex(r.content.as_bytes()));
        }
        e
    }
}

/// Runs `tool` with `arguments` (the call's object), for `namespace`.
pub async fn run(
    state: &AppState,
    namespace: &str,
    tool: Runnable<'_>,
    arguments: &Map<String, Value>,
    settings: &ResultSettings,
) -> Ran {
    let started = Instant::now();
    let mut produced = 0u64;
    let mut http_status = None;
    let mut redactions = Redactions::default();
    let raw = run_raw(
        state,
        tool,
        arguments,
        settings,
        &mut produced,
        &mut http_status,
        &mut redactions,
    )
    .await;
    let outcome = raw.map(|value| finish(value, settings, &mut redactions));
    let ran = Ran {
        outcome,
        duration: started.elapsed(),
        produced,
        http_status,
    };
    count(
        &state.metrics,
        namespace,
        tool.name(),
        ran.code(),
        &redactions,
    );
    ran
}

/// Runs an allowed call of `tool` and records its `tool_result` row,
/// durably, before anyone is given the result.
pub async fn run_recorded(
    state: &AppState,
    call: &ToolCallRequest<'_>,
    decision: &Decision,
    tool: Runnable<'_>,
    settings: &ResultSettings,
) -> Result<Ran, GatewayError> {
    let empty = Map::new();
    let arguments = call
        .arguments
        .value()
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let ran = run(state, &call.who.namespace, tool, arguments, settings).await;
    let receipt = state
        .audit
        .submit(ran.event(call, decision))
        .map_err(|e| crate::decisions::unaudited(&e, call.request_id))?;
    crate::decisions::recorded(receipt, call.request_id).await?;
    Ok(ran)
}

fn count(m: &GatewayMetrics, namespace: &str, tool: &str, code: ReasonCode, r: &Redactions) {
    m.tool_runs
        .with_label_values(&[namespace, tool, code.as_str()])
        .inc();
    count_redactions(m, r);
}

pub(crate) fn count_redactions(m: &GatewayMetrics, r: &Redactions) {
    for (kind, n) in r.iter() {
        m.tool_result_redactions
            .with_label_values(&[kind.as_str()])
            .inc_by(u64::from(n));
    }
}

fn text_arg<'a>(
    arguments: &'a Map<String, Value>,
    tool: &str,
    key: &str,
) -> Result<&'a str, Failure> {
    match arguments.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Failure::InputInvalid(format!(
            "{tool}: \"{key}\" must be a string"
        ))),
        None => Err(Failure::InputInvalid(format!(
            "{tool}: \"{key}\" is missing"
        ))),
    }
}

async fn run_raw(
    state: &AppState,
    tool: Runnable<'_>,
    arguments: &Map<String, Value>,
    settings: &ResultSettings,
    produced: &mut u64,
    http_status: &mut Option<u16>,
    redactions: &mut Redactions,
) -> Result<Value, Failure> {
    let name = tool.name().to_owned();
    match tool {
        Runnable::Sql(sql_tool) => {
            let database = text_arg(arguments, &name, "database")?;
            let query = text_arg(arguments, &name, "query")?;
            let db = sql_tool.database(database).ok_or_else(|| {
                let known: Vec<&str> = sql_tool.databases.iter().map(|d| d.name.as_str()).collect();
                Failure::InputInvalid(format!(
                    "sql_query: no database {database:?}; this policy lists {}",
                    known.join(", ")
                ))
            })?;
            let value = sql::run(sql_tool, db, query).await?;
            *produced = value.to_string().len() as u64;
            Ok(value)
        }
        Runnable::ReadFile(f) | Runnable::WriteFile(f) => {
            let root_name = text_arg(arguments, &name, "root")?;
            let path = text_arg(arguments, &name, "path")?.to_owned();
            let root = f.root(root_name).cloned().ok_or_else(|| {
                let known: Vec<&str> = f.roots.iter().map(|r| r.name.as_str()).collect();
                Failure::InputInvalid(format!(
                    "{name}: no root {root_name:?}; this policy lists {}",
                    known.join(", ")
                ))
            })?;
            let max = f.max_bytes;
            if matches!(tool, Runnable::WriteFile(_)) {
                let content = text_arg(arguments, &name, "content")?.as_bytes().to_vec();
                let written = content.len();
                let p = path.clone();
                blocking(move || files::write(&root, &p, &content, max)).await?;
                return Ok(json!({"root": root_name, "path": path, "bytesWritten": written}));
            }
            let p = path.clone();
            let bytes = blocking(move || files::read(&root, &p, max)).await?;
            *produced = bytes.len() as u64;
            Ok(json!({
                "root": root_name,
                "path": path,
                "bytes": bytes.len(),
                "content": content(&bytes, settings, redactions),
            }))
        }
        Runnable::Http(t) => {
            let answer = http::run(&state.http, &state.egress, t, arguments).await?;
            *produced = answer.body.len() as u64;
            *http_status = Some(answer.status);
            let body = match serde_json::from_slice::<Value>(&answer.body) {
                Ok(v) => v,
                Err(_) => Value::String(content(&answer.body, settings, redactions)),
            };
            if answer.status >= 400 {
                let mut text = body.to_string();
                if settings.sanitize {
                    text = sanitize_text(&text, redactions);
                }
                return Err(Failure::Failed(format!(
                    "{name} answered HTTP {}: {}",
                    answer.status,
                    cap(text, 512, redactions)
                )));
            }
            Ok(http::result(&answer, body))
        }
    }
}

/// Bytes as text: sanitized (binary content becomes a marker), or, with
/// sanitizing off, as they are (base64 when they are not UTF-8).
fn content(bytes: &[u8], settings: &ResultSettings, redactions: &mut Redactions) -> String {
    if settings.sanitize {
        return sanitize_bytes(bytes, redactions);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure::Failed(format!("the tool's task failed: {e}")))?
}

#[cfg(test)]
mod tests;
