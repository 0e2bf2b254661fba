//! Talking to model providers. Whatever the provider speaks, the rest of
//! the gateway sees OpenAI's shapes: a chat completion, or an SSE stream of
//! `chat.completion.chunk`s ending in `[DONE]`.
//!
//! - `openai`: OpenAI or any OpenAI-compatible server, passed through.
//! - `ollama`: Ollama's native `/api/chat` (NDJSON streaming), translated.
//! - `anthropic`: the Messages API (SSE), translated.

use crate::upstream::{CallError, HttpClient};
use axum::body::Bytes;
use axum::http::Uri;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use palisade_policy::{PolicyBundle, Provider, ProviderKind};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Anthropic's API version header.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` is required by Anthropic; used when the request sets none.
const ANTHROPIC_DEFAULT_MAX_TOKENS: u64 = 4096;

/// Why a provider call failed.
#[derive(Debug)]
pub enum UpstreamError {
    Connect(String),
    Timeout,
    /// 5xx: retryable.
    Server(u16),
    /// 4xx: the client's problem, passed through.
    Client(u16, Bytes),
    /// The provider answered something that is not what its API promises.
    Invalid(String),
}

impl UpstreamError {
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Timeout | Self::Server(_))
    }

    pub fn status(&self) -> Option<i64> {
        match self {
            Self::Server(s) | Self::Client(s, _) => Some(i64::from(*s)),
            _ => None,
        }
    }
}

/// A provider's answer in OpenAI's shape.
pub enum Answer {
    Completion(Value),
    /// An OpenAI-shaped completion object with nothing to gate (no tool
    /// calls), as the provider sent it: passed on without parsing it into
    /// a tree and writing it out again.
    Verbatim(Bytes),
    /// OpenAI SSE bytes (`data: {...}\n\n` ... `data: [DONE]\n\n`).
    Stream(BoxStream<'static, Result<Bytes, std::io::Error>>),
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Completion(v) => f.debug_tuple("Completion").field(v).finish(),
            Self::Verbatim(b) => f.debug_tuple("Verbatim").field(b).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

fn url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    match path.strip_prefix("/v1") {
        Some(rest) if base.ends_with("/v1") => format!("{base}{rest}"),
        _ => format!("{base}{path}"),
    }
}

/// The chat endpoint of `provider`: its base URL and its API's path.
fn endpoint(provider: &Provider) -> String {
    let path = match provider.kind {
        ProviderKind::OpenAi => "/v1/chat/completions",
        ProviderKind::Ollama => "/api/chat",
        ProviderKind::Anthropic => "/v1/messages",
    };
    url(&provider.base_url, path)
}

/// Every provider's chat endpoint, parsed once per configuration: parsing
/// a URL per request (host name normalisation included) was ~2% of the
/// gateway's CPU. Part of the [`crate::snapshot::Snapshot`].
#[derive(Debug, Default)]
pub struct Endpoints(HashMap<String, Uri>);

impl Endpoints {
    pub fn of(bundle: &PolicyBundle) -> Self {
        let parsed = bundle
            .policies()
            .iter()
            .flat_map(|p| &p.providers)
            .map(endpoint)
            .filter_map(|e| e.parse::<Uri>().ok().map(|u| (e, u)))
            .collect();
        Self(parsed)
    }

