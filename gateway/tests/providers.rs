//! What the gateway sends to providers and what it passes back: only to
//! URLs the platform allows, credentials never over plain `http://` unless
//! allowed, and a provider's refusal never echoed verbatim.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use palisade_fake_upstreams::{FakeOpenAi, Script};
use palisade_gateway::router::app;
use palisade_gateway::state::AppState;
use palisade_policy::Egress;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "agent-key";

/// `keyed` (an OpenAI-compatible provider with credentials, the default
/// route) and `open` (one without, for models `open-*`), both fakes on
/// plain HTTP; the gateway reaches what `egress` allows.
async fn state(name: &str, keyed: &FakeOpenAi, open: &FakeOpenAi, egress: Egress) -> AppState {
    let yaml = format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: p, namespace: ns}}
spec:
  agents: [{{name: a, apiKeySecretRef: {{name: k, key: a}}}}]
  providers:
    - {{name: keyed, type: openai, baseUrl: "{keyed}", credentialsSecretRef: {{name: k, key: upstream}}}}
    - {{name: open, type: openai, baseUrl: "{open}"}}
  routing:
    defaultProvider: keyed
    rules: [{{models: ["open-*"], provider: open}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: k, namespace: ns}}
stringData: {{a: {KEY}, upstream: sk-upstream-0123456789}}
"#,
        keyed = keyed.base_url(),
        open = open.base_url(),
    );
    common::standalone_config(&format!("providers-{name}"), &yaml, egress).await
}

async fn chat(state: &AppState, model: &str) -> (u16, Value) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

async fn fakes() -> (FakeOpenAi, FakeOpenAi) {
    (
        FakeOpenAi::start(Script::Text("keyed answer".into()))
            .await
            .unwrap(),
        FakeOpenAi::start(Script::Text("open answer".into()))
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn credentials_never_go_over_plain_http_unless_the_admin_allows_it() {
    let (keyed, open) = fakes().await;
    let s = state("plaintext", &keyed, &open, Egress::any_url(false)).await;
    let (status, body) = chat(&s, "gpt-4o").await;
    assert_eq!(
        (status, code(&body)),
        (502, "upstream.not_allowed"),
        "{body}"
    );
    assert!(
        keyed.received().is_empty(),
        "the key went out over plain HTTP"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("keyed") && !message.contains("127.0.0.1"),
        "names the provider, not its URL: {message}"
    );
    // A provider without credentials is reached over plain HTTP.
    let (status, body) = chat(&s, "open-llama").await;
    assert_eq!(status, 200, "{body}");

    // The admin allows it (--allow-plaintext-credentials).
    let s = state("plaintext-allowed", &keyed, &open, Egress::any_url(true)).await;
    let (status, body) = chat(&s, "gpt-4o").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keyed.received()[0].authorization.as_deref(),
        Some("Bearer sk-upstream-0123456789")
    );
}

#[tokio::test]
async fn provider_urls_off_the_allow_list_are_never_connected_to() {
    let (keyed, open) = fakes().await;
    // The chart's default list: 127.0.0.1 is on it for neither provider.
    let s = state("allow-list", &keyed, &open, Egress::default()).await;
    for model in ["gpt-4o", "open-llama"] {
        let (status, body) = chat(&s, model).await;
        assert_eq!(
            (status, code(&body)),
            (502, "upstream.not_allowed"),
            "{model}: {body}"
        );
    }
    assert!(keyed.received().is_empty() && open.received().is_empty());

    // Only `open`'s port allowed.
    let only_open = Egress::new(&[open.base_url()], true).unwrap();
    let s = state("allow-list-open", &keyed, &open, only_open).await;
    assert_eq!(chat(&s, "open-llama").await.0, 200);
    assert_eq!(code(&chat(&s, "gpt-4o").await.1), "upstream.not_allowed");
    assert!(keyed.received().is_empty());
}

#[tokio::test]
async fn a_providers_refusal_is_bounded_sanitised_and_keeps_its_code() {
    let (keyed, open) = fakes().await;
    let s = state("refusal", &keyed, &open, Egress::any_url(true)).await;
    let echoed = format!(
        "Incorrect API key provided: sk-upstream-0123456789.\n<html>{}</html>",
        "internal detail ".repeat(500)
    );
    keyed.set_script(Script::Refuse(
        401,
        json!({"error": {"message": echoed, "type": "invalid_request_error", "code": "invalid_api_key"}}),
    ));
    let (status, body) = chat(&s, "gpt-4o").await;
    assert_eq!((status, code(&body)), (401, "upstream.rejected"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("provider keyed refused the request with HTTP 401: Incorrect API key provided: [redacted]."),
        "{message}"
    );
    assert!(
        !message.contains("sk-upstream") && !message.contains('\n'),
        "{message}"
    );
    assert!(
        message.chars().count() < 300,
        "not bounded: {} chars",
        message.chars().count()
    );
    assert_eq!(
        body["palisade"]["providerCode"], "invalid_api_key",
        "{body}"
    );

    // Not JSON at all: the status and who refused, nothing of the body.
    keyed.set_script(Script::Refuse(
        403,
        json!("<html>proxy says no, token=abc</html>"),
    ));
    let (status, body) = chat(&s, "gpt-4o").await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["message"],
        "provider keyed refused the request with HTTP 403"
    );
}

#[test]
fn a_bad_allow_list_stops_the_gateway_naming_the_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([
            "run",
            "--config",
            "/nonexistent.yaml",
            "--allowed-provider-urls",
            "api.openai.com",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allowed-provider-urls") && err.contains("SCHEME://HOST"),
        "{err}"
    );
}
