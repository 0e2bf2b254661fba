//! `/mcp/{server}`: the MCP servers an agent's policy lists
//! (`spec.mcpServers`), served over Streamable HTTP with the gateway in
//! between. The agent authenticates the usual way and never holds the
//! server's credentials. Everything passes through as the MCP
//! specification has it — `initialize`, `Mcp-Session-Id`,
//! `MCP-Protocol-Version`, notifications, JSON or SSE answers, the GET
//! stream, DELETE — except:
//!
//! - `tools/call` is decided first, by the same engine as
//!   `POST /v1/tool-calls` (rules, CEL on arguments, ToolGrants, approvals,
//!   kill switches), and audited: a refusal or a hold is answered in-band
//!   as a JSON-RPC error ([`rpc`]); a repeat naming its approval in
//!   `_meta` runs once; its result is sanitised on the way back;
//! - `tools/list` shows only the tools the agent may call, held ones
//!   marked;
//! - a kill switch refuses every request and ends open streams;
//! - the session id is bound to the agent that opened it ([`session`]).
//!
//! [`upstream`] forwards and rewrites answers.

pub mod rpc;
mod session;
mod upstream;

use crate::api::request_id;
use crate::auth::Agent;
use crate::credentials::Identity;
use crate::decisions::held::{self, Step};
use crate::decisions::{Proposed, ToolCallRequest, admit, decide_tool_call, recorded};
use crate::error::GatewayError;
use crate::limits::UnreadBody;
use crate::snapshot::Snapshot;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use palisade_policy::{McpServer, Outcome, Policy, ReasonCode, ToolArguments};
use serde_json::{Value, json};
use upstream::Rewrite;

/// An in-band JSON-RPC error, with `status`.
fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// The policy governing the agent and the server it names, or the
/// refusal (no policy, no such server, a kill switch).
fn governed<'s>(
    snapshot: &'s Snapshot,
    who: &Identity,
    server: &str,
) -> Result<(&'s Policy, &'s McpServer), (StatusCode, Value)> {
    let Some((policy, agent)) = snapshot.bundle.policy_for(&who.namespace, &who.agent) else {
        let code = ReasonCode::PolicyNone.as_str();
        let message = format!(
            "no policy in namespace {:?} governs agent {:?}",
            who.namespace, who.agent
        );
        return Err((
            StatusCode::FORBIDDEN,
            rpc::error(None, rpc::REFUSED, &message, json!({"reasonCode": code})),
        ));
    };
    if let Some(kill) = policy.kill_switch(agent) {
        let message = format!(
            "agent {:?} is stopped by a kill switch ({})",
            who.agent, kill.reason_code
        );
        let data = json!({"reasonCode": kill.reason_code.as_str(), "rule": kill.rule});
        return Err((
            StatusCode::FORBIDDEN,
            rpc::error(None, rpc::REFUSED, &message, data),
        ));
    }
    let Some(target) = policy.mcp_server(server) else {
        let listed: Vec<&str> = policy.mcp_servers.iter().map(|s| s.name.as_str()).collect();
        let message = format!(
            "policy {}/{} lists no MCP server {server:?}; it lists: {}",
            policy.namespace,
            policy.name,
            if listed.is_empty() {
                "none (spec.mcpServers)".to_owned()
            } else {
                listed.join(", ")
            }
        );
        return Err((
            StatusCode::NOT_FOUND,
            rpc::error(None, rpc::REFUSED, &message, json!({})),
        ));
    };
    Ok((policy, target))
}

/// `POST /mcp/{server}`: one JSON-RPC message from the agent.
pub async fn post(
    State(state): State<AppState>,
    Path(server): Path<String>,
    Agent { who, snapshot }: Agent,
    headers: HeaderMap,
    body: UnreadBody,
) -> Response {
    let (_, target) = match governed(&snapshot, &who, &server) {
        Ok(found) => found,
        Err((status, refused)) => return answer(status, refused),
    };
    let body = match body.read().await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = crate::limits::check_json_depth(&body) {
        return e.into_response();
    }
    let message: rpc::Message = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
            let (code, text) = if batch {
                (-32600, "JSON-RPC batches are not forwarded (MCP 2025-06-18 removed them); send one message per request".to_owned())
            } else {
                (-32700, format!("the body is not a JSON-RPC message: {e}"))
            };
            return answer(
                StatusCode::BAD_REQUEST,
                rpc::error(None, code, &text, json!({})),
            );
        }
    };
    let request_id = request_id(&headers, None);
    let rewrite = match message.method.as_deref() {
        Some("tools/call") => {
            let call = (&server[..], &message, &request_id[..]);
            match decide_call(&state, &snapshot, &who, call).await {
                Ok(None) => Rewrite::CallResult,
                Ok(Some(refused)) => return refused,
                Err(e) => return e.into_response(),
            }
        }
        Some("tools/list") => Rewrite::ToolList,
        _ => Rewrite::Nothing,
    };
    let rewrite = message.id.clone().map(|id| (id, rewrite));
    upstream::forward(
        &state,
        target,
        &who,
        &headers,
        (Method::POST, Some(body.to_vec())),
        rewrite,
    )
    .await
}

