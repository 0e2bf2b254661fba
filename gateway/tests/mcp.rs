//! The MCP gateway (issue 28) with the official MCP Python SDK on both
//! sides: a real MCP server built with the SDK (Streamable HTTP,
//! `tests/fake-upstreams/mcp/upstream_server.py`) behind the real gateway
//! binary, and the SDK's client as the agent (`sdk/mcp_agent.py`):
//! `tools/list` shows only what the agent may call (held tools marked),
//! `tools/call` is decided first — allowed, denied (`-32001` with the
//! reason code), held (`-32002` naming the Approval, which an operator
//! approves; the repeat with `_meta` runs once) — streamed progress passes
//! through, a secret in a result is redacted, and the server only ever
//! sees its own credentials, never the agent's key. Run with the server
//! answering in SSE and in plain JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use palisade_audit::{Filter, Migrations, Store};
use palisade_fake_upstreams::mcp::McpServer;
use std::path::PathBuf;
use std::process::Command;

const KEY: &str = "mcp-agent-key";
const OTHER_KEY: &str = "mcp-other-agent-key";
const OPERATOR: &str = "mcp-operator-token";
const UPSTREAM_TOKEN: &str = "upstream-secret-token";

fn config(url: &str) -> String {
    format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: files}}
spec:
  agents:
    - {{name: app, apiKeySecretRef: {{name: keys, key: a}}}}
    - {{name: other, apiKeySecretRef: {{name: keys, key: b}}}}
  providers: [{{name: local, type: openai, baseUrl: "http://127.0.0.1:9"}}]
  routing: {{defaultProvider: local}}
  mcpServers:
    - {{name: files, url: "{url}", credentialsSecretRef: {{name: mcp, key: token}}, timeout: 10s}}
  tools:
    default: Allow
    rules:
      - {{name: never-delete, tools: [delete_all], action: Deny}}
      - {{name: mail, tools: [send_email], action: RequireApproval}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{a: {KEY}, b: {OTHER_KEY}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: mcp, labels: {{palisade.dev/credentials: "true"}}}}
stringData: {{token: {UPSTREAM_TOKEN}}}
---
apiVersion: palisade.dev/v1alpha1
kind: GatewaySettings
metadata: {{name: local}}
spec:
  approvals:
    operators: [{{name: oncall, tokenEnv: PALISADE_ONCALL}}]
"#
    )
}

/// A Python with the MCP SDK (PyPI), set up once per target directory.
async fn mcp_python() -> PathBuf {
    tokio::task::spawn_blocking(|| {
        palisade_fake_upstreams::mcp::python_with_mcp(
            &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mcp-venv"),
        )
    })
    .await
    .unwrap()
}

/// The gateway on `path`, and its base URL.
fn gateway(path: &std::path::Path) -> (common::Stopped, String) {
    common::run_config(
        path,
        // The test's MCP server takes its token over plain HTTP.
        &["--allow-plaintext-credentials"],
        &[("PALISADE_ONCALL", OPERATOR)],
    )
}

async fn through_the_gateway(json: bool) {
    let python = mcp_python().await;
    let dir = palisade_testkit::temp_dir(if json { "mcp-json" } else { "mcp-sse" });
    let log = dir.join("upstream.log");
    let server = McpServer::start(&python, UPSTREAM_TOKEN, &log, json);
    let path = dir.join("policy.yaml");
    std::fs::write(&path, config(&server.url)).unwrap();
    let (mut gateway, url) = gateway(&path);
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            Command::new(python)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/sdk/mcp_agent.py"
                ))
                .env("MODE", "gateway")
                .env("MCP_URL", format!("{url}/mcp/files"))
                .env("MCP_TOKEN", KEY)
                .env("PALISADE_URL", &url)
                .env("PALISADE_OPERATOR", OPERATOR)
                .env("EXPECT_PROGRESS", if json { "0" } else { "3" })
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    gateway.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server saw only its own credentials, and never the denied call.
    let seen = std::fs::read_to_string(&log).unwrap();
    assert!(!seen.is_empty());
    for line in seen.lines() {
        assert!(line.contains(UPSTREAM_TOKEN), "{line}");
        assert!(
            !line.contains(KEY),
            "the agent's key reached the server: {line}"
        );
        assert!(
            !line.contains("delete_all"),
            "a denied call reached the server: {line}"
        );
    }
    // Decided and counted like any tool call.
    assert!(
        metrics.contains("kind=\"mcp_tool_call\"")
            && metrics.contains("reason=\"tool.denied_by_rule\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("palisade_tool_result_redactions_total"),
        "{metrics}"
    );
    // Each call's audit row names the MCP server it was decided for.
    let store = Store::open(
        &format!("sqlite://{}", dir.join("palisade-audit.db").display()),
        Migrations::VerifyOnly,
    )
    .await
    .unwrap();
    let rows: Vec<_> = store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.kind.as_str() == "tool_call")
        .collect();
    let tools: Vec<_> = rows.iter().filter_map(|r| r.event.tool.clone()).collect();
    assert!(tools.iter().any(|t| t == "delete_all"), "{tools:?}");
    for row in &rows {
        assert_eq!(
            row.event.provider.as_deref(),
            Some("mcp:files"),
            "{:?}",
            row.event
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_client_and_server_talk_through_the_policy_over_sse() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    through_the_gateway(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_client_and_server_talk_through_the_policy_over_json() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    through_the_gateway(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_bound_to_the_agent_that_opened_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let python = mcp_python().await;
    let dir = palisade_testkit::temp_dir("mcp-session");
    let log = dir.join("upstream.log");
    let server = McpServer::start(&python, UPSTREAM_TOKEN, &log, true);
    let path = dir.join("policy.yaml");
    std::fs::write(&path, config(&server.url)).unwrap();
    let (_gateway, url) = gateway(&path);
    let http = reqwest::Client::new();
    let post = |key: &str, session: Option<&str>, body: serde_json::Value| {
        let mut req = http
            .post(format!("{url}/mcp/files"))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .body(body.to_string());
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        async move { req.send().await.unwrap() }
    };
    let init = post(
        KEY,
        None,
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}),
    )
    .await;
    assert_eq!(init.status().as_u16(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (upstream_id, tag) = session.rsplit_once('.').unwrap();
    assert_eq!(tag.len(), 32, "{session}");
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(
        post(KEY, Some(&session), list.clone())
            .await
            .status()
            .as_u16(),
        200
    );
    // Another agent with it, the server's bare id, or a changed tag: unknown.
    for (key, sent) in [
        (OTHER_KEY, session.clone()),
        (KEY, upstream_id.to_owned()),
        (KEY, format!("{upstream_id}.{}", "0".repeat(32))),
    ] {
        let resp = post(key, Some(&sent), list.clone()).await;
        assert_eq!(resp.status().as_u16(), 404, "{sent}");
    }
    // The server saw its own ids only.
    assert!(!std::fs::read_to_string(&log).unwrap().contains(tag));
}
