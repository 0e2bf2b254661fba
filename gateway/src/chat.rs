//! `POST /v1/chat/completions`, OpenAI-compatible, streamed or not. The
//! request is routed by policy (refused when a kill switch, the model
//! allow-list or a missing policy says so), sent to the chosen provider
//! with every field the gateway does not act on passed through, retried on
//! the policy's fallback provider on connect error, 5xx or timeout, and
//! every tool call the model proposes is decided before the client sees
//! it: denied or held ones are replaced by an explanation.
//!
//! Providers ([`crate::providers`]): OpenAI and any OpenAI-compatible
//! server, Ollama's native API and Anthropic's Messages API, all seen here
//! in OpenAI's shapes.

use crate::error::ApiError;
use crate::identity::Identity;
use crate::providers::{self, Answer, UpstreamError};
use crate::server::AppState;
use crate::snapshot::Snapshot;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use palisade_audit::{AuditEvent, EventKind};
use palisade_policy::{
    ChatRequest, Outcome, PromptCapture, PromptFingerprint, Route, ToolCall, argument_digest,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// The text the router scans: every message's string content and text parts.
fn prompt_text(messages: &Value) -> String {
    let mut out = String::new();
    for m in messages.as_array().into_iter().flatten() {
        match &m["content"] {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(parts) => {
                for p in parts {
                    if let Some(t) = p["text"].as_str() {
                        out.push_str(t);
                        out.push('\n');
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Decides the tool calls a model proposed; returns the allowed calls and
/// an explanation for each one withheld. Every call is audited.
fn gate_tool_calls(
    state: &AppState,
    snapshot: &Snapshot,
    who: &Identity,
    request_id: &str,
    calls: Vec<Value>,
) -> (Vec<Value>, Vec<String>) {
    let mut allowed = Vec::new();
    let mut withheld = Vec::new();
    for call in calls {
        let name = call["function"]["name"].as_str().unwrap_or("").to_string();
        let args: Value = call["function"]["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str(a).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let d = snapshot.bundle.evaluate_tool(
            &ToolCall {
                namespace: &who.namespace,
                agent: &who.agent,
                tool: &name,
                arguments: &args,
            },
            jiff::Timestamp::now(),
        );
        let mut event = AuditEvent::from_decision(
            EventKind::ToolCall,
            request_id,
            &who.namespace,
            &who.agent,
            &d,
        );
        event.tool = Some(name.clone());
        event.argument_digest = Some(argument_digest(&args));
        let audited = state.audit.record(event).is_ok();
        state
            .metrics
            .decisions
            .with_label_values(&[
                "chat_tool_call",
                d.outcome.as_str(),
                d.reason_code.as_str(),
                "other",
            ])
            .inc();
        let rule = d
            .rule
            .as_deref()
            .map(|r| format!(", rule {r}"))
            .unwrap_or_default();
        match (d.effective_outcome(), audited) {
            (Outcome::Allow, true) => allowed.push(call),
            (Outcome::Allow, false) => withheld.push(format!(
                "[palisade] The tool call `{name}` was withheld: it could not be audited."
            )),
            (Outcome::Deny, _) => withheld.push(format!(
                "[palisade] The tool call `{name}` was blocked by policy ({}{rule}); it was not passed on.",
                d.reason_code
            )),
            (Outcome::RequireApproval, _) => {
                withheld.push(hold_in_background(state, snapshot, who, request_id, &name, &args, &d));
            }
        }
    }
    (allowed, withheld)
}

/// Records an Approval for a tool call the model proposed that needs a
/// human, and returns the explanation the client sees. The approval's name
/// is derived from the request, so it is known before the record is
/// written; the write runs in the background (the stream does not wait)
/// and is idempotent. Once approved, the agent runs the call through
/// `POST /v1/tool-calls` with `"approval": NAME`.
fn hold_in_background(
    state: &AppState,
    snapshot: &Snapshot,
    who: &Identity,
    request_id: &str,
    tool: &str,
    args: &Value,
    d: &palisade_policy::Decision,
) -> String {
    let rule = d
        .rule
        .as_deref()
        .map(|r| format!(", rule {r}"))
        .unwrap_or_default();
    let Some((policy, _)) = snapshot.bundle.policy_for(&who.namespace, &who.agent) else {
        return format!(
            "[palisade] The tool call `{tool}` needs a human's approval ({}{rule}); it was not passed on.",
            d.reason_code
        );
    };
    let hold = crate::approvals::Hold::new(
        policy,
        &who.agent,
        d.rule.clone(),
        tool,
        args,
        argument_digest(args),
        request_id,
    );
    let name = hold.name();
    let approvals = state.approvals.clone();
    let metrics = Arc::clone(&state.metrics);
    tokio::spawn(async move {
        match approvals.hold(&hold, jiff::Timestamp::now()).await {
            Ok(_) => metrics.approvals.with_label_values(&["requested"]).inc(),
            Err(e) => {
                tracing::error!(error = %e, approval = %hold.name(), "could not record the approval of a held tool call")
            }
        }
    });
    format!(
        "[palisade] The tool call `{tool}` needs a human's approval ({}{rule}); it was not passed on. Approval {name} was requested: poll GET /v1/approvals/{name}; once approved, run it with POST /v1/tool-calls and \"approval\": \"{name}\".",
        d.reason_code
    )
}

/// Applies tool-call decisions to a non-streamed completion.
fn gate_completion(
    state: &AppState,
    snapshot: &Snapshot,
    who: &Identity,
    request_id: &str,
    completion: &mut Value,
) {
    for choice in completion["choices"].as_array_mut().into_iter().flatten() {
        let Some(calls) = choice["message"]["tool_calls"].as_array().cloned() else {
            continue;
        };
        let (allowed, withheld) = gate_tool_calls(state, snapshot, who, request_id, calls);
        let message = &mut choice["message"];
        if allowed.is_empty() {
            if let Some(m) = message.as_object_mut() {
                m.remove("tool_calls");
            }
            if choice["finish_reason"] == "tool_calls" {
                choice["finish_reason"] = json!("stop");
            }
        } else {
            choice["message"]["tool_calls"] = Value::Array(allowed);
        }
        if !withheld.is_empty() {
            let message = &mut choice["message"];
            let prior = message["content"]
                .as_str()
                .map(|c| format!("{c}\n"))
                .unwrap_or_default();
            message["content"] = json!(format!("{prior}{}", withheld.join("\n")));
        }
    }
}

/// The `palisade` object of a non-streamed answer: where it went and why.
fn palisade_object(route: &Route, request_id: &str) -> Value {
    json!({
        "provider": route.provider,
        "model": route.model,
        "reasonCodes": route.reasons,
        "rule": route.rule,
        "requestId": request_id,
    })
}

/// `object` (a JSON object's bytes) with `"palisade": palisade` added as
/// its first member.
fn with_palisade(object: &[u8], palisade: &Value) -> Vec<u8> {
    let open = object.iter().position(|&b| b == b'{').map_or(0, |i| i + 1);
    let (head, rest) = object.split_at(open);
    let empty = rest.trim_ascii_start().first() == Some(&b'}');
    let mut out = Vec::with_capacity(object.len() + 256);
    out.extend_from_slice(head);
    out.extend_from_slice(b"\"palisade\":");
    // A Value always serializes.
    let _ = serde_json::to_writer(&mut out, palisade);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

/// A response with `body` of `content_type` and the route headers.
fn routed(body: Body, content_type: &'static str, route: &Route, request_id: &str) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    route_headers(&mut response, route, request_id);
    response
}

fn route_headers(response: &mut Response, route: &Route, request_id: &str) {
    // Names built once (a `&'static str` key is copied into a new name
    // on every insert).
    static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    static PROVIDER: HeaderName = HeaderName::from_static("x-palisade-provider");
    static MODEL: HeaderName = HeaderName::from_static("x-palisade-model");
    static REASONS: HeaderName = HeaderName::from_static("x-palisade-reasons");
    let h = response.headers_mut();
    let reasons: Vec<&str> = route.reasons.iter().map(|r| r.as_str()).collect();
    for (name, value) in [
        (&REQUEST_ID, request_id),
        (&PROVIDER, route.provider.as_str()),
        (&MODEL, route.model.as_str()),
        (&REASONS, reasons.join(",").as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name.clone(), v);
        }
    }
}

pub async fn chat_completions(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle(state: AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let snapshot = state.config.load_full().ok_or_else(ApiError::not_ready)?;
    let who = crate::server::identify(&state, &snapshot, headers).await?;
    crate::server::require_json(headers)?;
    crate::limits::check_json_depth(body)?;
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if !request.is_object() || !request["messages"].is_array() {
        return Err(ApiError::bad_request(
            "messages: a chat completion needs a `messages` array",
        ));
    }
    let model = request["model"].as_str().unwrap_or("").to_string();
    let prompt = prompt_text(&request["messages"]);
    let request_id = crate::server::request_id(headers, None);
    let started = Instant::now();
    let decision = snapshot.bundle.evaluate_chat(&ChatRequest {
        namespace: &who.namespace,
        agent: &who.agent,
        model: &model,
        prompt: &prompt,
    });
    let fingerprint = PromptFingerprint::of(&prompt);
    let mut event = AuditEvent::from_decision(
        EventKind::Chat,
        &request_id,
        &who.namespace,
        &who.agent,
        &decision.decision,
    );
    event.prompt_sha256 = Some(fingerprint.sha256);
    event.prompt_chars = Some(fingerprint.chars as i64);
    event.model = Some(model.clone());
    let policy = snapshot
        .bundle
        .policy_for(&who.namespace, &who.agent)
        .map(|(p, _)| p);
    if policy.is_some_and(|p| p.audit.prompts == PromptCapture::Full) {
        event.prompt_text = Some(prompt.clone());
    }
    state
        .metrics
        .decisions
        .with_label_values(&[
            "chat",
            decision.decision.outcome.as_str(),
            decision.decision.reason_code.as_str(),
            "other",
        ])
        .inc();

    let (Some(route), Some(policy)) = (decision.permitted_route().cloned(), policy) else {
        let d = &decision.decision;
        state
            .audit
            .record(event)
            .map_err(|_| audit_unavailable(&request_id))?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            d.reason_code.as_str(),
            format!("chat request refused ({})", d.reason_code),
        )
        .with_palisade(json!({"reasonCode": d.reason_code.as_str(), "rule": d.rule, "policy": d.policy, "requestId": request_id})));
    };

    let upstreams = providers::Upstream {
        http: &state.http,
        endpoints: &snapshot.endpoints,
    };
    let mut attempt = route.clone();
    let outcome = loop {
        let Some(provider) = policy.provider(&attempt.provider) else {
            break Err(UpstreamError::Connect(format!(
                "provider {} is not defined",
                attempt.provider
            )));
        };
        match providers::call(&upstreams, provider, &attempt.model, &request).await {
            Ok(r) => break Ok(r),
            Err(e) if e.retryable() => match attempt.fallback_route() {
                Some(f) => {
                    tracing::warn!(provider = %attempt.provider, fallback = %f.provider, error = ?e, "upstream failed; using the fallback provider");
                    attempt = f;
                }
                None => break Err(e),
            },
            Err(e) => break Err(e),
        }
    };
    event.provider = Some(attempt.provider.clone());
    event.model = Some(attempt.model.clone());
    event.reason_codes = attempt
        .reasons
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    event.rule = attempt.rule.clone();
    event.latency_us = Some(started.elapsed().as_micros() as i64);
    let upstream = match outcome {
        Ok(r) => r,
        Err(e) => {
            event.upstream_status = e.status();
            event.decision = "UpstreamError".into();
            let _ = state.audit.record(event);
            return Err(upstream_error(e, &attempt, &request_id));
        }
    };
    event.upstream_status = Some(200);
    state
        .audit
        .record(event)
        .map_err(|_| audit_unavailable(&request_id))?;

    let mut completion = match upstream {
        Answer::Stream(body) => {
            let gated = gate_stream(
                state.clone(),
                Arc::clone(&snapshot),
                who,
                request_id.clone(),
                body,
            );
            return Ok(routed(
                Body::from_stream(gated),
                "text/event-stream",
                &attempt,
                &request_id,
            ));
        }
        Answer::Completion(c) => c,
        Answer::Verbatim(body) => {
            let body = with_palisade(&body, &palisade_object(&attempt, &request_id));
            return Ok(routed(
                Body::from(body),
                "application/json",
                &attempt,
                &request_id,
            ));
        }
    };
    gate_completion(&state, &snapshot, &who, &request_id, &mut completion);
    completion["palisade"] = palisade_object(&attempt, &request_id);
    let mut response = axum::Json(completion).into_response();
    route_headers(&mut response, &attempt, &request_id);
    Ok(response)
}

fn audit_unavailable(request_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit.unavailable",
        "the request could not be audited, so it is not served; try again",
    )
    .with_palisade(json!({"requestId": request_id}))
}

fn upstream_error(e: UpstreamError, route: &Route, request_id: &str) -> ApiError {
    let extra = json!({"provider": route.provider, "requestId": request_id});
    match e {
        UpstreamError::Timeout => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream.timeout",
            format!("provider {} did not answer in time", route.provider),
        ),
        UpstreamError::Connect(reason) => {
            tracing::warn!(provider = %route.provider, %reason, "provider unreachable");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream.unreachable",
                format!("provider {} is unreachable", route.provider),
            )
        }
        UpstreamError::Server(s) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream.error",
            format!("provider {} failed with HTTP {s}", route.provider),
        ),
        UpstreamError::Client(s, body) => {
            // The client's own mistake (bad parameters): pass the provider's
            // error through with its status.
            let status = StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST);
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(String::from))
                .unwrap_or_else(|| {
                    format!(
                        "provider {} refused the request with HTTP {s}",
                        route.provider
                    )
                });
            ApiError::new(status, "upstream.rejected", message)
        }
        UpstreamError::Invalid(why) => {
            tracing::warn!(provider = %route.provider, %why, "provider answered something unexpected");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream.invalid_response",
                format!("provider {} answered something that is not a chat completion", route.provider),
            )
        }
    }
    .with_palisade(extra)
}

