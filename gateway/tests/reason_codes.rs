//! Every reason code a standalone gateway can produce, observed over HTTP
//! with the status an agent sees. (`policy.none` and `policy.invalid`
//! cannot arise standalone: keys come only from policies that compiled,
//! and a file with an invalid policy is rejected whole. They are covered
//! by the policy crate's tests.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use palisade_fake_upstreams::{FakeOpenAi, Script};
use palisade_gateway::state::AppState;
use palisade_policy::Egress;
use serde_json::{Value, json};

async fn state(name: &str, upstream: &FakeOpenAi, down: &str) -> AppState {
    let yaml = format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: p, namespace: ns}}
spec:
  agents:
    - {{name: a, apiKeySecretRef: {{name: k, key: a}}}}
    - {{name: off, suspended: true, apiKeySecretRef: {{name: k, key: off}}}}
    - {{name: research, apiKeySecretRef: {{name: k, key: research}}}}
  models: {{allow: ["gpt-*"]}}
  providers:
    - {{name: up, type: openai, baseUrl: "{up}"}}
    - {{name: down, type: openai, baseUrl: "{down}", timeout: 2s}}
  routing:
    defaultProvider: up
    rules:
      - {{keywords: [diagnosis], provider: up}}
      - {{patterns: ['\b\d{{3}}-\d{{2}}-\d{{4}}\b'], provider: up}}
      - {{maxPromptChars: 5, provider: up}}
      - {{models: [gpt-4o-mini], provider: up}}
      - {{agents: [research], provider: up}}
      - {{models: [gpt-fallback], provider: down}}
    fallbackProvider: up
  tools:
    default: Deny
    rules:
      - {{tools: [drop_*], action: Deny}}
      - {{tools: [pay], action: Allow, when: "args.amount < 100"}}
      - {{tools: [read_*], action: Allow}}
      - {{tools: [send_*], action: RequireApproval}}
---
apiVersion: palisade.dev/v1alpha1
kind: ToolGrant
metadata: {{name: g1, namespace: ns}}
spec: {{agents: [a], tools: [export_csv], action: Allow, expiresAt: "2099-01-01T00:00:00Z", reason: test}}
---
apiVersion: palisade.dev/v1alpha1
kind: ToolGrant
metadata: {{name: g2, namespace: ns}}
spec: {{agents: [a], tools: [wire_money], action: RequireApproval, expiresAt: "2099-01-01T00:00:00Z", reason: test}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k, namespace: ns}}
stringData: {{a: key-a, off: key-off, research: key-research}}
"#,
        up = upstream.base_url()
    );
    common::standalone_config(&format!("codes-{name}"), &yaml, Egress::any_url(true)).await
}

async fn post(
    state: &AppState,
    path: &str,
    key: &str,
    body: Value,
) -> (u16, Value, Option<String>) {
    let (status, headers, v) = common::post_json(state, path, key, &body).await;
    let reasons = headers
        .get("x-palisade-reasons")
        .map(|v| v.to_str().unwrap().to_string());
    (status, v, reasons)
}

#[tokio::test]
async fn every_tool_reason_code_reaches_the_agent_with_its_status() {
    let up = FakeOpenAi::start(Script::Text("hi".into())).await.unwrap();
    let s = state("tools", &up, "http://127.0.0.1:9").await;
    let long_name = format!("read_{}", "x".repeat(252));
    for (key, tool, args, status, code) in [
        ("key-off", "read_file", json!({}), 403, "kill_switch.agent"),
        (
            "key-a",
            long_name.as_str(),
            json!({}),
            400,
            "tool.name_too_long",
        ),
        (
            "key-a",
            "read_file",
            json!([1]),
            403,
            "tool.arguments_invalid",
        ),
        ("key-a", "drop_table", json!({}), 403, "tool.denied_by_rule"),
        (
            "key-a",
            "pay",
            json!({"currency": "EUR"}),
            403,
            "tool.condition_error",
        ),
        (
            "key-a",
            "pay",
            json!({"amount": 5}),
            200,
            "tool.allowed_by_rule",
        ),
        (
            "key-a",
            "send_email",
            json!({}),
            202,
            "tool.approval_required_by_rule",
        ),
        (
            "key-a",
            "export_csv",
            json!({}),
            200,
            "tool.allowed_by_grant",
        ),
        (
            "key-a",
            "wire_money",
            json!({}),
            202,
            "tool.approval_required_by_grant",
        ),
        ("key-a", "format_disk", json!({}), 403, "tool.default_deny"),
    ] {
        let (got, body, _) = post(
            &s,
            "/v1/tool-calls",
            key,
            json!({"tool": tool, "arguments": args}),
        )
        .await;
        let reason = body["reasonCode"]
            .as_str()
            .or(body["error"]["code"].as_str())
            .unwrap_or("");
        assert_eq!((got, reason), (status, code), "{tool}: {body}");
    }
}

#[tokio::test]
async fn every_routing_reason_code_reaches_the_agent_in_the_headers() {
    let up = FakeOpenAi::start(Script::Text("hi".into())).await.unwrap();
    let s = state("routing", &up, "http://127.0.0.1:9").await;
    let long = "please write a long essay about the seasons";
    for (key, model, prompt, reasons) in [
        (
            "key-a",
            "gpt-4o",
            "what is the diagnosis here, in detail please",
            "routing.keyword",
        ),
        (
            "key-a",
            "gpt-4o",
            "look up 123-45-6789 in the records please",
            "routing.pattern",
        ),
        ("key-a", "gpt-4o", "hi", "routing.prompt_length"),
        ("key-a", "gpt-4o-mini", long, "routing.model"),
        ("key-research", "gpt-4o", long, "routing.agent"),
        ("key-a", "gpt-4o", long, "routing.default"),
        (
            "key-a",
            "gpt-fallback",
            long,
            "routing.model,routing.fallback",
        ),
    ] {
        let (status, body, got) = post(
            &s,
            "/v1/chat/completions",
            key,
            json!({"model": model, "messages": [{"role": "user", "content": prompt}]}),
        )
        .await;
        assert_eq!(status, 200, "{prompt}: {body}");
        assert_eq!(got.as_deref(), Some(reasons), "{prompt}");
    }
    let (status, body, _) = post(
        &s,
        "/v1/chat/completions",
        "key-a",
        json!({"model": "claude-3", "messages": []}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("model.not_allowed"))
    );
    let (status, body, _) = post(
        &s,
        "/v1/chat/completions",
        "key-off",
        json!({"model": "gpt-4o", "messages": []}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("kill_switch.agent"))
    );
}
