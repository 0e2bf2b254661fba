//! Forwarding to an MCP server and rewriting its answers: the agent's
//! request goes on with the session headers and the server's credentials
//! (never the agent's own); the answer — JSON, or server-sent events read
//! one event at a time — comes back with the response to the agent's
//! request rewritten (`tools/list` filtered, `tools/call` results
//! sanitised). A message the gateway must rewrite but cannot read, an
//! event over [`MAX_EVENT_BYTES`], a server that does not answer within
//! its timeout: each ends the answer with a JSON-RPC error (`-32003`), so a
//! misbehaving server can neither hang the gateway nor slip a result past
//! it. A kill switch ends a stream at its next event or within a second.

use super::{rpc, session};
use crate::credentials::Identity;
use crate::error::GatewayError;
use crate::http_client::CallError;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use palisade_policy::{McpServer, Redactions};
use serde_json::{Value, json};
use std::time::Duration;

/// The most bytes one message (a JSON answer, or one event) may have.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;
/// How long the server's own (GET) stream may stay open at once; the
/// client reopens it.
const STREAM_HOURS: u64 = 1;
/// Headers of the agent's request that go on to the server.
/// (The session id goes both ways too, bound to the agent: [`session`].)
const REQUEST_HEADERS: [&str; 3] = ["accept", "mcp-protocol-version", "last-event-id"];
/// Headers of the server's answer that come back.
const ANSWER_HEADERS: [&str; 3] = ["content-type", "cache-control", "x-accel-buffering"];
const SESSION: &str = "mcp-session-id";

/// What to rewrite in the answer to the agent's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    Nothing,
    ToolList,
    CallResult,
}

/// The identity and what the rewrite needs, carried into the stream.
#[derive(Clone)]
struct Rewriter {
    state: AppState,
    who: Identity,
    /// The id of the agent's request and what to do with its answer.
    target: Option<(Value, Rewrite)>,
}

impl Rewriter {
    /// One message from the server, rewritten if it answers the agent's
    /// request (an unreadable one that might: an error instead).
    fn message(&self, data: &str) -> String {
        let Some((id, rewrite)) = &self.target else {
            return data.to_owned();
        };
        if *rewrite == Rewrite::Nothing {
            return data.to_owned();
        }
        let Ok(mut value) = serde_json::from_str::<Value>(data) else {
            return unreadable(Some(id));
        };
        if value.get("id") != Some(id) {
            return data.to_owned();
        }
        let Some(result) = value.get_mut("result") else {
            return data.to_owned();
        };
        match rewrite {
            Rewrite::ToolList => match self.state.config.load_full() {
                Some(snapshot) => rpc::filter_tools(
                    result,
                    &snapshot.bundle,
                    (&self.who.namespace, &self.who.agent),
                ),
                None => return unreadable(Some(id)),
            },
            Rewrite::CallResult => {
                let mut redactions = Redactions::default();
                rpc::sanitize_result(result, &mut redactions);
                crate::tools::count_redactions(&self.state.metrics, &redactions);
            }
            Rewrite::Nothing => {}
        }
        value.to_string()
    }

    /// Whether a kill switch now stops the agent.
    fn stopped(&self) -> bool {
        self.state.config.load().as_ref().is_none_or(|s| {
            s.bundle
                .policy_for(&self.who.namespace, &self.who.agent)
                .is_none_or(|(p, a)| p.kill_switch(a).is_some())
        })
    }
}

fn upstream_error(id: Option<&Value>, message: &str, code: &str) -> Value {
    rpc::error(id, rpc::UPSTREAM, message, json!({"reasonCode": code}))
}

fn unreadable(id: Option<&Value>) -> String {
    upstream_error(
        id,
        "the MCP server sent a message the gateway cannot read",
        "upstream.invalid_response",
    )
    .to_string()
}