/// `GET /mcp/{server}`: the server's own stream (notifications and
/// requests it sends unprompted), passed through; ended by a kill switch.
pub async fn get(
    State(state): State<AppState>,
    Path(server): Path<String>,
    agent: Agent,
    headers: HeaderMap,
) -> Response {
    passthrough(&state, &server, agent, &headers, Method::GET).await
}

/// `DELETE /mcp/{server}`: ends the session, passed through.
pub async fn delete(
    State(state): State<AppState>,
    Path(server): Path<String>,
    agent: Agent,
    headers: HeaderMap,
) -> Response {
    passthrough(&state, &server, agent, &headers, Method::DELETE).await
}

/// A bodiless request passed through as it is.
async fn passthrough(
    state: &AppState,
    server: &str,
    Agent { who, snapshot }: Agent,
    headers: &HeaderMap,
    method: Method,
) -> Response {
    match governed(&snapshot, &who, server) {
        Ok((_, target)) => {
            upstream::forward(state, target, &who, headers, (method, None), None).await
        }
        Err((status, refused)) => answer(status, refused),
    }
}

/// Decides a `tools/call` of `message` to `server` (audited before
/// anything goes on): `None` to forward it, or the in-band answer
/// refusing or holding it.
async fn decide_call(
    state: &AppState,
    snapshot: &Snapshot,
    who: &Identity,
    (server, message, request_id): (&str, &rpc::Message, &str),
) -> Result<Option<Response>, GatewayError> {
    let id = message.id.as_ref();
    let params: rpc::CallParams = match message
        .params
        .as_deref()
        .map(|p| serde_json::from_str(p.get()))
    {
        Some(Ok(p)) => p,
        _ => {
            let text = "tools/call needs params {\"name\": \"...\", \"arguments\": {...}}";
            return Ok(Some(answer(
                StatusCode::OK,
                rpc::error(id, -32602, text, json!({})),
            )));
        }
    };
    let arguments = ToolArguments::parse(params.arguments.as_deref().map_or("", |a| a.get()));
    admit(state, request_id).await?;
    let call = ToolCallRequest {
        proposed: Proposed::Mcp { server },
        request_id,
        who,
        tool: &params.name,
        arguments: &arguments,
        approval: params.approval(),
    };
    let decided = decide_tool_call(state, snapshot, &call);
    let step = match (decided.decision.effective_outcome(), decided.policy) {
        (Outcome::RequireApproval, Some(policy)) => {
            Some(held::step(state, policy, &call, &decided, params.approval()).await?)
        }
        _ => None,
    };
    recorded(decided.audit(state, &call, step.as_ref())?, request_id).await?;
    let d = &decided.decision;
    let data = |code: ReasonCode| json!({"reasonCode": code.as_str(), "rule": d.rule, "policy": d.policy, "requestId": request_id});
    let refused = |code: ReasonCode, message: String| {
        Some(answer(
            StatusCode::OK,
            rpc::error(id, rpc::REFUSED, &message, data(code)),
        ))
    };
    let tool = &params.name;
    Ok(match step {
        Some(Step::Allowed(_)) => None,
        Some(Step::Held(view)) => {
            let message = format!(
                "tool {tool:?} needs a human's approval: Approval {} (until {}); once approved, repeat the call with _meta {{\"{}\": \"{}\"}}",
                view.name,
                view.expires_at,
                rpc::APPROVAL_META,
                view.name
            );
            let mut data = data(d.reason_code);
            data["approval"] = view.to_json();
            Some(answer(
                StatusCode::OK,
                rpc::error(id, rpc::HELD, &message, data),
            ))
        }
        Some(Step::Refused(code, _)) => refused(
            code,
            format!("tool {tool:?}: the approval cannot be used ({code})"),
        ),
        Some(Step::Limited { pending, limit }) => refused(
            ReasonCode::LimitPendingApprovals,
            format!(
                "tool {tool:?} needs a human's approval, and {pending} of this agent's approvals already wait (at most {limit})"
            ),
        ),
        None if d.effective_outcome() == Outcome::Allow => None,
        None => refused(
            d.reason_code,
            format!(
                "tool {tool:?} is denied for agent {:?} ({})",
                who.agent, d.reason_code
            ),
        ),
    })
}