/// A streamed completion with its tool calls held back until complete,
/// decided, and then released (allowed) or replaced by an explanation.
fn gate_stream(
    state: AppState,
    snapshot: Arc<Snapshot>,
    who: Identity,
    request_id: String,
    upstream: futures_util::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut gate = SseGate::default();
    upstream.map(move |chunk| {
        let mut decide = |calls| gate_tool_calls(&state, &snapshot, &who, &request_id, calls);
        Ok(gate.push(chunk?, &mut decide))
    })
}

/// Decides a complete set of tool calls: `(allowed, explanations of the
/// withheld ones)`.
type Decide<'a> = dyn FnMut(Vec<Value>) -> (Vec<Value>, Vec<String>) + 'a;

/// The state of one gated SSE stream: the bytes of an event not complete
/// yet, and the tool calls being assembled from their fragments.
#[derive(Debug, Default)]
struct SseGate {
    buf: Vec<u8>,
    pending: Vec<Value>,
    /// `id`, `object`, `created`, `model` of the stream's chunks, for the
    /// chunks the gate writes itself.
    template: Value,
}

impl SseGate {
    /// The bytes to send on for `chunk` (possibly none while a tool call
    /// is being assembled).
    fn push(&mut self, chunk: Bytes, decide: &mut Decide<'_>) -> Bytes {
        // Whole events with nothing to gate, as providers send most of a
        // streamed answer (an event a chunk): passed on as they came, the
        // same bytes, no copy. What the loop below does with them too.
        if self.buf.is_empty()
            && self.pending.is_empty()
            && chunk.ends_with(b"\n\n")
            && find(&chunk, b"\"tool_calls\"").is_none()
        {
            return chunk;
        }
        self.buf.extend_from_slice(&chunk);
        let mut out = Vec::new();
        while let Some(end) = find(&self.buf, b"\n\n") {
            let event: Vec<u8> = self.buf.drain(..end + 2).collect();
            self.event(&event, &mut out, decide);
        }
        Bytes::from(out)
    }

