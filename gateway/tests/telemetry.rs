//! Traces over OTLP: the real gateway binary with `--otlp-endpoint` sends
//! a span per routed request and per tool-call decision to an OTLP/HTTP
//! receiver the test runs — the
//! child of the agent's `traceparent`, with the GenAI and decision
//! attributes and never the prompt — and the provider gets the span's
//! `traceparent`. Without `--otlp-endpoint` the agent's is passed on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use palisade_fake_upstreams::{FakeOpenAi, Script};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const AGENTS_SPAN: &str = "00f067aa0ba902b7";
const MARKER: &str = "PROMPT-MARKER-7731";

/// An OTLP/HTTP (JSON) receiver: every body posted to `/v1/traces`.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(got): State<Arc<Mutex<Vec<Value>>>>, body: axum::body::Bytes| async move {
                    got.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    axum::Json(json!({}))
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// One chat request carrying the agent's `traceparent`, to a gateway
/// started with `extra` flags, stopped with SIGTERM (which flushes its
/// spans); what the provider received.
async fn traced_chat(name: &str, extra: &[&str]) -> Vec<palisade_fake_upstreams::Received> {
    let fake = FakeOpenAi::start(Script::Text("ok".into())).await.unwrap();
    let dir = palisade_testkit::temp_dir(name);
    let config = dir.join("p.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: AIPolicy\nmetadata: {{name: p}}\nspec:\n  agents: [{{name: a, apiKeySecretRef: {{name: k, key: a}}}}]\n  providers: [{{name: cloud, type: openai, baseUrl: \"{}\"}}]\n  routing: {{defaultProvider: cloud}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: k}}\nstringData: {{a: key-a}}\n",
            fake.base_url()
        ),
    )
    .unwrap();
    let mut args = vec![
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let (mut gateway, addr) = common::spawn_gateway(&args);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth("key-a")
        .header("traceparent", format!("00-{TRACE}-{AGENTS_SPAN}-01"))
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": MARKER}]})
                .to_string(),
        )
        .send()
        .await;
    // A tool-call decision (the policy's default: deny), in the same trace.
    let tool = reqwest::Client::new()
        .post(format!("http://{addr}/v1/tool-calls"))
        .bearer_auth("key-a")
        .header("traceparent", format!("00-{TRACE}-{AGENTS_SPAN}-01"))
        .header("content-type", "application/json")
        .body(json!({"tool": "lookup", "arguments": {"q": MARKER}}).to_string())
        .send()
        .await;
    // Stopped before anything is asserted, so a failure leaves nothing running.
    std::process::Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .unwrap();
    let exit = tokio::task::spawn_blocking(move || gateway.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.unwrap().status(), 200);
    assert_eq!(tool.unwrap().status(), 403);
    assert!(exit.success(), "{exit:?}");
    fake.received()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_request_is_one_span_in_the_agents_trace_and_the_provider_continues_it() {
    let (url, got) = receiver().await;
    let sent = traced_chat("otlp", &["--otlp-endpoint", &url]).await;
    let exports = got.lock().unwrap().clone();
    let all = serde_json::to_string(&exports).unwrap();
    assert!(!all.contains(MARKER), "no prompt text in a span: {all}");
    let spans: Vec<&Value> = exports
        .iter()
        .flat_map(|e| e["resourceSpans"].as_array().into_iter().flatten())
        .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
        .flat_map(|s| s["spans"].as_array().into_iter().flatten())
        .collect();
    let span = spans
        .iter()
        .find(|s| s["name"] == "chat gpt-4o")
        .unwrap_or_else(|| panic!("no `chat gpt-4o` span in {all}"));
    assert_eq!(span["traceId"], TRACE, "the agent's trace");
    assert_eq!(
        span["parentSpanId"], AGENTS_SPAN,
        "the agent's span is its parent"
    );
    let attribute = |key: &str| {
        span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"]["stringValue"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(attribute("gen_ai.operation.name"), "chat");
    assert_eq!(attribute("gen_ai.request.model"), "gpt-4o");
    assert_eq!(attribute("gen_ai.provider.name"), "cloud");
    assert_eq!(attribute("palisade.decision"), "Allow");
    assert_eq!(attribute("palisade.reason_code"), "routing.default");
    assert_eq!(attribute("palisade.agent"), "a");
    let decided = spans
        .iter()
        .find(|s| s["name"] == "execute_tool lookup")
        .unwrap_or_else(|| panic!("no `execute_tool lookup` span in {all}"));
    assert_eq!(decided["traceId"], TRACE);
    let decision = decided["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "palisade.decision")
        .unwrap();
    assert_eq!(decision["value"]["stringValue"], "Deny");
    // The provider continues the trace from the gateway's span.
    let traceparent = sent[0].traceparent.clone().unwrap();
    assert_eq!(
        traceparent,
        format!("00-{TRACE}-{}-01", span["spanId"].as_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traces_the_agents_traceparent_is_passed_on() {
    let sent = traced_chat("no-otlp", &[]).await;
    assert_eq!(
        sent[0].traceparent.as_deref(),
        Some(format!("00-{TRACE}-{AGENTS_SPAN}-01").as_str())
    );
}

#[test]
fn an_https_collector_is_refused_at_start_naming_the_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([
            "run",
            "--config",
            "/nonexistent.yaml",
            "--otlp-endpoint",
            "https://collector:4318",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--otlp-endpoint https://collector:4318") && err.contains("http://"),
        "{err}"
    );
}
