//! MCP in a cluster (issue 28), on the real control plane: a policy
//! applied with kubectl lists an MCP server whose credentials are in a
//! labelled Secret the operator reads; the agent, with its ServiceAccount
//! token, uses the official MCP Python SDK against a gateway replica;
//! the held call becomes an `Approval` resource that a human approves with
//! `kubectl patch`, and the repeat naming it runs once. The server only
//! ever sees its own token, never the agent's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{AUDITOR_TOKEN, Harness, User};
use palisade_fake_upstreams::mcp::{McpServer, python_with_mcp};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const UPSTREAM_TOKEN: &str = "files-mcp-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_uses_an_mcp_server_through_the_policy_and_kubectl_approves_its_held_call() {
    let h = Harness::start("mcp").await;
    let python = tokio::task::spawn_blocking(|| {
        python_with_mcp(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mcp-venv"))
    })
    .await
    .unwrap();
    let log = h.dir.join("mcp-upstream.log");
    let server = McpServer::start(&python, UPSTREAM_TOKEN, &log, false);
    h.apply_yaml(
        "files-mcp-secret",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: files-mcp, namespace: clinic, labels: {{palisade.dev/credentials: \"true\"}}}}\nstringData: {{token: {UPSTREAM_TOKEN}}}\n"
        ),
    );
    let served = async |i: usize| {
        let (_, ready) = h.get(i, AUDITOR_TOKEN, "/readyz").await;
        ready["revision"].as_str().unwrap_or_default().to_owned()
    };
    let before = served(0).await;
    let patch = json!({"spec": {
        "mcpServers": [{"name": "files", "url": server.url, "credentialsSecretRef": {"name": "files-mcp", "key": "token"}}],
        "tools": {"default": "Allow", "rules": [
            {"name": "never-delete", "tools": ["delete_all"], "action": "Deny"},
            {"name": "mail", "tools": ["send_email"], "action": "RequireApproval"}
        ]}
    }});
    h.patch_policy("merge", &patch.to_string());
    h.until("mcpServers served", Duration::from_secs(15), async || {
        (served(0).await != before).then_some(())
    })
    .await;
    assert_eq!(
        h.policy_field("{.status.conditions[?(@.type==\"Accepted\")].status}"),
        "True"
    );

    let approver = h.cp.kubeconfig(User::Approver);
    let approve = json!([
        h.cp.kubectl_path(),
        "--kubeconfig",
        approver,
        "patch",
        "approval",
        "{name}",
        "-n",
        "clinic",
        "--type=merge",
        "-p",
        r#"{"spec":{"decision":"Approved","reason":"checked"}}"#
    ]);
    let url = h.gateways[0].url("/mcp/files");
    let token = h.intake.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../gateway/tests/sdk/mcp_agent.py"
            ))
            .env("MODE", "gateway")
            .env("MCP_URL", url)
            .env("MCP_TOKEN", token)
            .env("APPROVE_WITH", approve.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = std::fs::read_to_string(&log).unwrap();
    for line in seen.lines() {
        assert!(line.contains(UPSTREAM_TOKEN), "{line}");
        assert!(
            !line.contains(&h.intake),
            "the agent's token reached the server"
        );
        assert!(
            !line.contains("delete_all"),
            "a denied call reached the server: {line}"
        );
    }
    // The held call was an Approval resource, now consumed.
    let phase = h.kubectl_ok(&[
        "get",
        "approvals",
        "-n",
        "clinic",
        "-o",
        "jsonpath={.items[0].spec.tool} {.items[0].status.phase}",
    ]);
    assert_eq!(phase, "send_email Consumed");
    drop(server);
}