    /// `provider`'s endpoint; one the configuration did not parse (it
    /// cannot happen: the compiler checks base URLs) is parsed here, and
    /// an unparsable one is a connect error naming it.
    fn get(&self, provider: &Provider) -> Result<Uri, UpstreamError> {
        let e = endpoint(provider);
        match self.0.get(&e) {
            Some(u) => Ok(u.clone()),
            None => e.parse::<Uri>().map_err(|err| {
                UpstreamError::Connect(format!(
                    "provider {}: base URL {e} is not a URL: {err}",
                    provider.name
                ))
            }),
        }
    }
}

/// The client's request as sent on to an OpenAI-compatible provider: the
/// same object with `model` set to the routed model, serialized straight
/// from the borrowed request (no copy of it).
struct WithModel<'a>(&'a Value, &'a str);

impl serde::Serialize for WithModel<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(fields) = self.0.as_object() else {
            return self.0.serialize(s);
        };
        let others = fields.iter().filter(|(k, _)| k.as_str() != "model");
        let mut map = s.serialize_map(Some(others.clone().count() + 1))?;
        map.serialize_entry("model", self.1)?;
        for (k, v) in others {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

async fn post(
    upstream: &Upstream<'_>,
    provider: &Provider,
    body: &impl serde::Serialize,
    headers: &[(&str, String)],
) -> Result<crate::upstream::Answer, UpstreamError> {
    let body = serde_json::to_vec(body)
        .map_err(|e| UpstreamError::Invalid(format!("cannot encode the request: {e}")))?;
    let uri = upstream.endpoints.get(provider)?;
    let timeout = Duration::from_millis(provider.timeout_ms);
    let r = upstream.http.post_json(uri, headers, body, timeout).await?;
    let s = r.status;
    if s.is_server_error() {
        Err(UpstreamError::Server(s.as_u16()))
    } else if s.is_redirection() {
        Err(UpstreamError::Invalid(format!(
            "HTTP {s} (redirects are not followed: set the provider's baseUrl to where it points)"
        )))
    } else if !s.is_success() {
        Err(UpstreamError::Client(
            s.as_u16(),
            r.bytes().await.unwrap_or_default(),
        ))
    } else {
        Ok(r)
    }
}

impl From<CallError> for UpstreamError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Timeout => Self::Timeout,
            CallError::Connect(why) => Self::Connect(why),
            CallError::TooLarge => Self::Invalid(e.to_string()),
        }
    }
}

async fn body_bytes(r: crate::upstream::Answer) -> Result<Bytes, UpstreamError> {
    Ok(r.bytes().await?)
}

fn parse(bytes: &[u8]) -> Result<Value, UpstreamError> {
    serde_json::from_slice(bytes).map_err(|e| UpstreamError::Invalid(format!("not JSON: {e}")))
}

async fn json_body(r: crate::upstream::Answer) -> Result<Value, UpstreamError> {
    parse(&body_bytes(r).await?)
}

/// An OpenAI completion that can be passed on verbatim: a well-formed JSON
/// object that mentions no tool calls (nothing to gate) and no `palisade`
/// key (which the gateway adds).
fn verbatim(bytes: &[u8]) -> bool {
    let mentions = |needle: &[u8]| memchr::memmem::find(bytes, needle).is_some();
    bytes.trim_ascii_start().first() == Some(&b'{')
        && !mentions(b"\"tool_calls\"")
        && !mentions(b"\"palisade\"")
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// `Authorization: Bearer <key>` when the provider has credentials.
fn bearer(provider: &Provider) -> Vec<(&'static str, String)> {
    provider
        .api_key
        .iter()
        .map(|k| ("authorization", format!("Bearer {}", k.expose())))
        .collect()
}

/// How to reach the providers: the shared HTTP client (its connection
/// pools) and the configuration's parsed endpoints.
#[derive(Debug)]
pub struct Upstream<'a> {
    pub http: &'a HttpClient,
    pub endpoints: &'a Endpoints,
}

