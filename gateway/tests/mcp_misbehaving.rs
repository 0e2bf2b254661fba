//! MCP servers that misbehave cannot hang or crash the gateway, nor slip
//! an unread result past it (issue 28): one that never answers (the
//! agent gets `504` with a JSON-RPC error at the server's timeout), one
//! whose answer is far too large, one that answers a tool call with broken
//! JSON, one whose event never ends — each answered with a JSON-RPC error
//! (`-32003`) naming what went wrong, and the gateway keeps serving. A
//! kill switch ends an open stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const KEY: &str = "mcp-bad-agent-key";

async fn start_bad_server() -> String {
    let sse = |body: Body| ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response();
    let app = Router::new()
        .route("/slow", post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }))
        .route("/huge", post(|| async {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{}"}}]}}}}"#, "x".repeat(20 * 1024 * 1024));
            ([(header::CONTENT_TYPE, "application/json")], body)
        }))
        .route("/broken", post(|| async {
            ([(header::CONTENT_TYPE, "application/json")], r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"sk-live-leak"#)
        }))
        .route("/endless", post(move || async move {
            // One event that never ends: data lines forever, no blank line.
            let chunks = futures_util::stream::repeat_with(|| Ok::<_, std::io::Error>(axum::body::Bytes::from(format!("data: {}\n", "y".repeat(64 * 1024)))));
            sse(Body::from_stream(chunks))
        }))
        .route("/stream", get(move || async move {
            // The server's own stream: a ping, then silence.
            let first = futures_util::stream::once(async { Ok::<_, std::io::Error>(axum::body::Bytes::from("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n")) });
            let silent = futures_util::stream::pending();
            sse(Body::from_stream(futures_util::StreamExt::chain(first, silent)))
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn config(base: &str, suspended: bool) -> String {
    format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: tools}}
spec:
  agents: [{{name: app, apiKeySecretRef: {{name: keys, key: a}}, suspended: {suspended}}}]
  providers: [{{name: local, type: openai, baseUrl: "http://127.0.0.1:9"}}]
  routing: {{defaultProvider: local}}
  mcpServers:
    - {{name: slow, url: "{base}/slow", timeout: 1s}}
    - {{name: huge, url: "{base}/huge"}}
    - {{name: broken, url: "{base}/broken"}}
    - {{name: endless, url: "{base}/endless", timeout: 20s}}
    - {{name: stream, url: "{base}/stream"}}
  tools: {{default: Allow}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{a: {KEY}}}
"#
    )
}

async fn call(http: &reqwest::Client, url: &str, server: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let resp = http
        .post(format!("{url}/mcp/{server}"))
        .bearer_auth(KEY)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_file", "arguments": {}}}).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    // A JSON answer, or the last event of a stream.
    let last = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&text)
        .to_owned();
    (
        status,
        serde_json::from_str(&last).unwrap_or(Value::String(text.chars().take(300).collect())),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_mcp_server_gets_an_error_not_a_hung_or_crashed_gateway() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = start_bad_server().await;
    let dir = palisade_testkit::temp_dir("mcp-misbehaving");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, config(&base, false)).unwrap();
    let (gateway, addr) = common::spawn_gateway(&[
        "run",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--reload-interval",
        "100ms",
    ]);
    let _gateway = common::Stopped(gateway);
    let url = format!("http://{addr}");
    let http = reqwest::Client::new();

    let (status, body, took) = call(&http, &url, "slow").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], -32003);
    assert_eq!(body["error"]["data"]["reasonCode"], "upstream.timeout");
    assert!(took < Duration::from_secs(5), "{took:?}");

    let (status, body, _) = call(&http, &url, "huge").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["error"]["data"]["reasonCode"],
        "upstream.invalid_response"
    );

    let (status, body, _) = call(&http, &url, "broken").await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], -32003, "{body}");
    assert!(
        !body.to_string().contains("sk-live"),
        "an unread result slipped through: {body}"
    );

    let (status, body, took) = call(&http, &url, "endless").await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], -32003, "{body}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    // Still serving.
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    // A kill switch ends the server's open stream and refuses new requests.
    let mut stream = http
        .get(format!("{url}/mcp/stream"))
        .bearer_auth(KEY)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("notifications/message"));
    std::fs::write(&path, config(&base, true)).unwrap();
    let switched = Instant::now();
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("kill switch"), "{rest}");
    assert!(
        switched.elapsed() < Duration::from_secs(5),
        "{:?}",
        switched.elapsed()
    );
    let (status, body, _) = call(&http, &url, "broken").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["data"]["reasonCode"], "kill_switch.agent");
}
