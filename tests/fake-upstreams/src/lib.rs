//! Fake model providers that speak the real wire protocols, on loopback,
//! for tests and benchmarks. One server answers all three APIs with the
//! answer each test scripts, and records every request it received:
//!
//! - OpenAI `POST /v1/chat/completions` (JSON, or SSE with `stream: true`);
//! - Ollama `POST /api/chat` (JSON, or NDJSON with `stream: true`);
//! - Anthropic `POST /v1/messages` (JSON, or SSE events with `stream: true`);
//! - [`catalog`]: model lists (`GET /v1/models`, `GET /api/tags`) and
//!   embeddings (`POST /v1/embeddings`, `POST /api/embed`).
//!
//! [`python`]: the official `openai` Python SDK, as a client for tests.
//! [`mcp`]: a real MCP server built with the official MCP Python SDK.

pub mod catalog;
pub mod mcp;
pub mod python;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake answers.
#[derive(Debug, Clone)]
pub enum Script {
    /// A normal answer with this assistant text.
    Text(String),
    /// The model proposes these tool calls: `(name, arguments JSON)`.
    ToolCalls(Vec<(String, Value)>),
    /// The model proposes these tool calls with these exact argument texts
    /// (OpenAI API only): `(name, arguments text)`, which need not be JSON.
    RawToolCalls(Vec<(String, String)>),
    /// An HTTP error status with an OpenAI error body.
    Status(u16),
    /// An HTTP error status with this JSON body.
    Refuse(u16, Value),
    /// Wait this long before answering (to trip timeouts).
    Slow(Duration),
    /// Plays these in turn, one a request (the last one from then on): a
    /// model that proposes a call, then answers with text.
    Sequence(Vec<Script>),
    /// `307 Temporary Redirect` to this URL.
    Redirect(String),
    /// Answers `ok` (OpenAI API) with usage reporting this many completion
    /// tokens, streamed or not: a model that suddenly writes at length.
    Verbose(u64),
    /// For benchmarks: answer `ok` at once, except that a model named
    /// `slow-<N>ms` answers after N ms; a streamed answer sends its role
    /// chunk at once, then `chunks` content chunks `interval` apart.
    Bench { chunks: usize, interval: Duration },
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `openai`, `ollama` or `anthropic`: which chat API was called; or
    /// `models`, `ollama-tags`, `openai-embeddings`, `ollama-embed`.
    pub api: &'static str,
    pub body: Value,
    pub authorization: Option<String>,
    /// Anthropic's `x-api-key` and `anthropic-version` headers.
    pub x_api_key: Option<String>,
    pub anthropic_version: Option<String>,
    /// The W3C `traceparent` the call carried.
    pub traceparent: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    script: Option<Script>,
    /// What the model lists name.
    models: Vec<String>,
    received: Vec<Received>,
    /// Benchmarks turn recording off so memory stays flat under load.
    quiet: bool,
    /// Requests answered since the script was set (for `Sequence`).
    played: usize,
}

/// A running fake OpenAI-compatible server; stops when dropped.
#[derive(Debug)]
pub struct FakeOpenAi {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeOpenAi {
    pub async fn start(script: Script) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", script).await
    }

    /// Like [`FakeOpenAi::start`] on a given address.
    pub async fn start_on(addr: &str, script: Script) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            script: Some(script),
            models: ["gpt-4o", "gpt-4o-mini", "llama3.1:8b"]
                .map(String::from)
                .to_vec(),
            received: Vec::new(),
            quiet: false,
            played: 0,
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/api/chat", post(ollama_chat))
            .route("/v1/messages", post(anthropic_messages))
            .route("/v1/models", get(catalog::list_models))
            .route("/api/tags", get(catalog::ollama_tags))
            .route("/v1/embeddings", post(catalog::embeddings))
            .route("/api/embed", post(catalog::ollama_embed))
            .with_state(Arc::clone(&inner));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Small SSE events go out at once, as from a real provider's edge.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            inner,
            shutdown: Some(tx),
        })
    }

    /// `http://127.0.0.1:PORT` (the base URL a policy names).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops recording requests (for load tests).
    pub fn quiet(&self) {
        let mut g = self.lock();
        g.quiet = true;
        g.received.clear();
    }

    /// The models its lists name (by default gpt-4o, gpt-4o-mini and
    /// llama3.1:8b).
    pub fn set_models(&self, models: &[&str]) {
        self.lock().models = models.iter().map(|m| m.to_string()).collect();
    }

    pub fn set_script(&self, script: Script) {
        let mut g = self.lock();
        g.script = Some(script);
        g.played = 0;
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn completion(model: &str, message: Value, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage(7)
    })
}