/// Sends an OpenAI-shaped chat request to `provider` asking for `model`.
pub async fn call(
    upstream: &Upstream<'_>,
    provider: &Provider,
    model: &str,
    request: &Value,
) -> Result<Answer, UpstreamError> {
    let stream = request["stream"].as_bool().unwrap_or(false);
    match provider.kind {
        ProviderKind::OpenAi => {
            let auth = bearer(provider);
            let body = WithModel(request, model);
            let r = post(upstream, provider, &body, &auth).await?;
            if stream {
                Ok(Answer::Stream(r.bytes_stream().boxed()))
            } else {
                let bytes = body_bytes(r).await?;
                if verbatim(&bytes) {
                    Ok(Answer::Verbatim(bytes))
                } else {
                    Ok(Answer::Completion(parse(&bytes)?))
                }
            }
        }
        ProviderKind::Ollama => {
            let body = ollama::request(request, model);
            let auth = bearer(provider);
            let r = post(upstream, provider, &body, &auth).await?;
            if stream {
                Ok(Answer::Stream(ollama::stream(
                    r.bytes_stream(),
                    model.to_owned(),
                )))
            } else {
                Ok(Answer::Completion(ollama::completion(
                    &json_body(r).await?,
                    model,
                )))
            }
        }
        ProviderKind::Anthropic => {
            let body = anthropic::request(request, model);
            let mut headers = vec![("anthropic-version", ANTHROPIC_VERSION.to_owned())];
            if let Some(k) = &provider.api_key {
                headers.push(("x-api-key", k.expose().to_owned()));
            }
            let r = post(upstream, provider, &body, &headers).await?;
            if stream {
                Ok(Answer::Stream(anthropic::stream(
                    r.bytes_stream(),
                    model.to_owned(),
                )))
            } else {
                Ok(Answer::Completion(anthropic::completion(
                    &json_body(r).await?,
                    model,
                )))
            }
        }
    }
}

fn created() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>) -> Bytes {
    let c = json!({
        "id": id, "object": "chat.completion.chunk", "created": created(), "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    Bytes::from(format!("data: {c}\n\n"))
}

/// Tool calls as the deltas of a streamed chunk carry them: each with
/// its position as `index`.
pub fn indexed(calls: Vec<Value>) -> Vec<Value> {
    calls
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c["index"] = json!(i);
            c
        })
        .collect()
}

fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// Splits a byte stream into lines, statefully.
fn lines(
    upstream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> BoxStream<'static, Result<String, std::io::Error>> {
    let mut buf: Vec<u8> = Vec::new();
    upstream
        .map_ok(move |bytes| {
            buf.extend_from_slice(&bytes);
            let mut out = Vec::new();
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                out.push(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            futures_util::stream::iter(out.into_iter().map(Ok))
        })
        .try_flatten()
        .boxed()
}

/// OpenAI message content as plain text (string or text parts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

// === Ollama native API ===

mod ollama {
    use super::*;

    /// OpenAI request → `/api/chat` request.
    pub fn request(req: &Value, model: &str) -> Value {
        let messages: Vec<Value> = req["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let mut out = json!({"role": m["role"], "content": text_of(&m["content"])});
                if let Some(calls) = m["tool_calls"].as_array() {
                    out["tool_calls"] = Value::Array(
                        calls
                            .iter()
                            .map(|c| {
                                let args: Value = c["function"]["arguments"].as_str().and_then(|a| serde_json::from_str(a).ok()).unwrap_or(json!({}));
                                json!({"function": {"name": c["function"]["name"], "arguments": args}})
                            })
                            .collect(),
                    );
                }
                out
            })
            .collect();
        let mut options = Map::new();
        for (openai, ollama) in [
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("seed", "seed"),
            ("stop", "stop"),
            ("max_tokens", "num_predict"),
            ("max_completion_tokens", "num_predict"),
        ] {
            if let Some(v) = req.get(openai).filter(|v| !v.is_null()) {
                options.insert(ollama.into(), v.clone());
            }
        }
        let mut body = json!({"model": model, "messages": messages, "stream": req["stream"].as_bool().unwrap_or(false)});
        if !options.is_empty() {
            body["options"] = Value::Object(options);
        }
        if let Some(tools) = req.get("tools").filter(|t| t.is_array()) {
            body["tools"] = tools.clone();
        }
        body
    }

    fn tool_calls(message: &Value) -> Option<Vec<Value>> {
        let calls = message["tool_calls"].as_array()?;
        Some(
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"id": format!("call_{i}"), "type": "function",
                           "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"].to_string()}})
                })
                .collect(),
        )
    }

    fn finish(r: &Value, has_tools: bool) -> &'static str {
        if has_tools {
            "tool_calls"
        } else if r["done_reason"] == "length" {
            "length"
        } else {
            "stop"
        }
    }

    /// `/api/chat` response → chat completion.
    pub fn completion(r: &Value, model: &str) -> Value {
        let calls = tool_calls(&r["message"]);
        let mut message =
            json!({"role": "assistant", "content": r["message"]["content"].as_str().unwrap_or("")});
        if let Some(c) = &calls {
            message["tool_calls"] = Value::Array(c.clone());
        }
        let prompt = r["prompt_eval_count"].as_u64().unwrap_or(0);
        let completion = r["eval_count"].as_u64().unwrap_or(0);
        json!({
            "id": format!("chatcmpl-{}", uuid::Uuid::now_v7().simple()),
            "object": "chat.completion", "created": created(), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish(r, calls.is_some())}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        })
    }

    /// NDJSON stream → OpenAI SSE.
    pub fn stream(
        upstream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        model: String,
    ) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
        let mut started = false;
        let mut saw_tools = false;
        lines(upstream)
            .map_ok(move |line| {
                let mut out: Vec<Bytes> = Vec::new();
                let Ok(r) = serde_json::from_str::<Value>(&line) else {
                    return futures_util::stream::iter(out.into_iter().map(Ok));
                };
                if !started {
                    started = true;
                    out.push(chunk(
                        &id,
                        &model,
                        json!({"role": "assistant", "content": ""}),
                        None,
                    ));
                }
                if let Some(text) = r["message"]["content"].as_str().filter(|t| !t.is_empty()) {
                    out.push(chunk(&id, &model, json!({"content": text}), None));
                }
                if let Some(calls) = tool_calls(&r["message"]) {
                    saw_tools = true;
                    out.push(chunk(
                        &id,
                        &model,
                        json!({"tool_calls": indexed(calls)}),
                        None,
                    ));
                }
                if r["done"].as_bool() == Some(true) {
                    out.push(chunk(&id, &model, json!({}), Some(finish(&r, saw_tools))));
                    out.push(done());
                }
                futures_util::stream::iter(out.into_iter().map(Ok))
            })
            .try_flatten()
            .boxed()
    }
}

