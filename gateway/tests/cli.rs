//! The `validate` and `decide` commands, run as a user would run them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("OPENAI_API_KEY", "sk-test")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_summarises_a_valid_configuration() {
    let out = gateway(&[
        "validate",
        "--config",
        "examples/clinic-assistant.yaml",
        "--config",
        "examples/standalone.yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("configuration OK: revision "),
        "{stdout}"
    );
    assert!(stdout.contains("AIPolicy clinic/clinic-assistant: 2 agent(s), 2 provider(s), 2 routing rule(s), 4 tool rule(s), default Deny, Enforce"), "{stdout}");
    assert!(
        stdout.contains("ToolGrant clinic/lab-migration: Active"),
        "{stdout}"
    );
}

#[test]
fn validate_rejects_an_invalid_file_naming_line_field_and_fix() {
    let out = gateway(&[
        "validate",
        "--config",
        "examples/invalid/aipolicy-unknown-provider.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "examples/invalid/aipolicy-unknown-provider.yaml:20: AIPolicy clinic/broken-routing: spec.routing.rules[0].provider: names provider \"on-prem\", which spec.providers does not define (fix: name one of: local)"
    );
}

#[test]
fn validate_says_which_file_it_cannot_read() {
    let out = gateway(&["validate", "--config", "examples/no-such-file.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("cannot read examples/no-such-file.yaml:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn decide_tool_prints_the_decision_with_reason_and_rule() {
    let out = gateway(&[
        "decide",
        "tool",
        "--config",
        "examples/quickstart.yaml",
        "--agent",
        "demo",
        "--tool",
        "send_email",
        "--args",
        r#"{"to":"a@b.c"}"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["outcome"], "RequireApproval");
    assert_eq!(decision["reasonCode"], "tool.approval_required_by_rule");
    assert_eq!(decision["rule"], "spec.tools.rules[1]");
    assert_eq!(decision["policy"]["name"], "quickstart");
}

#[test]
fn decide_chat_prints_the_route() {
    let out = gateway(&[
        "decide",
        "chat",
        "--config",
        "examples/clinic-assistant.yaml",
        "--config",
        "examples/standalone.yaml",
        "--agent",
        "intake",
        "--model",
        "gpt-4o",
        "--prompt",
        "What is the diagnosis?",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["route"]["provider"], "local");
    assert_eq!(d["route"]["reasons"][0], "routing.keyword");
    assert_eq!(d["decision"]["reasonCode"], "routing.keyword");
}

#[test]
fn decide_refuses_arguments_that_are_not_a_json_object() {
    let out = gateway(&[
        "decide",
        "tool",
        "--config",
        "examples/quickstart.yaml",
        "--agent",
        "demo",
        "--tool",
        "x",
        "--args",
        "[1]",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--args must be a JSON object"));
}