/// Sends the agent's request on and answers with the server's answer.
pub async fn forward(
    state: &AppState,
    server: &McpServer,
    who: &Identity,
    headers: &HeaderMap,
    (method, body): (Method, Option<Vec<u8>>),
    target: Option<(Value, Rewrite)>,
) -> Response {
    let id = target.as_ref().map(|(id, _)| id.clone());
    let fail = |status: StatusCode, message: &str, code: &str| {
        (
            status,
            axum::Json(upstream_error(id.as_ref(), message, code)),
        )
            .into_response()
    };
    let Ok(uri) = server.url.parse::<Uri>() else {
        return fail(
            StatusCode::BAD_GATEWAY,
            "the MCP server's URL does not parse",
            "upstream.unreachable",
        );
    };
    if let Err(refusal) = state.egress.check_url(&server.url, server.token.is_some()) {
        let message = format!("the MCP server's URL is not allowed: {refusal}");
        return fail(StatusCode::BAD_GATEWAY, &message, "upstream.not_allowed");
    }
    let mut out: Vec<(&str, String)> = REQUEST_HEADERS
        .iter()
        .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?.to_owned())))
        .collect();
    if let Some(sent) = headers.get(SESSION) {
        let Some(id) = sent
            .to_str()
            .ok()
            .and_then(|s| session::unwrap(server, who, s))
        else {
            let body = rpc::error(id.as_ref(), -32600, "Session not found", json!({}));
            return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
        };
        out.push((SESSION, id.to_owned()));
    }
    if !out.iter().any(|(n, _)| *n == "accept") {
        out.push(("accept", "application/json, text/event-stream".to_owned()));
    }
    if let Some(token) = &server.token {
        out.push(("authorization", format!("Bearer {}", token.expose())));
    }
    let timeout = if method == Method::GET {
        Duration::from_secs(STREAM_HOURS * 3600)
    } else {
        Duration::from_millis(server.timeout_ms)
    };
    let answer = match state.http.send(method, uri, &out, body, timeout).await {
        Ok(answer) => answer,
        Err(e) => return call_failed(id.as_ref(), server, e),
    };
    let mut response = Response::builder().status(answer.status);
    for name in ANSWER_HEADERS {
        if let Some(v) = answer.headers.get(name) {
            response = response.header(name, v.clone());
        }
    }
    let opened = answer.headers.get(SESSION).and_then(|v| v.to_str().ok());
    if let Some(wrapped) = opened.and_then(|id| session::wrap(server, who, id)) {
        response = response.header(SESSION, wrapped);
    }
    let streamed = answer
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let rewriter = Rewriter {
        state: state.clone(),
        who: who.clone(),
        target,
    };
    if streamed {
        let events = sse(Box::pin(answer.bytes_stream()), rewriter);
        return response
            .body(Body::from_stream(events))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
    }
    let bytes = match answer.bytes_at_most(MAX_EVENT_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => return call_failed(id.as_ref(), server, e),
    };
    let json = answer_is_json(&bytes);
    let body = if json && !bytes.is_empty() {
        Bytes::from(rewriter.message(&String::from_utf8_lossy(&bytes)))
    } else {
        bytes
    };
    response
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

/// A failed call to the server, answered with the status and code the
/// gateway gives any provider's failure (`GatewayError::Upstream`: 504
/// `upstream.timeout`, 502 `upstream.unreachable` or
/// `upstream.invalid_response`) as a JSON-RPC error.
fn call_failed(id: Option<&Value>, server: &McpServer, e: CallError) -> Response {
    tracing::warn!(error = %e, server = %server.name, "MCP server call failed");
    let error: crate::providers::UpstreamError = e.into();
    let message = format!("MCP server {}: {error}", server.name);
    let failure = GatewayError::Upstream {
        provider: server.name.clone(),
        request_id: String::new(),
        error,
    };
    let body = upstream_error(id, &message, failure.code().as_str());
    (failure.status(), axum::Json(body)).into_response()
}

fn answer_is_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[')
}

