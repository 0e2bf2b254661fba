//! The HTTP APIs, one module each; [`crate::router`] mounts them. What
//! they share: a JSON body read within limits, and the request id.
//!
//! - [`tool_calls`]: `POST /v1/tool-calls`;
//! - [`chat`]: `POST /v1/chat/completions`;
//! - [`embeddings`]: `POST /v1/embeddings`;
//! - [`messages`]: `POST /v1/messages` (Anthropic's Messages API), served
//!   and [`responses`]: `POST /v1/responses` (OpenAI's Responses API),
//!   both served through [`ingress`] (the chat path behind another API's
//!   shapes);
//! - [`models`]: `GET /v1/models`;
//! - [`mcp`]: `/mcp/{server}`, the MCP servers of `spec.mcpServers`;
//! - [`routed`]: what chat and embeddings share (fallback, route headers);
//! - [`approvals`]: `GET /v1/approvals[/{name}]`, `POST
//!   /v1/approvals/{name}/approve|deny`;
//! - [`audit_query`]: `GET /v1/audit/events`;
//! - [`quarantines`]: `POST /v1/security/quarantines/{namespace}/{agent}/lift`;
//! - [`openapi`]: `/openapi.json` and `/docs`.

pub mod approvals;
pub mod audit_query;
pub mod chat;
pub mod embeddings;
pub mod ingress;
pub mod mcp;
pub mod messages;
pub mod models;
pub mod openapi;
pub mod quarantines;
pub mod responses;
pub mod routed;
pub mod tool_calls;

use crate::error::GatewayError;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

/// A JSON request body: declared as JSON (`415` otherwise), nested no
/// deeper than [`crate::limits::MAX_JSON_DEPTH`] and parsed into `T`, a
/// parse error described by `explain`.
pub fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
    explain: impl FnOnce(serde_json::Error) -> String,
) -> Result<T, GatewayError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !declared {
        return Err(GatewayError::NotJson);
    }
    crate::limits::check_json_depth(body)?;
    serde_json::from_slice(body).map_err(|e| GatewayError::BadRequest(explain(e)))
}

/// The caller's request id (from the body, else `x-request-id`), or a
/// new one.
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

/// The agent's W3C `traceparent` header, if it sent a readable one.
pub fn traceparent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|t| t.len() <= 128)
}