    /// One complete event (`\n\n` included): passed on, held, or
    /// rewritten into `out`.
    fn event(&mut self, event: &[u8], out: &mut Vec<u8>, decide: &mut Decide<'_>) {
        let text = String::from_utf8_lossy(event);
        let data = text
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .map(str::trim);
        let Some(data) = data else {
            out.extend_from_slice(event);
            return;
        };
        // Nothing to gate: pass the event on byte for byte (no
        // re-serialization).
        if self.pending.is_empty() && find(data.as_bytes(), b"\"tool_calls\"").is_none() {
            out.extend_from_slice(event);
            return;
        }
        if data == "[DONE]" {
            self.flush(out, None, decide);
            out.extend_from_slice(event);
            return;
        }
        let Ok(mut parsed) = serde_json::from_str::<Value>(data) else {
            out.extend_from_slice(event);
            return;
        };
        self.template = json!({"id": parsed["id"], "object": parsed["object"], "created": parsed["created"], "model": parsed["model"]});
        let delta_calls = parsed["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .cloned();
        if let Some(calls) = delta_calls {
            for c in calls {
                let i = c["index"].as_u64().unwrap_or(0) as usize;
                while self.pending.len() <= i {
                    self.pending.push(
                        json!({"type": "function", "function": {"name": "", "arguments": ""}}),
                    );
                }
                let p = &mut self.pending[i];
                if let Some(id) = c["id"].as_str() {
                    p["id"] = json!(id);
                }
                if let Some(n) = c["function"]["name"].as_str() {
                    p["function"]["name"] = json!(n);
                }
                if let Some(a) = c["function"]["arguments"].as_str() {
                    let joined =
                        format!("{}{a}", p["function"]["arguments"].as_str().unwrap_or(""));
                    p["function"]["arguments"] = json!(joined);
                }
            }
            if let Some(d) = parsed["choices"][0]["delta"].as_object_mut() {
                d.remove("tool_calls");
            }
            // Forward whatever else the chunk carried (text, finish).
            let has_more = parsed["choices"][0]["delta"]
                .as_object()
                .is_some_and(|d| !d.is_empty())
                || !parsed["choices"][0]["finish_reason"].is_null();
            if !has_more {
                return;
            }
        }
        let finish = parsed["choices"][0]["finish_reason"]
            .as_str()
            .map(String::from);
        if finish.is_some() && !self.pending.is_empty() {
            let mut finish_reason = finish.clone();
            self.flush(out, Some(&mut finish_reason), decide);
            parsed["choices"][0]["finish_reason"] = json!(finish_reason);
        }
        out.extend_from_slice(format!("data: {parsed}\n\n").as_bytes());
    }

    /// Decides the assembled tool calls and writes the allowed ones and
    /// the explanations of the others; a `tool_calls` finish becomes
    /// `stop` when none was allowed.
    fn flush(
        &mut self,
        out: &mut Vec<u8>,
        finish_reason: Option<&mut Option<String>>,
        decide: &mut Decide<'_>,
    ) {
        if self.pending.is_empty() {
            return;
        }
        let (allowed, withheld) = decide(std::mem::take(&mut self.pending));
        let template = &self.template;
        let mut emit = |delta: Value| {
            let mut c = template.clone();
            c["choices"] = json!([{"index": 0, "delta": delta, "finish_reason": null}]);
            out.extend_from_slice(format!("data: {c}\n\n").as_bytes());
        };
        if !allowed.is_empty() {
            emit(json!({"tool_calls": providers::indexed(allowed)}));
        } else if let Some(f) = finish_reason
            && f.as_deref() == Some("tool_calls")
        {
            *f = Some("stop".into());
        }
        if !withheld.is_empty() {
            emit(json!({"content": withheld.join("\n")}));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An OpenAI stream: text, then two tool calls in fragments (one to
    /// allow, one to block), the finish, `[DONE]`; one event per element.
    fn tool_call_stream() -> Vec<String> {
        let chunk = |delta: Value, finish: Value| {
            let c = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {c}\n\n")
        };
        let call = |i: u64, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut c = json!({"index": i, "function": {"arguments": args}});
            if let (Some(id), Some(name)) = (id, name) {
                c["id"] = json!(id);
                c["type"] = json!("function");
                c["function"]["name"] = json!(name);
            }
            chunk(json!({"tool_calls": [c]}), Value::Null)
        };
        vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Let me look. "}), Value::Null),
            call(0, Some("call_0"), Some("search_web"), "{\"q\": \"opening"),
            call(0, None, None, " hours\"}"),
            call(1, Some("call_1"), Some("delete_all"), "{}"),
            chunk(json!({}), json!("tool_calls")),
            "data: [DONE]\n\n".into(),
        ]
    }

    /// Runs `chunks` through a gate that allows `search_*` tools.
    fn gated(chunks: impl IntoIterator<Item = Vec<u8>>) -> String {
        let mut decide = |calls: Vec<Value>| {
            let (allowed, blocked): (Vec<Value>, Vec<Value>) = calls.into_iter().partition(|c| {
                c["function"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("search_"))
            });
            let why = blocked
                .iter()
                .map(|c| format!("{} was blocked", c["function"]["name"]))
                .collect();
            (allowed, why)
        };
        let mut gate = SseGate::default();
        let out: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| gate.push(Bytes::from(c), &mut decide).to_vec())
            .collect();
        String::from_utf8(out).unwrap()
    }

    fn sse_data(stream: &str) -> Vec<Value> {
        stream
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap_or(json!(d)))
            .collect()
    }

