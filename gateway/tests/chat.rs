//! `POST /v1/chat/completions` against fake OpenAI-compatible providers:
//! routing, fallback, refusals, and tool calls decided before the client
//! sees them, streamed and not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use palisade_audit::{Filter, Store};
use palisade_fake_upstreams::{FakeOpenAi, Script};
use palisade_gateway::config::reload;
use palisade_gateway::metrics::GatewayMetrics;
use palisade_gateway::router::app;
use palisade_gateway::snapshot;
use palisade_gateway::state::AppState;
use palisade_testkit::{Policy, temp_dir};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

const KEY: &str = "intake-key";

struct Setup {
    state: AppState,
    store: Store,
    local: FakeOpenAi,
    cloud: FakeOpenAi,
    /// The policy file, for [`edit_policy`].
    path: std::path::PathBuf,
}

/// A gateway whose policy `clinic` routes to two fake providers; `edit`
/// changes that policy first.
async fn setup(name: &str, edit: impl FnOnce(Policy) -> Policy) -> Setup {
    let local = FakeOpenAi::start(Script::Text("local answer".into()))
        .await
        .unwrap();
    let cloud = FakeOpenAi::start(Script::Text("cloud answer".into()))
        .await
        .unwrap();
    let d = temp_dir(&format!("chat-{name}"));
    let yaml = format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: clinic, namespace: clinic}}
spec:
  agents:
    - name: intake
      apiKeySecretRef: {{name: keys, key: intake}}
  models:
    allow: ["gpt-4o*", "llama*", "claude-sonnet*"]
  providers:
    - name: local
      type: ollama
      baseUrl: {local}
      defaultModel: llama3.1
    - name: cloud
      type: openai
      baseUrl: {cloud}
      credentialsSecretRef: {{name: keys, key: openai}}
    - name: claude
      type: anthropic
      baseUrl: {cloud}
      credentialsSecretRef: {{name: keys, key: anthropic}}
  routing:
    defaultProvider: cloud
    rules:
      - name: claude-models
        models: ["claude-sonnet*"]
        provider: claude
      - name: phi-stays-local
        keywords: [patient]
        provider: local
        model: llama3.1
  tools:
    rules:
      - {{tools: [sql_query], action: Allow}}
      - {{tools: [send_email], action: RequireApproval}}
      - {{tools: [bulk_export], action: Deny}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: clinic}}
stringData: {{intake: {KEY}, openai: sk-upstream, anthropic: sk-ant-upstream}}
"#,
        local = local.base_url(),
        cloud = cloud.base_url(),
    );
    let path = edit(Policy::from_yaml(&yaml)).write_to(&d);
    let metrics = Arc::new(GatewayMetrics::new().unwrap());
    let current = snapshot::empty();
    reload::load_into(std::slice::from_ref(&path), &current, &metrics).unwrap();
    let (state, store) = common::standalone(&d, current, metrics, "operator-token").await;
    Setup {
        state,
        store,
        local,
        cloud,
        path,
    }
}

async fn chat(s: &Setup, body: Value) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    chat_on(&s.state, body).await
}

async fn chat_on(state: &AppState, body: Value) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap()
        .to_vec();
    (status, headers, bytes)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn a_plain_request_goes_to_the_default_provider_with_its_credentials_and_unknown_fields_intact()
 {
    let s = setup("default", |p| p).await;
    let (status, headers, body) = chat(&s, json!({"model": "gpt-4o", "messages": user("What are your opening hours?"), "temperature": 0.2, "x_vendor": {"keep": true}})).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let body = json_of(&body);
    assert_eq!(body["choices"][0]["message"]["content"], "cloud answer");
    assert_eq!(body["palisade"]["provider"], "cloud");
    assert_eq!(body["palisade"]["reasonCodes"], json!(["routing.default"]));
    assert_eq!(headers["x-palisade-provider"], "cloud");
    let sent = &s.cloud.received()[0];
    assert_eq!(sent.authorization.as_deref(), Some("Bearer sk-upstream"));
    assert_eq!(
        (
            sent.body["temperature"].clone(),
            sent.body["x_vendor"].clone()
        ),
        (json!(0.2), json!({"keep": true}))
    );
    assert!(s.local.received().is_empty());
}