// === Anthropic Messages API ===

mod anthropic {
    use super::*;

    /// OpenAI request → Messages request.
    pub fn request(req: &Value, model: &str) -> Value {
        let mut system = Vec::new();
        let mut messages: Vec<Value> = Vec::new();
        for m in req["messages"].as_array().into_iter().flatten() {
            match m["role"].as_str().unwrap_or("user") {
                "system" | "developer" => system.push(text_of(&m["content"])),
                "tool" => messages.push(json!({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": text_of(&m["content"])}
                ]})),
                "assistant" => {
                    let mut blocks = Vec::new();
                    let text = text_of(&m["content"]);
                    if !text.is_empty() {
                        blocks.push(json!({"type": "text", "text": text}));
                    }
                    for c in m["tool_calls"].as_array().into_iter().flatten() {
                        let input: Value = c["function"]["arguments"].as_str().and_then(|a| serde_json::from_str(a).ok()).unwrap_or(json!({}));
                        blocks.push(json!({"type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": input}));
                    }
                    messages.push(json!({"role": "assistant", "content": blocks}));
                }
                _ => messages.push(json!({"role": "user", "content": text_of(&m["content"])})),
            }
        }
        let max_tokens = req["max_completion_tokens"]
            .as_u64()
            .or_else(|| req["max_tokens"].as_u64())
            .unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS);
        let mut body = json!({"model": model, "max_tokens": max_tokens, "messages": messages, "stream": req["stream"].as_bool().unwrap_or(false)});
        if !system.is_empty() {
            body["system"] = json!(system.join("\n"));
        }
        for (openai, anthropic) in [
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("stop", "stop_sequences"),
        ] {
            if let Some(v) = req.get(openai).filter(|v| !v.is_null()) {
                body[anthropic] = if anthropic == "stop_sequences" && v.is_string() {
                    json!([v])
                } else {
                    v.clone()
                };
            }
        }
        if let Some(tools) = req["tools"].as_array() {
            body["tools"] = Value::Array(
                tools
                    .iter()
                    .map(|t| json!({"name": t["function"]["name"], "description": t["function"]["description"].as_str().unwrap_or(""), "input_schema": t["function"].get("parameters").cloned().unwrap_or(json!({"type": "object"}))}))
                    .collect(),
            );
        }
        body
    }

    fn finish(stop_reason: &str) -> &'static str {
        match stop_reason {
            "tool_use" => "tool_calls",
            "max_tokens" => "length",
            _ => "stop",
        }
    }

    /// Messages response → chat completion.
    pub fn completion(r: &Value, model: &str) -> Value {
        let mut text = String::new();
        let mut calls = Vec::new();
        for block in r["content"].as_array().into_iter().flatten() {
            match block["type"].as_str() {
                Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
                Some("tool_use") => calls.push(json!({"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": block["input"].to_string()}})),
                _ => {}
            }
        }
        let mut message = json!({"role": "assistant", "content": text});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        let input = r["usage"]["input_tokens"].as_u64().unwrap_or(0);
        let output = r["usage"]["output_tokens"].as_u64().unwrap_or(0);
        json!({
            "id": r["id"], "object": "chat.completion", "created": created(), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish(r["stop_reason"].as_str().unwrap_or(""))}],
            "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}
        })
    }

    /// Messages SSE → OpenAI SSE.
    pub fn stream(
        upstream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        model: String,
    ) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
        let mut id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
        // Content block index → OpenAI tool-call index.
        let mut tool_index: Vec<(u64, usize)> = Vec::new();
        lines(upstream)
            .map_ok(move |line| {
                let mut out: Vec<Bytes> = Vec::new();
                let Some(data) = line.strip_prefix("data:").map(str::trim) else { return futures_util::stream::iter(out.into_iter().map(Ok)) };
                let Ok(e) = serde_json::from_str::<Value>(data) else { return futures_util::stream::iter(out.into_iter().map(Ok)) };
                match e["type"].as_str().unwrap_or("") {
                    "message_start" => {
                        if let Some(mid) = e["message"]["id"].as_str() {
                            id = mid.to_string();
                        }
                        out.push(chunk(&id, &model, json!({"role": "assistant", "content": ""}), None));
                    }
                    "content_block_start" if e["content_block"]["type"] == "tool_use" => {
                        let block = e["index"].as_u64().unwrap_or(0);
                        let i = tool_index.len();
                        tool_index.push((block, i));
                        out.push(chunk(&id, &model, json!({"tool_calls": [{"index": i, "id": e["content_block"]["id"], "type": "function",
                            "function": {"name": e["content_block"]["name"], "arguments": ""}}]}), None));
                    }
                    "content_block_delta" => {
                        let block = e["index"].as_u64().unwrap_or(0);
                        match e["delta"]["type"].as_str() {
                            Some("text_delta") => out.push(chunk(&id, &model, json!({"content": e["delta"]["text"]}), None)),
                            Some("input_json_delta") => {
                                if let Some((_, i)) = tool_index.iter().find(|(b, _)| *b == block) {
                                    out.push(chunk(&id, &model, json!({"tool_calls": [{"index": i, "function": {"arguments": e["delta"]["partial_json"]}}]}), None));
                                }
                            }
                            _ => {}
                        }
                    }
                    "message_delta" => {
                        if let Some(reason) = e["delta"]["stop_reason"].as_str() {
                            out.push(chunk(&id, &model, json!({}), Some(finish(reason))));
                        }
                    }
                    "message_stop" => out.push(done()),
                    _ => {}
                }
                futures_util::stream::iter(out.into_iter().map(Ok))
            })
            .try_flatten()
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_objects_without_tool_calls_pass_verbatim() {
        let plain = br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;
        assert!(verbatim(plain));
        assert!(verbatim(b"  {}"));
        let calls = br#"{"choices":[{"message":{"tool_calls":[{"id":"1"}]}}]}"#;
        assert!(!verbatim(calls), "tool calls must be gated");
        assert!(
            !verbatim(br#"{"palisade":1}"#),
            "the gateway's own key is not taken over"
        );
        assert!(!verbatim(br#"{"id":"c","#), "not JSON");
        assert!(!verbatim(b"[1]"), "not an object");
        assert!(!verbatim(br#"{"a":1} trailing"#));
    }

    #[test]
    fn anthropic_requests_take_system_tools_and_tool_results_apart() {
        let req = json!({
            "model": "x", "max_tokens": 100, "temperature": 0.3, "stop": "END",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
        });
        let body = anthropic::request(&req, "claude-x");
        assert_eq!(body["system"], "be brief");
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(
            body["messages"][1]["content"][0],
            json!({"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}})
        );
        assert_eq!(body["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(
            body["tools"][0],
            json!({"name": "f", "description": "d", "input_schema": {"type": "object"}})
        );
    }

    #[test]
    fn anthropic_answers_become_chat_completions() {
        let r = json!({"id": "msg_1", "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "tu1", "name": "sql_query", "input": {"q": 1}}],
                       "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4}});
        let c = anthropic::completion(&r, "claude-x");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"],
            json!({"name": "sql_query", "arguments": "{\"q\":1}"})
        );
        assert_eq!(c["usage"]["total_tokens"], 7);
    }

    #[test]
    fn ollama_requests_map_options_and_tool_arguments() {
        let req = json!({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\":1}"}}]}], "max_tokens": 50, "temperature": 0.1, "stream": true});
        let body = ollama::request(&req, "llama3.1");
        assert_eq!(
            body["options"],
            json!({"num_predict": 50, "temperature": 0.1})
        );
        assert_eq!(
            body["messages"][0]["tool_calls"][0]["function"]["arguments"],
            json!({"a": 1})
        );
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn endpoints_are_parsed_once_per_configuration_and_bad_ones_named() {
        let yaml = r#"
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: p}
spec:
  agents: [{name: a, serviceAccount: a}]
  providers:
    - {name: vllm, type: openai, baseUrl: "http://vllm:8000/v1/"}
    - {name: local, type: ollama, baseUrl: "http://ollama:11434"}
    - {name: claude, type: anthropic, baseUrl: "https://api.anthropic.com"}
  routing: {defaultProvider: vllm}
"#;
        let sources = [palisade_crds::standalone::Source {
            name: "p.yaml",
            text: yaml,
        }];
        let (_, compiled, _) =
            palisade_crds::standalone::load(&sources, &|_| None, jiff::Timestamp::now()).unwrap();
        let bundle = compiled.bundle;
        let endpoints = Endpoints::of(&bundle);
        let providers = &bundle.policies()[0].providers;
        let got: Vec<String> = providers
            .iter()
            .map(|p| endpoints.get(p).unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "http://vllm:8000/v1/chat/completions",
                "http://ollama:11434/api/chat",
                "https://api.anthropic.com/v1/messages"
            ]
        );
        assert_eq!(endpoints.0.len(), 3, "all parsed up front");

        // A provider the configuration did not hold: parsed on the spot,
        // or refused naming the provider and its URL.
        let mut stray = providers[0].clone();
        stray.base_url = "http://other:9".into();
        assert_eq!(
            endpoints.get(&stray).unwrap().to_string(),
            "http://other:9/v1/chat/completions"
        );
        stray.base_url = "not a url".into();
        let Err(UpstreamError::Connect(message)) = endpoints.get(&stray) else {
            panic!("a bad base URL is a connect error");
        };
        assert!(
            message.contains("provider vllm") && message.contains("not a url"),
            "{message}"
        );
    }

    #[test]
    fn base_urls_with_or_without_v1_both_work() {
        assert_eq!(
            url("https://api.openai.com", "/v1/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            url("http://vllm:8000/v1/", "/v1/chat/completions"),
            "http://vllm:8000/v1/chat/completions"
        );
        assert_eq!(
            url("http://ollama:11434", "/api/chat"),
            "http://ollama:11434/api/chat"
        );
    }
}