/// OpenAI's usage object: 5 prompt tokens and `completion` more.
fn usage(completion: u64) -> Value {
    json!({"prompt_tokens": 5, "completion_tokens": completion, "total_tokens": completion + 5})
}

/// The completion tokens a script's answer reports.
fn completion_tokens(script: &Script) -> u64 {
    match script {
        Script::Verbose(n) => *n,
        _ => 7,
    }
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let c = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {c}\n\n")
}

/// Records the request and returns the script to play.
pub(crate) fn receive(
    inner: &Mutex<Inner>,
    api: &'static str,
    headers: &HeaderMap,
    body: &Value,
) -> Script {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    let script = g.script.clone().unwrap_or(Script::Text("ok".into()));
    let script = match script {
        Script::Sequence(steps) => {
            let i = g.played.min(steps.len().saturating_sub(1));
            steps.get(i).cloned().unwrap_or(Script::Text("ok".into()))
        }
        other => other,
    };
    g.played += 1;
    if g.quiet {
        return script;
    }
    g.received.push(Received {
        api,
        body: body.clone(),
        authorization: h(header::AUTHORIZATION.as_str()),
        x_api_key: h("x-api-key"),
        anthropic_version: h("anthropic-version"),
        traceparent: h("traceparent"),
    });
    script
}

fn stream_response(content_type: &'static str, events: Vec<String>) -> Response {
    let stream = futures_util::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, std::convert::Infallible>(Bytes::from(e))),
    );
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// [`Script::Bench`]: an instant or `slow-<N>ms` answer, or a paced stream.
async fn bench_answer(body: &Value, chunks: usize, interval: Duration) -> Response {
    let model = body["model"].as_str().unwrap_or("").to_string();
    let delay = model
        .strip_prefix("slow-")
        .and_then(|m| m.strip_suffix("ms"))
        .and_then(|m| m.parse::<u64>().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if body["stream"].as_bool() != Some(true) {
        let message = json!({"role": "assistant", "content": "ok"});
        return axum::Json(completion(&model, message, "stop")).into_response();
    }
    let mut events = vec![chunk(
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    events.extend((0..chunks).map(|i| chunk(&model, json!({"content": format!("w{i} ")}), None)));
    events.push(chunk(&model, json!({}), Some("stop")));
    events.extend(usage_event(body, &model, 7));
    events.push("data: [DONE]\n\n".into());
    let stream = futures_util::StreamExt::then(
        futures_util::stream::iter(events.into_iter().enumerate()),
        move |(i, event)| async move {
            if (1..=chunks).contains(&i) {
                tokio::time::sleep(interval).await;
            }
            Ok::<_, std::convert::Infallible>(Bytes::from(event))
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Plays `Status`, `Slow` and `Redirect`; `None` means: answer normally.
pub(crate) async fn play_failures(script: &Script) -> Option<Response> {
    match script {
        Script::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some((status, axum::Json(json!({"error": {"message": "scripted failure", "type": "server_error", "code": null}}))).into_response())
        }
        Script::Refuse(code, body) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_REQUEST);
            Some((status, axum::Json(body.clone())).into_response())
        }
        Script::Slow(d) => {
            tokio::time::sleep(*d).await;
            None
        }
        Script::Redirect(to) => Some(
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, to.clone())],
            )
                .into_response(),
        ),
        _ => None,
    }
}

/// The assistant text and the tool calls a script answers with.
fn text_and_calls(script: &Script) -> (String, Vec<(String, Value)>) {
    match script {
        Script::Text(t) => (t.clone(), Vec::new()),
        Script::ToolCalls(calls) => (String::new(), calls.clone()),
        Script::RawToolCalls(_) => (String::new(), Vec::new()),
        Script::Verbose(_) => ("ok".into(), Vec::new()),
        _ => ("slow".into(), Vec::new()),
    }
}

