//! The official `anthropic` Python SDK drives the real gateway binary's
//! `/v1/messages`, which talks to fake providers: an Anthropic one and an
//! OpenAI-compatible one (translated), plain, streamed, with tools, and
//! refused. The SDK is installed into a virtualenv under `target/` on
//! first use (PyPI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use palisade_fake_upstreams::{FakeOpenAi, Script};
use serde_json::json;
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_anthropic_python_sdk_works_against_the_gateway() {
    let calls = || {
        Script::ToolCalls(vec![
            ("sql_query".into(), json!({"query": "SELECT 1"})),
            ("send_email".into(), json!({"to": "x@y.z"})),
            ("bulk_export".into(), json!({})),
        ])
    };
    let claude = FakeOpenAi::start(Script::Text("claude answer".into()))
        .await
        .unwrap();
    let claude_tools = FakeOpenAi::start(calls()).await.unwrap();
    let openai_tools = FakeOpenAi::start(calls()).await.unwrap();
    let dir = palisade_testkit::temp_dir("anthropic-sdk");
    let config = dir.join("policy.yaml");
    std::fs::write(
        &config,
        format!(
            r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: sdk}}
spec:
  agents:
    - {{name: app, apiKeySecretRef: {{name: keys, key: app}}}}
  models: {{allow: ["claude-3-5-*", "claude-tools", "gpt-4o*"]}}
  providers:
    - {{name: claude, type: anthropic, baseUrl: "{}", credentialsSecretRef: {{name: keys, key: anthropic}}}}
    - {{name: claude-tools, type: anthropic, baseUrl: "{}"}}
    - {{name: openai-tools, type: openai, baseUrl: "{}"}}
  routing:
    defaultProvider: claude
    rules:
      - {{models: ["claude-tools"], provider: claude-tools}}
      - {{models: ["gpt-4o-tools"], provider: openai-tools}}
  tools:
    rules:
      - {{tools: [sql_query], action: Allow}}
      - {{tools: [send_email], action: RequireApproval}}
      - {{tools: [bulk_export], action: Deny}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{app: sdk-key, anthropic: sk-ant-upstream-0123456789}}
"#,
            claude.base_url(),
            claude_tools.base_url(),
            openai_tools.base_url()
        ),
    )
    .unwrap();
    let python = tokio::task::spawn_blocking(|| {
        palisade_fake_upstreams::python::python_with(
            &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("anthropic-venv"),
            &[("anthropic>=0.40", "anthropic")],
        )
    })
    .await
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/anthropic_client.py");
    common::sdk_checks(
        python,
        script,
        // The fakes listen on plain HTTP; the Anthropic one has a key.
        (&config, &["--allow-plaintext-credentials"]),
        "sdk-key",
    )
    .await;
    // The provider got the policy's key, never the agent's.
    let sent = claude.received();
    assert!(!sent.is_empty());
    for r in &sent {
        assert_eq!(r.x_api_key.as_deref(), Some("sk-ant-upstream-0123456789"));
    }
    // The tool result reached the provider as a tool_result block.
    let follow = sent.last().unwrap();
    assert_eq!(
        follow.body["messages"][2]["content"][0]["type"], "tool_result",
        "{}",
        follow.body
    );
}