#[tokio::test]
async fn a_phi_keyword_routes_to_the_local_model_and_the_prompt_is_audited_as_a_digest() {
    let s = setup("phi", |p| p).await;
    let (status, headers, body) = chat(
        &s,
        json!({"model": "gpt-4o", "messages": user("Summarise the patient's history")}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&body)["choices"][0]["message"]["content"],
        "local answer"
    );
    assert_eq!(
        (
            headers["x-palisade-provider"].to_str().unwrap(),
            headers["x-palisade-reasons"].to_str().unwrap()
        ),
        ("local", "routing.keyword")
    );
    assert_eq!(
        s.local.received()[0].body["model"],
        "llama3.1",
        "the rule's model replaces the requested one"
    );
    assert_eq!(
        s.local.received()[0].authorization,
        None,
        "no cloud key goes to the local provider"
    );
    s.state.audit.flush().await.unwrap();
    let row = s
        .store
        .query(&Filter::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (row.event.provider.as_deref(), row.event.model.as_deref()),
        (Some("local"), Some("llama3.1"))
    );
    assert_eq!(row.event.prompt_chars, Some(32));
    assert!(row.event.prompt_text.is_none());
}

/// Changes the policy of `s` with `edit` and loads it.
fn edit_policy(s: &Setup, edit: impl FnOnce(Policy) -> Policy) {
    let policy = Policy::from_yaml(&std::fs::read_to_string(&s.path).unwrap());
    std::fs::write(&s.path, edit(policy).yaml()).unwrap();
    reload::load_into(
        std::slice::from_ref(&s.path),
        &s.state.config,
        &s.state.metrics,
    )
    .unwrap();
}

