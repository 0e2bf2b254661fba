//! Fake model providers that speak the real wire protocols, on loopback,
//! for tests and benchmarks. So far: an OpenAI-compatible
//! `/v1/chat/completions` (JSON, and SSE when `stream: true`) whose answer
//! each test scripts, and which records every request it received.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
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
    /// An HTTP error status with an OpenAI error body.
    Status(u16),
    /// Wait this long before answering (to trip timeouts).
    Slow(Duration),
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub authorization: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    script: Option<Script>,
    received: Vec<Received>,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            script: Some(script),
            received: Vec::new(),
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(Arc::clone(&inner));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
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

    pub fn set_script(&self, script: Script) {
        self.lock().script = Some(script);
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
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    })
}

fn chunk(model: &str, delta: Value, finish: Option<&str>) -> String {
    let c = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {c}\n\n")
}

async fn completions(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let script = {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        g.received.push(Received {
            body: body.clone(),
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        });
        g.script.clone().unwrap_or(Script::Text("ok".into()))
    };
    let model = body["model"].as_str().unwrap_or("").to_string();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let (message, finish) = match script {
        Script::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, axum::Json(json!({"error": {"message": "scripted failure", "type": "server_error", "code": null}}))).into_response();
        }
        Script::Slow(d) => {
            tokio::time::sleep(d).await;
            (json!({"role": "assistant", "content": "slow"}), "stop")
        }
        Script::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
        Script::ToolCalls(calls) => {
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| json!({"id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
                .collect();
            (
                json!({"role": "assistant", "content": null, "tool_calls": tool_calls}),
                "tool_calls",
            )
        }
    };
    if !stream {
        return axum::Json(completion(&model, message, finish)).into_response();
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
    if let Some(calls) = message["tool_calls"].as_array() {
        for (i, call) in calls.iter().enumerate() {
            let args = call["function"]["arguments"].as_str().unwrap_or("{}");
            let (a, b) = args.split_at(args.len() / 2);
            events.push(chunk(&model, json!({"tool_calls": [{"index": i, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": a}}]}), None));
            events.push(chunk(
                &model,
                json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]}),
                None,
            ));
        }
    }
    events.push(chunk(&model, json!({}), Some(finish)));
    events.push("data: [DONE]\n\n".into());
    let stream = futures_util::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, std::convert::Infallible>(Bytes::from(e))),
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