async fn completions(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let script = receive(&inner, "openai", &headers, &body);
    if let Script::Bench { chunks, interval } = script {
        return bench_answer(&body, chunks, interval).await;
    }
    if let Some(r) = play_failures(&script).await {
        return r;
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    let (text, mut calls) = text_and_calls(&script);
    let raw: Vec<(String, String)> = match &script {
        Script::RawToolCalls(raw) => raw.clone(),
        _ => calls
            .drain(..)
            .map(|(name, args)| (name, args.to_string()))
            .collect(),
    };
    let (message, finish) = if raw.is_empty() {
        (json!({"role": "assistant", "content": text}), "stop")
    } else {
        let tool_calls: Vec<Value> = raw
            .iter()
            .enumerate()
            .map(|(i, (name, args))| json!({"id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": args}}))
            .collect();
        (
            json!({"role": "assistant", "content": null, "tool_calls": tool_calls}),
            "tool_calls",
        )
    };
    if body["stream"].as_bool() != Some(true) {
        let mut answer = completion(&model, message, finish);
        answer["usage"] = usage(completion_tokens(&script));
        return axum::Json(answer).into_response();
    }
    // SSE: a role chunk, the content word by word (or tool calls in
    // fragments, as OpenAI sends them), the finish chunk, then [DONE].
    let mut events = vec![chunk(
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    )];
    if let Some(text) = message["content"].as_str() {
        for word in text.split_inclusive(' ') {
            events.push(chunk(&model, json!({"content": word}), None));
        }
    }
    for (i, call) in message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let args = call["function"]["arguments"].as_str().unwrap_or("{}");
        let (a, b) = args.split_at(args.len() / 2);
        events.push(chunk(&model, json!({"tool_calls": [{"index": i, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": a}}]}), None));
        events.push(chunk(
            &model,
            json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]}),
            None,
        ));
    }
    events.push(chunk(&model, json!({}), Some(finish)));
    events.extend(usage_event(&body, &model, completion_tokens(&script)));
    events.push("data: [DONE]\n\n".into());
    stream_response("text/event-stream", events)
}

/// OpenAI's closing usage event (no choices), when the request asked for
/// it with `stream_options.include_usage`.
fn usage_event(body: &Value, model: &str, completion: u64) -> Option<String> {
    (body["stream_options"]["include_usage"].as_bool() == Some(true)).then(|| {
        let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                       "choices": [], "usage": usage(completion)});
        format!("data: {c}\n\n")
    })
}

async fn ollama_chat(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let script = receive(&inner, "ollama", &headers, &body);
    if let Some(r) = play_failures(&script).await {
        return r;
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    let stream = body["stream"].as_bool() == Some(true);
    let (text, calls) = text_and_calls(&script);
    let last = |message: Value| {
        json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "message": message, "done": true,
               "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 7})
    };
    let mut final_message =
        json!({"role": "assistant", "content": if stream { String::new() } else { text.clone() }});
    if !calls.is_empty() {
        final_message["tool_calls"] = Value::Array(
            calls
                .iter()
                .map(|(n, a)| json!({"function": {"name": n, "arguments": a}}))
                .collect(),
        );
    }
    if !stream {
        return axum::Json(last(final_message)).into_response();
    }
    let mut lines: Vec<String> = text
        .split_inclusive(' ')
        .map(|w| format!("{}\n", json!({"model": model, "message": {"role": "assistant", "content": w}, "done": false})))
        .collect();
    lines.push(format!("{}\n", last(final_message)));
    stream_response("application/x-ndjson", lines)
}

async fn anthropic_messages(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let script = receive(&inner, "anthropic", &headers, &body);
    if let Some(r) = play_failures(&script).await {
        return r;
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    let (text, calls) = text_and_calls(&script);
    let stop = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    if body["stream"].as_bool() != Some(true) {
        let mut content = Vec::new();
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
        for (i, (name, input)) in calls.iter().enumerate() {
            content.push(json!({"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": input}));
        }
        return axum::Json(json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": content,
                                 "stop_reason": stop, "usage": {"input_tokens": 5, "output_tokens": 7}}))
        .into_response();
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
               "content": [], "usage": {"input_tokens": 5, "output_tokens": 0}}}),
    )];
    let mut index = 0;
    if !text.is_empty() {
        events.push(ev("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
        for w in text.split_inclusive(' ') {
            events.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": w}})));
        }
        events.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (i, (name, input)) in calls.iter().enumerate() {
        let args = input.to_string();
        let (a, b) = args.split_at(args.len() / 2);
        events.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": {}}}),
        ));
        for part in [a, b] {
            events.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}})));
        }
        events.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    events.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 7}})));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    stream_response("text/event-stream", events)
}