#[tokio::test]
async fn provider_failures_are_answered_with_their_own_reason_codes() {
    let s = setup("failures", |p| p).await;
    edit_policy(&s, |p| p.provider_timeout("cloud", "500ms"));
    let hello = json!({"model": "gpt-4o", "messages": user("hello there")});

    // Too slow: 504 once the provider's timeout has passed, not later.
    s.cloud
        .set_script(Script::Slow(std::time::Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let (status, _, body) = chat(&s, hello.clone()).await;
    assert_eq!((status, code_of(&body)), (504, "upstream.timeout".into()));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The client's own mistake: the provider's status and message.
    s.cloud.set_script(Script::Status(400));
    let (status, _, body) = chat(&s, hello.clone()).await;
    assert_eq!((status, code_of(&body)), (400, "upstream.rejected".into()));
    assert_eq!(
        json_of(&body)["error"]["message"],
        "provider cloud refused the request with HTTP 400: scripted failure"
    );

    // A redirect is not followed (the credentials would go along).
    let elsewhere = format!("{}/v1/chat/completions", s.local.base_url());
    s.cloud.set_script(Script::Redirect(elsewhere));
    let (status, _, body) = chat(&s, hello.clone()).await;
    assert_eq!(
        (status, code_of(&body)),
        (502, "upstream.invalid_response".into())
    );
    assert!(s.local.received().is_empty(), "the redirect was followed");

    // An answer too large to hold is refused, not buffered (with time
    // for the fake to send 32 MiB).
    edit_policy(&s, |p| p.provider_timeout("cloud", "60s"));
    s.cloud.set_script(Script::Text(
        "x".repeat(palisade_gateway::http_client::MAX_ANSWER_BYTES),
    ));
    let (status, _, body) = chat(&s, hello.clone()).await;
    assert_eq!(
        (status, code_of(&body)),
        (502, "upstream.invalid_response".into())
    );
    edit_policy(&s, |p| p.provider_timeout("cloud", "500ms"));

    // A stream that outlasts the timeout is cut off at it.
    s.cloud.set_script(Script::Bench {
        chunks: 100,
        interval: std::time::Duration::from_millis(50),
    });
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from(
            json!({"model": "gpt-4o", "messages": user("hello"), "stream": true}).to_string(),
        ))
        .unwrap();
    let started = std::time::Instant::now();
    let resp = app(s.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let streamed = axum::body::to_bytes(resp.into_body(), 1 << 22).await;
    assert!(
        streamed
            .as_ref()
            .map_or(true, |b| !String::from_utf8_lossy(b).contains("[DONE]")),
        "a stream past the timeout ran to its end"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Nobody listening: 502 unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    edit_policy(&s, |p| {
        p.provider_base_url("cloud", &format!("http://127.0.0.1:{port}"))
    });
    let (status, _, body) = chat(&s, hello).await;
    assert_eq!(
        (status, code_of(&body)),
        (502, "upstream.unreachable".into())
    );
}

fn code_of(body: &[u8]) -> String {
    json_of(body)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn a_failing_provider_falls_back_only_when_the_policy_names_a_fallback() {
    let s = setup("nofallback", |p| p).await;
    s.cloud.set_script(Script::Status(503));
    let (status, _, body) = chat(
        &s,
        json!({"model": "gpt-4o", "messages": user("hello there")}),
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(json_of(&body)["error"]["code"], "upstream.error");

    let s = setup("fallback2", |p| p).await;
    // The same policy with a fallback provider.
    edit_policy(&s, |p| p.fallback_provider("local"));
    s.cloud.set_script(Script::Status(500));
    let (status, headers, body) = chat(
        &s,
        json!({"model": "gpt-4o", "messages": user("hello there")}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        json_of(&body)["choices"][0]["message"]["content"],
        "local answer"
    );
    assert_eq!(
        headers["x-palisade-reasons"],
        "routing.default,routing.fallback"
    );
}

#[tokio::test]
async fn refusals_name_their_reason() {
    let s = setup("refuse", |p| p).await;
    let (status, _, body) = chat(&s, json!({"model": "claude-3", "messages": user("hi")})).await;
    assert_eq!(
        (status, json_of(&body)["error"]["code"].clone()),
        (403, json!("model.not_allowed"))
    );
    let (status, _, body) = chat(&s, json!({"model": "gpt-4o"})).await;
    assert_eq!(status, 400);
    assert!(
        json_of(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("messages:")
    );
    let suspended = setup("suspended", Policy::suspended).await;
    let (status, _, body) = chat(
        &suspended,
        json!({"model": "gpt-4o", "messages": user("hi")}),
    )
    .await;
    assert_eq!(
        (status, json_of(&body)["error"]["code"].clone()),
        (403, json!("kill_switch.policy"))
    );
    assert!(
        suspended.cloud.received().is_empty(),
        "a refused request never reaches a provider"
    );
}

#[tokio::test]
async fn tool_calls_the_model_proposes_are_decided_before_the_client_sees_them() {
    let s = setup("tools", |p| p).await;
    s.cloud.set_script(Script::ToolCalls(vec![
        ("sql_query".into(), json!({"query": "SELECT 1"})),
        ("send_email".into(), json!({"to": "x@y.z"})),
        ("bulk_export".into(), json!({})),
    ]));
    let (status, _, body) = chat(
        &s,
        json!({"model": "gpt-4o", "messages": user("do things"), "tools": []}),
    )
    .await;
    assert_eq!(status, 200);
    let message = &json_of(&body)["choices"][0]["message"];
    let names: Vec<&str> = message["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sql_query"]);
    let content = message["content"].as_str().unwrap();
    assert!(
        content.contains("`send_email` needs a human's approval"),
        "{content}"
    );
    assert!(
        content.contains("`bulk_export` was blocked by policy (tool.denied_by_rule"),
        "{content}"
    );
    s.state.audit.flush().await.unwrap();
    let tools: Vec<(String, String)> = s
        .store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| Some((r.event.tool?, r.event.decision)))
        .collect();
    assert_eq!(
        tools,
        [
            ("sql_query".into(), "Allow".into()),
            ("send_email".into(), "RequireApproval".into()),
            ("bulk_export".into(), "Deny".into())
        ]
    );
    // The approval the held call was recorded as (in the background) shows
    // the arguments the model proposed, not `{}`.
    let approvals = palisade_audit::approvals::ApprovalStore::new(s.store.clone());
    let started = std::time::Instant::now();
    let held = loop {
        let now = jiff::Timestamp::now();
        if let [one] = approvals
            .list(None, true, now, 10)
            .await
            .unwrap()
            .as_slice()
        {
            break one.clone();
        }
        assert!(started.elapsed().as_secs() < 5, "no approval was recorded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(held.call.tool, "send_email");
    assert_eq!(held.call.arguments_preview, "{\n  \"to\": \"x@y.z\"\n}");
    assert!(!held.call.arguments_truncated);
}

fn sse_events(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn streamed_answers_pass_through_and_streamed_tool_calls_are_gated() {
    let s = setup("stream", |p| p).await;
    let (status, headers, body) = chat(
        &s,
        json!({"model": "gpt-4o", "messages": user("tell me a story"), "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));
    let text: String = sse_events(&body)
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "cloud answer");

    s.cloud.set_script(Script::ToolCalls(vec![
        ("sql_query".into(), json!({"query": "SELECT 1"})),
        ("bulk_export".into(), json!({"all": true})),
    ]));
    let (_, _, body) = chat(
        &s,
        json!({"model": "gpt-4o", "messages": user("export"), "stream": true}),
    )
    .await;
    let events = sse_events(&body);
    let calls: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "{events:#?}");
    assert_eq!(calls[0]["function"]["name"], "sql_query");
    assert_eq!(
        calls[0]["function"]["arguments"],
        json!({"query": "SELECT 1"}).to_string(),
        "fragments are reassembled"
    );
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(
        text.contains("`bulk_export` was blocked by policy"),
        "{text}"
    );
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn ollama_is_spoken_natively_streamed_and_not_with_tool_calls_gated() {
    let s = setup("ollama", |p| p).await;
    let (_, _, body) = chat(&s, json!({"model": "gpt-4o", "messages": user("the patient asked"), "temperature": 0.5, "max_tokens": 64})).await;
    assert_eq!(
        json_of(&body)["choices"][0]["message"]["content"],
        "local answer"
    );
    let sent = &s.local.received()[0];
    assert_eq!(sent.api, "ollama");
    assert_eq!(
        sent.body["options"],
        json!({"temperature": 0.5, "num_predict": 64})
    );

    let (status, headers, body) = chat(
        &s,
        json!({"model": "gpt-4o", "messages": user("the patient asked"), "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = sse_events(&body);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "local answer");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));

    s.local.set_script(Script::ToolCalls(vec![
        ("sql_query".into(), json!({"query": "SELECT 1"})),
        ("bulk_export".into(), json!({})),
    ]));
    let (_, _, body) = chat(
        &s,
        json!({"model": "gpt-4o", "messages": user("the patient export")}),
    )
    .await;
    let message = &json_of(&body)["choices"][0]["message"];
    assert_eq!(message["tool_calls"].as_array().unwrap().len(), 1);
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        json!({"query": "SELECT 1"}).to_string()
    );
    assert!(
        message["content"]
            .as_str()
            .unwrap()
            .contains("`bulk_export` was blocked")
    );
}

#[tokio::test]
async fn anthropic_messages_are_translated_both_ways_with_its_own_headers() {
    let s = setup("anthropic", |p| p).await;
    let (status, headers, body) = chat(
        &s,
        json!({"model": "claude-sonnet-4", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-palisade-provider"], "claude");
    assert_eq!(
        json_of(&body)["choices"][0]["message"]["content"],
        "cloud answer"
    );
    let sent = s.cloud.received().pop().unwrap();
    assert_eq!(sent.api, "anthropic");
    assert_eq!(
        (
            sent.x_api_key.as_deref(),
            sent.anthropic_version.as_deref(),
            sent.authorization.as_deref()
        ),
        (Some("sk-ant-upstream"), Some("2023-06-01"), None)
    );
    assert_eq!(sent.body["system"], "be brief");
    assert_eq!(sent.body["max_tokens"], 4096);

    s.cloud.set_script(Script::ToolCalls(vec![
        ("sql_query".into(), json!({"query": "SELECT 1"})),
        ("send_email".into(), json!({"to": "a@b.c"})),
    ]));
    let (_, _, body) = chat(
        &s,
        json!({"model": "claude-sonnet-4", "messages": user("go"), "stream": true}),
    )
    .await;
    let events = sse_events(&body);
    let calls: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "{events:#?}");
    assert_eq!(
        (
            calls[0]["function"]["name"].clone(),
            calls[0]["function"]["arguments"].clone()
        ),
        (
            json!("sql_query"),
            json!(json!({"query": "SELECT 1"}).to_string())
        )
    );
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(
        text.contains("`send_email` needs a human's approval"),
        "{text}"
    );
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn tool_calls_proposed_in_chat_are_audited_with_the_arguments_the_policy_keeps() {
    let s = setup("chat-args", |p| {
        p.set(
            "audit",
            json!({"arguments": "Redacted", "redactKeys": ["to"]}),
        )
    })
    .await;
    let email = json!({"to": "x@y.z", "body": "hi"});
    s.cloud.set_script(Script::ToolCalls(vec![
        ("sql_query".into(), json!({"query": "SELECT 1"})),
        ("send_email".into(), email.clone()),
    ]));
    for stream in [false, true] {
        let (status, _, _) = chat(
            &s,
            json!({"model": "gpt-4o", "messages": user("do things"), "stream": stream}),
        )
        .await;
        assert_eq!(status, 200);
    }
    s.state.audit.flush().await.unwrap();
    let kept: Vec<(String, Option<Value>)> = s
        .store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| Some((r.event.tool?, r.event.arguments)))
        .collect();
    let redacted = palisade_policy::redact_arguments(&email, &["to".to_owned()]);
    assert_ne!(redacted, email);
    let once = [
        ("sql_query".to_owned(), Some(json!({"query": "SELECT 1"}))),
        ("send_email".to_owned(), Some(redacted)),
    ];
    assert_eq!(
        kept,
        [once.clone(), once].concat(),
        "non-streamed, then streamed"
    );
}

/// Issue 23, item 2: arguments that are not strict JSON (`NaN`) are not
/// decided as `{}` (which would skip `has(args.to)` and fall through to
/// an allow); they are denied `tool.arguments_invalid` and withheld, and an
/// allowed call is forwarded as the canonical JSON that was evaluated.
#[tokio::test]
async fn tool_call_arguments_that_do_not_parse_are_denied_and_allowed_ones_forwarded_canonical() {
    let s = setup("chat-nan", |p| p).await;
    edit_policy(&s, |p| {
        p.rule(json!({"tools": ["notify"], "action": "RequireApproval", "when": "has(args.to)"}))
            .rule(json!({"tools": ["notify"], "action": "Allow"}))
    });
    s.cloud.set_script(Script::RawToolCalls(vec![
        ("notify".into(), r#"{"to":"x@evil.example","n":NaN}"#.into()),
        (
            "sql_query".into(),
            r#"{ "query" : "SELECT 1", "a": 1.50 }"#.into(),
        ),
    ]));
    for stream in [false, true] {
        let (status, _, body) = chat(
            &s,
            json!({"model": "gpt-4o", "messages": user("do things"), "stream": stream}),
        )
        .await;
        assert_eq!(status, 200);
        let (calls, text): (Vec<Value>, String) = if stream {
            let events = sse_events(&body);
            (
                events
                    .iter()
                    .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
                    .flatten()
                    .cloned()
                    .collect(),
                events
                    .iter()
                    .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
                    .collect(),
            )
        } else {
            let message = &json_of(&body)["choices"][0]["message"];
            (
                message["tool_calls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                message["content"].as_str().unwrap_or("").to_owned(),
            )
        };
        let names: Vec<&str> = calls
            .iter()
            .map(|c| c["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sql_query"], "stream: {stream}");
        assert_eq!(
            calls[0]["function"]["arguments"], r#"{"a":1.50,"query":"SELECT 1"}"#,
            "the canonical JSON that was evaluated (stream: {stream})"
        );
        assert!(
            text.contains("`notify` was blocked by policy (tool.arguments_invalid"),
            "{text}"
        );
    }
    s.state.audit.flush().await.unwrap();
    let decided: Vec<(String, String, String)> = s
        .store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| {
            Some((
                r.event.tool?,
                r.event.decision,
                r.event.reason_codes.join(","),
            ))
        })
        .collect();
    let once = [
        (
            "notify".to_owned(),
            "Deny".to_owned(),
            "tool.arguments_invalid".to_owned(),
        ),
        (
            "sql_query".to_owned(),
            "Allow".to_owned(),
            "tool.allowed_by_rule".to_owned(),
        ),
    ];
    assert_eq!(decided, [once.clone(), once].concat());
    // Audited with the digest of the text the model sent: the invalid
    // text itself, the valid one digit for digit (`1.50`, not `1.5`).
    let digests: Vec<String> = s
        .store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.tool.is_some())
        .map(|r| r.event.argument_digest.unwrap())
        .collect();
    let sent = [
        palisade_policy::ToolArguments::parse(r#"{"to":"x@evil.example","n":NaN}"#),
        palisade_policy::ToolArguments::parse(r#"{ "query" : "SELECT 1", "a": 1.50 }"#),
    ];
    let sent: Vec<String> = sent.iter().map(|a| a.digest().to_owned()).collect();
    assert_eq!(digests, [sent.clone(), sent].concat());
}

#[tokio::test]
async fn a_chat_request_stopped_by_a_kill_switch_is_counted() {
    let s = setup("chat-killed", Policy::suspended).await;
    let (status, _, body) = chat(&s, json!({"model": "gpt-4o", "messages": user("hi")})).await;
    assert_eq!((status, code_of(&body)), (403, "kill_switch.policy".into()));
    let metrics = s.state.metrics.render();
    assert!(
        metrics
            .contains("palisade_kill_switch_hits_total{namespace=\"clinic\",scope=\"policy\"} 1"),
        "{metrics}"
    );
}

/// Issue 23, item 1: a request in the legacy `functions` shape is refused
/// with a 400 naming the field and what replaces it, before any provider
/// sees it (its answer would come back as an undecided `function_call`
/// from providers that still honour it).
#[tokio::test]
async fn legacy_function_fields_in_a_request_are_refused_naming_their_replacement() {
    let s = setup("chat-legacy", |p| p).await;
    for (field, value, fix) in [
        (
            "functions",
            json!([{"name": "send_email", "parameters": {"type": "object"}}]),
            "tools",
        ),
        (
            "function_call",
            json!({"name": "send_email"}),
            "tool_choice",
        ),
    ] {
        let mut body = json!({"model": "gpt-4o", "messages": user("hi")});
        body[field] = value;
        let (status, _, bytes) = chat(&s, body).await;
        let error = &json_of(&bytes)["error"];
        assert_eq!(
            (status, error["code"].as_str(), error["param"].as_str()),
            (400, Some("invalid_request"), Some(field)),
            "{error}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{field}`")) && message.contains(&format!("`{fix}`")),
            "{message}"
        );
    }
    assert!(s.cloud.received().is_empty(), "no provider saw them");
}

/// Issue 23, item 10: a tool name longer than 256 bytes is refused
/// (`tool.name_too_long`) wherever a tool call is decided: a model's call
/// in chat is withheld and audited under a bounded name.
#[tokio::test]
async fn a_proposed_tool_call_with_an_overlong_name_is_withheld() {
    let s = setup("chat-long-name", |p| p).await;
    edit_policy(&s, |p| {
        p.set(
            "tools",
            json!({"rules": [
                {"tools": ["sql_*"], "action": "Allow"},
                {"tools": ["send_email"], "action": "RequireApproval"},
                {"tools": ["bulk_export"], "action": "Deny"},
            ]}),
        )
    });
    let long = format!("sql_{}", "x".repeat(300));
    s.cloud.set_script(Script::ToolCalls(vec![
        (long.clone(), json!({})),
        ("sql_query".into(), json!({})),
    ]));
    let (status, _, body) = chat(&s, json!({"model": "gpt-4o", "messages": user("go")})).await;
    assert_eq!(status, 200);
    let message = &json_of(&body)["choices"][0]["message"];
    let names: Vec<&str> = message["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sql_query"]);
    let content = message["content"].as_str().unwrap();
    assert!(content.contains("tool.name_too_long"), "{content}");
    s.state.audit.flush().await.unwrap();
    let rows = s.store.query(&Filter::default()).await.unwrap();
    let denied = rows
        .iter()
        .find(|r| r.event.reason_codes == ["tool.name_too_long"])
        .expect("the refusal is audited");
    assert!(denied.event.tool.as_ref().unwrap().len() <= 260);
    let metrics = s.state.metrics.render();
    assert!(!metrics.contains("xxxx"), "{metrics}");
}

/// Issue 23: `FailClosed` auditing holds for chat too. While the audit
/// database is down, a chat request is refused `503 audit.unavailable`
/// before its prompt is sent anywhere: the provider never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_closed_auditing_no_prompt_is_sent_while_the_audit_is_down() {
    use palisade_audit::{
        AuditEvent, AuditMetrics, AuditWriter, EventKind, FailureMode, Migrations, WriterConfig,
    };
    let s = setup("chat-fail-closed", |p| p).await;
    let pg = palisade_audit_suite::TestPostgres::start();
    let store = Store::open(&pg.database("chat"), Migrations::Apply)
        .await
        .unwrap();
    let mut config = WriterConfig::new(palisade_audit_suite::temp_dir("chat-fc-spool"));
    config.failure_mode = FailureMode::FailClosed;
    let (audit, _task) =
        AuditWriter::start(store.clone(), config, AuditMetrics::unregistered().unwrap()).unwrap();
    let state = AppState::builder(
        s.state.config.clone(),
        audit.clone(),
        s.state.metrics.clone(),
        palisade_gateway::approvals::Approvals::local(store, "gateway-test"),
    )
    // The fake providers are plain HTTP on 127.0.0.1.
    .egress(palisade_policy::Egress::any_url(true))
    .build();
    let (status, _, _) = chat_on(&state, json!({"model": "gpt-4o", "messages": user("hi")})).await;
    assert_eq!(status, 200, "served while the audit is up");
    assert_eq!(s.cloud.received().len(), 1);

    pg.kill();
    // The writer learns that the database is down from the first event
    // it cannot write (that one is spooled: it was accepted).
    let probe = AuditEvent::new(
        EventKind::Chat,
        "probe",
        "clinic",
        "intake",
        palisade_audit::AuditDecision::Allow,
    );
    let _ = audit.record_durable(probe).await;
    assert!(audit.database_down());
    for stream in [false, true] {
        let (status, _, body) = chat_on(
            &state,
            json!({"model": "gpt-4o", "messages": user("a secret"), "stream": stream}),
        )
        .await;
        assert_eq!(
            (status, code_of(&body)),
            (503, "audit.unavailable".into()),
            "stream: {stream}"
        );
    }
    assert_eq!(
        s.cloud.received().len(),
        1,
        "no prompt reached the provider while its audit row could not be accepted"
    );
}
