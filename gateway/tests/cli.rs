//! The `validate` and `decide` commands, run as a user would run them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("OPENAI_API_KEY", "sk-test")
        // examples/tools.yaml's secrets.
        .env("RECORDS_DB_URL", "postgres://reader:pw@127.0.0.1/records")
        .env("CALENDAR_TOKEN", "cal-token")
        .env("CLINIC_AGENT_KEY", "agent-key")
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
fn the_tools_example_validates_and_says_what_palisade_runs() {
    let out = gateway(&["validate", "--config", "examples/tools.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("    runs:      sql_query, read_file, write_file, calendar_slots (tool loop: at most 4 rounds, offered WhenRequested)"),
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

/// `--log-format json`: every line the gateway logs is one JSON object
/// with its time, level and message, for log pipelines; an unknown format
/// is refused naming both.
#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let dir = palisade_testkit::temp_dir("json-logs");
    let config = dir.join("quickstart.yaml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.yaml"),
        &config,
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Listening: the start-up lines are logged by then.
    let mut listening = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut listening)
        .unwrap();
    assert!(listening.contains("listening on"), "{listening}");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let logs = text(&out.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "the gateway logs at start-up");
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "{l}"
        );
    }
    assert!(lines.iter().any(|l| l["level"] == "INFO"), "{logs}");

    let refused = gateway(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--log-format",
        "yaml",
    ]);
    assert!(!refused.status.success());
    let err = text(&refused.stderr);
    assert!(
        err.contains("--log-format") && err.contains("use text or json"),
        "{err}"
    );
}
