//! The API beside chat that agents call: `GET /v1/models` (what this agent
//! may use, from what each provider lists), `POST /v1/embeddings` (routed,
//! refused and audited like chat; Ollama translated), and unknown routes
//! answered in OpenAI's error shape. Against fake providers that speak
//! each protocol.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use palisade_audit::{Filter, Migrations, Store};
use palisade_fake_upstreams::catalog::vector_of;
use palisade_fake_upstreams::{FakeOpenAi, Script};
use palisade_gateway::router::app;
use palisade_gateway::state::AppState;
use palisade_policy::Egress;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEY: &str = "agent-key";
const SUSPENDED_KEY: &str = "suspended-key";

/// Three providers, one per protocol, each a fake: `cloud` (OpenAI, the
/// default route), `local` (Ollama; routing rule: the keyword `patient`
/// and models `local-*`), `claude` (Anthropic, with an API key; models
/// `claude-*`), and `gone` (nothing listens there).
struct Providers {
    cloud: FakeOpenAi,
    local: FakeOpenAi,
    claude: FakeOpenAi,
}

impl Providers {
    async fn start() -> Self {
        let fake = async || FakeOpenAi::start(Script::Text("ok".into())).await.unwrap();
        let p = Self {
            cloud: fake().await,
            local: fake().await,
            claude: fake().await,
        };
        p.cloud
            .set_models(&["gpt-4o", "gpt-4o-mini", "o3", "text-embedding-3-small"]);
        p.local
            .set_models(&["llama3.1:8b", "nomic-embed-text", "qwen2.5:72b"]);
        p.claude
            .set_models(&["claude-3-5-sonnet-20241022", "claude-3-opus-20240229"]);
        p
    }

    /// The gateway's state (and its audit directory) serving the policy.
    async fn gateway(&self, name: &str) -> (AppState, std::path::PathBuf) {
        let yaml = format!(
            r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: p, namespace: ns}}
spec:
  agents:
    - {{name: a, apiKeySecretRef: {{name: k, key: a}}}}
    - {{name: off, apiKeySecretRef: {{name: k, key: off}}, suspended: true}}
  models: {{allow: ["gpt-4o*", "text-embedding-*", "llama3.1:*", "nomic-embed-text", "local-*", "claude-3-5-*"]}}
  providers:
    - {{name: cloud, type: openai, baseUrl: "{cloud}"}}
    - {{name: local, type: ollama, baseUrl: "{local}", defaultModel: local-default}}
    - {{name: claude, type: anthropic, baseUrl: "{claude}", credentialsSecretRef: {{name: k, key: anthropic}}}}
    - {{name: gone, type: openai, baseUrl: "http://127.0.0.1:1", timeout: 2s}}
  routing:
    defaultProvider: cloud
    rules:
      - {{name: phi, keywords: [patient], provider: local}}
      - {{name: local-models, models: ["local-*", "nomic-*"], provider: local}}
      - {{name: claude, models: ["claude-*"], provider: claude}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k, namespace: ns}}
stringData: {{a: {KEY}, off: {SUSPENDED_KEY}, anthropic: sk-ant-0123456789}}
"#,
            cloud = self.cloud.base_url(),
            local = self.local.base_url(),
            claude = self.claude.base_url(),
        );
        let name = format!("api-{name}");
        let state = common::standalone_config(&name, &yaml, Egress::any_url(true)).await;
        let dir = std::env::temp_dir().join(format!("palisade-{name}-{}", std::process::id()));
        (state, dir)
    }
}

/// The gateway's audit database, once what it recorded is written.
async fn audit_of(state: &AppState, dir: &std::path::Path) -> Store {
    state.audit.flush().await.unwrap();
    Store::open(
        &format!("sqlite://{}", dir.join("audit.db").display()),
        Migrations::VerifyOnly,
    )
    .await
    .unwrap()
}

async fn send(state: &AppState, request: Request<Body>) -> (u16, Value, axum::http::HeaderMap) {
    let resp = app(state.clone()).oneshot(request).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, headers)
}

async fn models(state: &AppState, key: &str) -> (u16, Value) {
    let req = Request::get("/v1/models")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let (status, body, _) = send(state, req).await;
    (status, body)
}