    #[test]
    fn streamed_tool_calls_are_gated_however_the_provider_splits_its_events() {
        let events = tool_call_stream();
        let whole = events.concat();
        let expected = gated([whole.clone().into_bytes()]);
        let out = sse_data(&expected);
        // Text passes through; the allowed call is reassembled from its
        // fragments; the blocked one is replaced by its explanation.
        assert_eq!(out[1]["choices"][0]["delta"]["content"], "Let me look. ");
        let calls: Vec<&Value> = out
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        assert_eq!(calls.len(), 1, "{expected}");
        assert_eq!(calls[0]["function"]["name"], "search_web");
        assert_eq!(
            calls[0]["function"]["arguments"],
            "{\"q\": \"opening hours\"}"
        );
        assert!(
            expected.contains("\\\"delete_all\\\" was blocked"),
            "{expected}"
        );
        assert_eq!(
            out[out.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(out.last().unwrap(), &json!("[DONE]"));

        // An event a chunk, as providers send them: the same output.
        assert_eq!(
            gated(events.iter().map(|e| e.clone().into_bytes())),
            expected
        );
        // Split anywhere (mid-event, mid-`"tool_calls"`, between the two
        // newlines): the same output.
        let bytes = whole.as_bytes();
        for at in 1..bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(gated([a.to_vec(), b.to_vec()]), expected, "split at {at}");
        }
        assert_eq!(
            gated(bytes.iter().map(|b| vec![*b])),
            expected,
            "byte by byte"
        );
    }

    #[test]
    fn events_without_tool_calls_pass_through_unchanged() {
        let text: String = tool_call_stream()
            .into_iter()
            .filter(|e| !e.contains("tool_calls"))
            .collect();
        assert_eq!(gated([text.clone().into_bytes()]), text);
        assert_eq!(gated(text.as_bytes().chunks(7).map(<[u8]>::to_vec)), text);
    }

    #[test]
    fn the_palisade_object_becomes_the_first_member_of_any_object() {
        let p = json!({"requestId": "r1"});
        for (input, expected) in [
            (
                r#"{"id":"x","choices":[]}"#,
                json!({"palisade": p, "id": "x", "choices": []}),
            ),
            ("  {  }  ", json!({"palisade": p})),
            ("{\n \"a\": 1\n}", json!({"palisade": p, "a": 1})),
        ] {
            let out: Value = serde_json::from_slice(&with_palisade(input.as_bytes(), &p)).unwrap();
            assert_eq!(out, expected, "{input}");
        }
    }
}