/// One server-sent event being read: its lines so far.
#[derive(Default)]
struct Event {
    fields: Vec<String>,
    data: String,
    bytes: usize,
}

impl Event {
    /// The event as the agent gets it, its data rewritten.
    fn emit(&mut self, rewriter: &Rewriter) -> Option<Bytes> {
        let event = std::mem::take(self);
        if event.fields.is_empty() && event.data.is_empty() {
            return None;
        }
        let mut out = String::new();
        for f in &event.fields {
            out.push_str(f);
            out.push('\n');
        }
        if !event.data.is_empty() {
            out.push_str("data: ");
            out.push_str(&rewriter.message(&event.data));
            out.push('\n');
        }
        out.push('\n');
        Some(Bytes::from(out))
    }
}

/// Reads the server's events and writes them on, rewritten; ends with an
/// error event when one is too large, the server fails mid-stream, or a
/// kill switch stops the agent.
fn sse(
    upstream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static,
    rewriter: Rewriter,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    struct S<U> {
        upstream: U,
        rewriter: Rewriter,
        buf: Vec<u8>,
        ends: crate::providers::framing::LineEnds,
        event: Event,
        done: bool,
    }
    let start = S {
        upstream,
        rewriter,
        buf: Vec::new(),
        ends: Default::default(),
        event: Event::default(),
        done: false,
    };
    futures_util::stream::unfold(start, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            // Whole lines first.
            while let Some(i) = memchr::memchr(b'\n', &s.buf) {
                let line: Vec<u8> = s.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                if line.is_empty() {
                    if s.rewriter.stopped() {
                        s.done = true;
                        return Some((
                            Ok(ended(
                                &s.rewriter,
                                "a kill switch stopped the agent",
                                "kill_switch",
                            )),
                            s,
                        ));
                    }
                    if let Some(out) = s.event.emit(&s.rewriter) {
                        return Some((Ok(out), s));
                    }
                    continue;
                }
                s.event.bytes += line.len();
                match line.strip_prefix("data:") {
                    Some(data) => {
                        if !s.event.data.is_empty() {
                            s.event.data.push('\n');
                        }
                        s.event
                            .data
                            .push_str(data.strip_prefix(' ').unwrap_or(data));
                    }
                    None => s.event.fields.push(line),
                }
            }
            if s.buf.len() + s.event.bytes > MAX_EVENT_BYTES {
                s.done = true;
                return Some((
                    Ok(ended(
                        &s.rewriter,
                        "the MCP server sent an event over the size limit",
                        "upstream.invalid_response",
                    )),
                    s,
                ));
            }
            let next = tokio::time::timeout(Duration::from_secs(1), s.upstream.next()).await;
            match next {
                Err(_) if s.rewriter.stopped() => {
                    s.done = true;
                    return Some((
                        Ok(ended(
                            &s.rewriter,
                            "a kill switch stopped the agent",
                            "kill_switch",
                        )),
                        s,
                    ));
                }
                Err(_) => {}
                Ok(Some(Ok(chunk))) => {
                    let chunk = s.ends.to_lf(chunk);
                    s.buf.extend_from_slice(&chunk);
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "MCP server stream failed");
                    s.done = true;
                    return Some((
                        Ok(ended(
                            &s.rewriter,
                            "the MCP server's stream failed or timed out",
                            "upstream.timeout",
                        )),
                        s,
                    ));
                }
                Ok(None) => {
                    s.done = true;
                    let last = s.event.emit(&s.rewriter)?;
                    return Some((Ok(last), s));
                }
            }
        }
    })
}

/// The event that ends a stream the gateway cut: an error answering the
/// agent's request (or, for the server's own stream, a notification-less
/// error with no id).
fn ended(rewriter: &Rewriter, why: &str, code: &str) -> Bytes {
    let id = rewriter.target.as_ref().map(|(id, _)| id);
    let body = upstream_error(id, why, code);
    Bytes::from(format!("event: message\ndata: {body}\n\n"))
}