async fn embed(state: &AppState, body: Value) -> (u16, Value, axum::http::HeaderMap) {
    let req = Request::post("/v1/embeddings")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    send(state, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_lists_the_models_its_policy_allows_from_every_provider() {
    let p = Providers::start().await;
    let (state, _) = p.gateway("models").await;
    let (status, body) = models(&state, KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    let listed: Vec<(String, String)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model", "{m}");
            (
                m["id"].as_str().unwrap().to_owned(),
                m["owned_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = |id: &str, by: &str| (id.to_owned(), by.to_owned());
    // Not o3, qwen2.5:72b nor claude-3-opus (not allowed); the local
    // provider's default model, allowed, although its list lacks it; the
    // unreachable provider left out, not failing the listing.
    assert_eq!(
        listed,
        [
            expect("gpt-4o", "cloud"),
            expect("gpt-4o-mini", "cloud"),
            expect("text-embedding-3-small", "cloud"),
            expect("llama3.1:8b", "local"),
            expect("nomic-embed-text", "local"),
            expect("local-default", "local"),
            expect("claude-3-5-sonnet-20241022", "claude"),
        ]
    );
    // Each provider asked in its own protocol, with its own credentials.
    let asked = |f: &FakeOpenAi| f.received().iter().map(|r| r.api).collect::<Vec<_>>();
    assert_eq!(asked(&p.cloud), ["models"]);
    assert_eq!(asked(&p.local), ["ollama-tags"]);
    let claude = p.claude.received();
    assert_eq!(claude[0].api, "models");
    assert_eq!(claude[0].x_api_key.as_deref(), Some("sk-ant-0123456789"));
    assert!(claude[0].anthropic_version.is_some());

    // A kill switch leaves the agent nothing to list.
    let (status, body) = models(&state, SUSPENDED_KEY).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "kill_switch.agent");
    let (status, _) = models(&state, "nobody's key").await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_routed_by_policy_translated_for_ollama_and_audited() {
    let p = Providers::start().await;
    let (state, dir) = p.gateway("embed").await;

    // Sensitive text stays local: Ollama's /api/embed, answered as
    // OpenAI's list of floats.
    let text = "the patient's medication list";
    let (status, body, headers) = embed(
        &state,
        json!({"model": "nomic-embed-text", "input": [text, "b c"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-palisade-provider"], "local");
    assert_eq!(
        headers["x-palisade-reasons"],
        "routing.keyword,routing.model"
    );
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["embedding"], json!(vector_of(text)));
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(body["palisade"]["provider"], "local");
    let sent = p.local.received();
    assert_eq!(sent[0].api, "ollama-embed");
    assert_eq!(sent[0].body["input"], json!([text, "b c"]));

    // The rest goes to the default provider as the client sent it;
    // base64 (what the SDKs ask for) passes through.
    let (status, body, headers) = embed(
        &state,
        json!({"model": "text-embedding-3-small", "input": "hello world", "encoding_format": "base64", "dimensions": 3}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-palisade-provider"], "cloud");
    assert!(body["data"][0]["embedding"].is_string(), "{body}");
    let sent = p.cloud.received();
    assert_eq!(sent[0].api, "openai-embeddings");
    assert_eq!(sent[0].body["dimensions"], 3);

    // Ollama, asked for base64, gets it too.
    let (_, body, _) = embed(
        &state,
        json!({"model": "local-x", "input": "abc", "encoding_format": "base64"}),
    )
    .await;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(floats, vector_of("abc"));

    // Refused like chat: a model off the allow-list.
    let (status, body, _) = embed(&state, json!({"model": "o3", "input": "x"})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model.not_allowed");
    // Routed to a provider without embeddings: said so, nothing sent.
    let (status, body, _) = embed(&state, json!({"model": "claude-3-5-haiku", "input": "x"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "upstream.unsupported");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("provider claude has no embeddings API"),
        "{message}"
    );
    assert!(p.claude.received().is_empty());
    // Token ids cannot be read by the routing rules: refused, naming input.
    let (status, body, _) = embed(&state, json!({"model": "gpt-4o", "input": [[1, 2, 3]]})).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("input:"), "{message}");

    // Audited as embedding events: the input fingerprinted, not kept.
    let store = audit_of(&state, &dir).await;
    let rows = store.query(&Filter::default()).await.unwrap();
    let kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.event.kind.as_str(), r.event.decision.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("embedding", "Allow"),
            ("embedding", "Allow"),
            ("embedding", "Allow"),
            ("embedding", "Deny"),
            ("embedding", "UpstreamError"),
        ],
        "newest last"
    );
    let first = &rows[0].event;
    assert_eq!(first.provider.as_deref(), Some("local"));
    assert!(first.prompt_sha256.is_some() && first.prompt_text.is_none());
    // With the tokens each provider reported (Ollama's prompt_eval_count).
    assert_eq!(
        (first.input_tokens, first.output_tokens),
        (Some(4), Some(0))
    );
    assert_eq!(rows[1].event.input_tokens, Some(3), "OpenAI's usage");
    assert_eq!(rows[3].event.input_tokens, None, "refused: nothing used");
}

/// Every routed answer's tokens, as its provider reported them, are kept
/// in its audit row and counted per namespace, agent, provider and model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokens_of_each_answer_are_audited_and_counted_per_agent() {
    let p = Providers::start().await;
    let (state, dir) = p.gateway("tokens").await;
    let post = |path: &str, body: Value| {
        Request::post(path)
            .header("content-type", "application/json")
            .header("x-api-key", KEY)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let hello = json!([{"role": "user", "content": "hello"}]);
    for _ in 0..2 {
        let (status, body, _) = send(
            &state,
            post(
                "/v1/chat/completions",
                json!({"model": "gpt-4o", "messages": hello}),
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, _) = send(
        &state,
        post(
            "/v1/messages",
            json!({"model": "claude-3-5-sonnet", "max_tokens": 10, "messages": hello}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 5, "output_tokens": 7})
    );

    let store = audit_of(&state, &dir).await;
    let tokens: Vec<(Option<String>, Option<i64>, Option<i64>)> = store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.event.provider,
                r.event.input_tokens,
                r.event.output_tokens,
            )
        })
        .collect();
    let row = |p: &str| (Some(p.to_owned()), Some(5), Some(7));
    assert_eq!(tokens, [row("cloud"), row("cloud"), row("claude")]);

    // A stream's tokens are known at its end: a `usage` row of the request.
    // From an OpenAI provider the gateway asks for the usage event and,
    // unless the client asked too, does not pass it on.
    let streamed = async |path: &str, body: Value| {
        let resp = app(state.clone()).oneshot(post(path, body)).await.unwrap();
        assert_eq!(resp.status(), 200);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    let plain = streamed(
        "/v1/chat/completions",
        json!({"model": "gpt-4o", "messages": hello, "stream": true}),
    )
    .await;
    assert!(
        plain.ends_with("data: [DONE]\n\n") && !plain.contains("\"usage\""),
        "{plain}"
    );
    let asked = streamed(
        "/v1/chat/completions",
        json!({"model": "gpt-4o", "messages": hello, "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert!(
        asked.contains(r#""choices":[],"#) && asked.contains(r#""prompt_tokens":5"#),
        "{asked}"
    );
    let ollama = streamed(
        "/v1/chat/completions",
        json!({"model": "local-x", "messages": hello, "stream": true}),
    )
    .await;
    assert!(ollama.ends_with("data: [DONE]\n\n"), "{ollama}");
    let anthropic = streamed(
        "/v1/messages",
        json!({"model": "claude-3-5-sonnet", "max_tokens": 10, "messages": hello, "stream": true}),
    )
    .await;
    assert!(
        anthropic.contains(r#""usage":{"input_tokens":5,"output_tokens":7}"#),
        "{anthropic}"
    );
    state.audit.flush().await.unwrap();
    let usage: Vec<(Option<String>, Option<i64>, Option<i64>)> = store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.kind.as_str() == "usage")
        .map(|r| {
            (
                r.event.provider,
                r.event.input_tokens,
                r.event.output_tokens,
            )
        })
        .collect();
    assert_eq!(
        usage,
        [row("cloud"), row("cloud"), row("local"), row("claude")]
    );

    let metrics = state.metrics.render();
    for (line, n) in [
        (
            r#"palisade_tokens_total{agent="a",model="gpt-4o",namespace="ns",provider="cloud",type="input"}"#,
            20,
        ),
        (
            r#"palisade_tokens_total{agent="a",model="gpt-4o",namespace="ns",provider="cloud",type="output"}"#,
            28,
        ),
        (
            r#"palisade_tokens_total{agent="a",model="claude-3-5-sonnet",namespace="ns",provider="claude",type="input"}"#,
            10,
        ),
        (
            r#"palisade_tokens_total{agent="a",model="local-x",namespace="ns",provider="local",type="output"}"#,
            7,
        ),
        // The OpenTelemetry GenAI conventions beside them.
        (
            r#"gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_provider_name="cloud",gen_ai_request_model="gpt-4o",gen_ai_token_type="input"}"#,
            20,
        ),
        (
            r#"gen_ai_server_request_duration_seconds_count{error_type="",gen_ai_operation_name="chat",gen_ai_provider_name="cloud",gen_ai_request_model="gpt-4o"}"#,
            4,
        ),
        (
            r#"gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="cloud",gen_ai_request_model="gpt-4o"}"#,
            2,
        ),
    ] {
        assert!(
            metrics.contains(&format!("{line} {n}\n")),
            "{line} {n} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_openais_error_shape() {
    let p = Providers::start().await;
    let (state, _) = p.gateway("404").await;
    let (status, body, headers) = send(
        &state,
        Request::post("/v1/no-such-thing")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["type"], "not_found_error");
    assert_eq!(headers["x-palisade-reason"], "not_found");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("POST /v1/no-such-thing") && message.contains("/openapi.json"),
        "{message}"
    );

    let (status, body, _) = send(
        &state,
        Request::get("/v1/chat/completions")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(body["error"]["type"], "invalid_request_error");
}
