//! The official `openai` Python SDK drives the real gateway binary, which
//! talks to fake providers: plain, streamed, tools, refusals, the model
//! list, embeddings and an unknown route. The SDK is
//! installed into a virtualenv under `target/` on first use (PyPI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use palisade_fake_upstreams::{FakeOpenAi, Script};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_sdk_works_against_the_gateway() {
    let cloud = FakeOpenAi::start(Script::Text("cloud answer".into()))
        .await
        .unwrap();
    let tools = FakeOpenAi::start(Script::ToolCalls(vec![
        ("sql_query".into(), json!({"query": "SELECT 1"})),
        ("send_email".into(), json!({"to": "x@y.z"})),
        ("bulk_export".into(), json!({})),
    ]))
    .await
    .unwrap();
    let dir = palisade_testkit::temp_dir("sdk");
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
  models: {{allow: ["gpt-4o*", "text-embedding-*"]}}
  providers:
    - {{name: cloud, type: openai, baseUrl: "{}"}}
    - {{name: tools, type: openai, baseUrl: "{}"}}
  routing:
    defaultProvider: cloud
    rules:
      - {{models: ["gpt-4o-tools"], provider: tools}}
  tools:
    rules:
      - {{tools: [sql_query], action: Allow}}
      - {{tools: [send_email], action: RequireApproval}}
      - {{tools: [bulk_export], action: Deny}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{app: sdk-key}}
"#,
            cloud.base_url(),
            tools.base_url()
        ),
    )
    .unwrap();
    let python = common::openai_python().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_client.py");
    common::sdk_checks(python, script, (&config, &[]), "sdk-key").await;
}
