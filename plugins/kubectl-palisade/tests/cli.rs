//! The plugin's command line as a user meets it before any cluster is
//! involved: usage, a decision without a reason, no cluster to talk to.
//! (Against a real API server: tests/e2e, approvals_and_kill_switches.rs
//! and approval_notices.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn plugin(args: &[&str], kubeconfig: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-palisade"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

#[test]
fn usage_names_every_command() {
    let out = plugin(&["--help"], "/nonexistent");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["approvals", "show", "approve", "deny"] {
        assert!(text.contains(command), "{command} missing: {text}");
    }
}

#[test]
fn a_decision_needs_a_reason() {
    let out = plugin(&["deny", "intake-0a1b", "-n", "clinic"], "/nonexistent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--reason"), "{err}");
}

#[test]
fn without_a_cluster_it_says_so() {
    let dir = std::env::temp_dir().join(format!("kubectl-palisade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config");
    // A cluster nobody listens on.
    std::fs::write(
        &config,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: clinic}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let out = plugin(&["approvals"], config.to_str().unwrap());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("127.0.0.1:9") || err.contains("connect"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
