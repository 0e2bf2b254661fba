//! The gateway's HTTP surface, driven through the router (`oneshot`) and,
//! for start-up, reload and shutdown, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use palisade_audit::{Filter, Store};
use palisade_gateway::config::reload;
use palisade_gateway::metrics::GatewayMetrics;
use palisade_gateway::router::app;
use palisade_gateway::snapshot;
use palisade_gateway::state::AppState;
use palisade_testkit::{Policy, temp_dir};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

const KEY: &str = "demo-key-change-me";

/// `policy` written into a fresh directory.
fn written(name: &str, policy: &Policy) -> PathBuf {
    policy.write_to(&temp_dir(&format!("gw-{name}")))
}

struct Gateway {
    state: AppState,
    store: Store,
    config: Vec<PathBuf>,
}

async fn gateway(name: &str, policy: Policy, load: bool) -> Gateway {
    let d = temp_dir(&format!("gw-{name}"));
    let config = vec![policy.write_to(&d)];
    let metrics = Arc::new(GatewayMetrics::new().unwrap());
    let current = snapshot::empty();
    if load {
        reload::load_into(&config, &current, &metrics).unwrap();
    }
    let (state, store) = common::standalone(&d, current, metrics, "operator-token").await;
    Gateway {
        state,
        store,
        config,
    }
}

async fn call(g: &Gateway, key: Option<&str>, body: Value) -> (StatusCode, Value) {
    call_raw(g, key, &body.to_string()).await
}

/// A `/v1/tool-calls` request whose body is exactly `body`.
async fn call_raw(g: &Gateway, key: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut req = Request::post("/v1/tool-calls").header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = app(g.state.clone())
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_gateway_without_configuration_is_not_ready_and_serves_nothing() {
    let g = gateway("notready", Policy::quickstart(), false).await;
    let ready = app(g.state.clone())
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let (status, body) = call(&g, Some(KEY), json!({"tool": "search_web"})).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("gateway.not_ready"))
    );
    let health = app(g.state.clone())
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "alive, just not ready");
}

#[tokio::test]
async fn tool_calls_are_allowed_or_denied_with_reason_and_rule_and_audited() {
    let g = gateway("decide", Policy::quickstart(), true).await;
    let (status, body) = call(
        &g,
        Some(KEY),
        json!({"tool": "search_web", "arguments": {"q": "opening hours"}, "requestId": "r-allow"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["decision"].as_str(),
            body["reasonCode"].as_str(),
            body["rule"].as_str()
        ),
        (
            Some("Allow"),
            Some("tool.allowed_by_rule"),
            Some("spec.tools.rules[0]")
        )
    );
    assert_eq!(body["requestId"], "r-allow");

    let (status, body) = call(
        &g,
        Some(KEY),
        json!({"tool": "drop_tables", "requestId": "r-deny"}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "tool.default_deny");
    assert_eq!(body["error"]["type"], "permission_error");
    assert_eq!(body["palisade"]["rule"], "spec.tools.default");

    let (status, body) = call(
        &g,
        Some(KEY),
        json!({"tool": "send_email", "arguments": {"to": "a@b.c"}}),
    )
    .await;
    assert_eq!(
        status, 202,
        "a held call is accepted for a human's decision"
    );
    assert_eq!(body["decision"], "RequireApproval");
    assert_eq!(body["reasonCodes"][1], "approval.pending");
    assert_eq!(body["approval"]["phase"], "Pending");

    g.state.audit.flush().await.unwrap();
    let rows = g.store.query(&Filter::default()).await.unwrap();
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.event.request_id.clone(),
                r.event.decision.clone(),
                r.event.tool.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got[..2],
        [
            ("r-allow".into(), "Allow".into(), "search_web".into()),
            ("r-deny".into(), "Deny".into(), "drop_tables".into())
        ]
    );
    assert!(
        rows[0]
            .event
            .argument_digest
            .as_deref()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        rows[0].event.arguments.is_none(),
        "arguments are kept as a digest only by default"
    );
}

#[tokio::test]
async fn unknown_keys_are_401_and_bad_bodies_say_what_is_wrong() {
    let g = gateway("bad", Policy::quickstart(), true).await;
    let (status, body) = call(&g, None, json!({"tool": "x"})).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (status, _) = call(&g, Some("sk-wrong"), json!({"tool": "x"})).await;
    assert_eq!(status, 401);
    let (status, body) = call(&g, Some(KEY), json!({"tool": "x", "argumnets": {}})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `argumnets`"),
        "{body}"
    );
    let big = json!({"tool": "x", "arguments": {"blob": "x".repeat(2 << 20)}});
    let (status, _) = call(&g, Some(KEY), big).await;
    assert_eq!(status, 413);
}

/// Issue 23, items 1 and 2: `/v1/tool-calls` decides the arguments as
/// they were sent, not as a lenient parser reads them. A key given twice
/// (parsers disagree on which one wins) or arguments that are not an
/// object are denied `tool.arguments_invalid` and audited with the digest
/// of the text as sent; a number no double holds is digested digit for
/// digit, so what was decided is exactly what was sent.
#[tokio::test]
async fn tool_call_arguments_are_decided_exactly_as_sent() {
    let g = gateway("raw-args", Policy::quickstart(), true).await;
    let invalid = [
        ("r-dup", r#"{"q": "opening hours", "q": "rm -rf /"}"#),
        ("r-array", "[1]"),
        ("r-string", r#""{\"q\": 1}""#),
        ("r-null", "null"),
    ];
    for (id, raw) in invalid {
        let body = format!(r#"{{"tool": "search_web", "requestId": "{id}", "arguments": {raw}}}"#);
        let (status, body) = call_raw(&g, Some(KEY), &body).await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (403, Some("tool.arguments_invalid")),
            "{raw}: {body}"
        );
    }
    // `NaN` makes the body itself something other than JSON.
    let (status, body) = call_raw(
        &g,
        Some(KEY),
        r#"{"tool": "search_web", "arguments": {"q": NaN}}"#,
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let precise = r#"{"n": 123456789012345678901234567890, "x": 0.10000000000000000555}"#;
    let (status, body) = call_raw(
        &g,
        Some(KEY),
        &format!(r#"{{"tool": "search_web", "requestId": "r-precise", "arguments": {precise}}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    g.state.audit.flush().await.unwrap();
    let digests: std::collections::HashMap<String, (String, String)> = g
        .store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let e = r.event;
            (e.request_id, (e.decision, e.argument_digest.unwrap()))
        })
        .collect();
    for (id, raw) in invalid.into_iter().chain([("r-precise", precise)]) {
        let expected = palisade_policy::ToolArguments::parse(raw);
        assert_eq!(
            digests[id].1,
            expected.digest(),
            "{id}: audited with the digest of what was sent"
        );
    }
    assert_eq!(digests["r-dup"].0, "Deny");
    assert_ne!(
        digests["r-precise"].1,
        palisade_policy::argument_digest(
            &json!({"n": 123456789012345678901234567890_f64, "x": 0.1})
        ),
        "not rounded through a double"
    );
}

/// Issue 23, item 10: metric labels stay bounded by the policy. A call
/// decided by a glob rule is counted under the rule, never the tool name
/// the caller made up; a tool name longer than 256 bytes is refused with
/// its own code (and audited under a bounded name).
#[tokio::test]
async fn decisions_are_counted_by_rule_and_overlong_tool_names_are_refused() {
    let g = gateway("labels", Policy::quickstart(), true).await;
    for tool in ["search_web", "search_made_up_1", "read_made_up_2"] {
        let (status, _) = call(&g, Some(KEY), json!({"tool": tool})).await;
        assert_eq!(status, 200, "{tool}");
    }
    let (status, _) = call(&g, Some(KEY), json!({"tool": "drop_made_up_3"})).await;
    assert_eq!(status, 403);
    let metrics = g.state.metrics.render();
    assert!(
        metrics.contains("palisade_decisions_total{agent=\"demo\",decision=\"Allow\",kind=\"tool_call\",namespace=\"default\",reason=\"tool.allowed_by_rule\",rule=\"spec.tools.rules[0]\"} 3"),
        "{metrics}"
    );
    assert!(!metrics.contains("made_up"), "{metrics}");

    let long = format!("search_{}", "x".repeat(250));
    let (status, body) = call(&g, Some(KEY), json!({"tool": long, "requestId": "r-long"})).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (400, Some("tool.name_too_long")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("256 bytes"), "{message}");
    let (status, _) = call(&g, Some(KEY), json!({"tool": &long[..256]})).await;
    assert_eq!(status, 200, "256 bytes is still a name");
    g.state.audit.flush().await.unwrap();
    let rows = g.store.query(&Filter::default()).await.unwrap();
    let refused = rows
        .iter()
        .find(|r| r.event.request_id == "r-long")
        .expect("the refusal is audited");
    assert_eq!(refused.event.reason_codes, ["tool.name_too_long"]);
    assert!(refused.event.tool.as_ref().unwrap().len() <= 260);
}

#[tokio::test]
async fn kill_switches_stop_the_agent_and_are_counted() {
    let g = gateway("kill", Policy::quickstart().suspended(), true).await;
    let (status, body) = call(&g, Some(KEY), json!({"tool": "search_web"})).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (403, Some("kill_switch.policy"))
    );
    let metrics = g.state.metrics.render();
    assert!(
        metrics
            .contains("palisade_kill_switch_hits_total{namespace=\"default\",scope=\"policy\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("palisade_decisions_total{agent=\"demo\",decision=\"Deny\",kind=\"tool_call\",namespace=\"default\",reason=\"kill_switch.policy\",rule=\"spec.suspend\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_changed_file_is_swapped_in_and_an_invalid_edit_keeps_the_previous_configuration() {
    let g = gateway("reload", Policy::quickstart(), true).await;
    let before = g.state.config.load_full().unwrap().revision().to_owned();
    let watcher = reload::watch(
        g.config.clone(),
        g.state.config.clone(),
        g.state.metrics.clone(),
        std::time::Duration::from_millis(50),
        (Vec::new(), Default::default()),
    );
    let path = &g.config[0];
    std::fs::write(path, Policy::quickstart().agent_suspended("demo").yaml()).unwrap();
    let mut switched = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if g.state.config.load_full().unwrap().revision() != before {
            switched = true;
            break;
        }
    }
    assert!(switched, "the edit was picked up");
    let (_, body) = call(&g, Some(KEY), json!({"tool": "search_web"})).await;
    assert_eq!(body["error"]["code"], "kill_switch.agent");

    let serving = g.state.config.load_full().unwrap().revision().to_owned();
    std::fs::write(path, "apiVersion: palisade.dev/v1alpha1\nkind: AIPolicy\nmetadata: {name: broken}\nspec: {routing: {}}\n").unwrap();
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if g.state.metrics.config_reload_errors.get() > 0 {
            break;
        }
    }
    assert_eq!(g.state.metrics.config_reload_errors.get(), 1);
    assert_eq!(
        g.state.config.load_full().unwrap().revision(),
        serving,
        "the previous configuration keeps serving"
    );
    watcher.abort();
}

#[test]
fn the_binary_serves_until_sigterm_and_drains_the_audit_queue() {
    use std::io::{Read, Write};
    let d = temp_dir("gw-binary");
    let config = Policy::quickstart().write_to(&d);
    let (child, addr) = common::spawn_gateway(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--header-read-timeout",
        "1s",
        "--body-read-timeout",
        "1s",
    ]);
    // A client that never finishes its headers is cut off.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    write!(slow, "POST /v1/tool-calls HTTP/1.1\r\nhost: x\r\n").unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "a slow client held the connection for {:?}",
        started.elapsed()
    );
    // One that trickles its body is answered 408 and cut off.
    let mut trickle = std::net::TcpStream::connect(&addr).unwrap();
    write!(trickle, "POST /v1/tool-calls HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"tool\":").unwrap();
    trickle
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = String::new();
    let _ = trickle.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for i in 0..20 {
        let resp = tool_call_over_tcp(&addr, &format!("bin-{i}"));
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    assert_eq!(
        audited_rows_after_sigterm(child, &config),
        20,
        "every decision made before SIGTERM is in the audit"
    );
}

/// Issue 23: the operator-token / agent-key check runs on every reload,
/// not only at start-up. An edit that gives an agent the operator's token
/// as its key is rejected (counted, the previous configuration keeps
/// serving), so the operator's token never becomes an agent's.
#[test]
fn a_reload_that_gives_an_agent_the_operator_token_is_rejected() {
    const OPERATOR: &str = "operator-token-123";
    // Settings and Secret documents: outside what the kit's Policy edits.
    let config = temp_dir("gw-collide").join("policy.yaml");
    let quickstart = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart.yaml"
    ))
    .unwrap();
    std::fs::write(&config, {
        quickstart.replace(
            "  namespace: default\n",
            "  namespace: default\n  approvals:\n    operators:\n      - {name: oncall, tokenEnv: PALISADE_TEST_OPERATOR}\n",
        )
    })
    .unwrap();
    let args = [&run_args(&config)[..], &["--reload-interval", "100ms"]].concat();
    let (mut child, addr) =
        common::spawn_gateway_with_env(&args, &[("PALISADE_TEST_OPERATOR", OPERATOR)]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("apiKey: demo-key-change-me", &format!("apiKey: {OPERATOR}")),
    )
    .unwrap();
    let metric = "palisade_config_reload_errors_total 1";
    let mut metrics = String::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        metrics = http_get(&addr, "/metrics");
        if metrics.contains(metric) {
            break;
        }
    }
    let as_agent = tool_call_with_key(&addr, OPERATOR);
    let demo = tool_call_with_key(&addr, KEY);
    let _ = child.kill();
    let _ = child.wait();
    assert!(metrics.contains(metric), "the edit was rejected: {metrics}");
    assert!(
        as_agent.starts_with("HTTP/1.1 401"),
        "the operator's token is no agent's key: {as_agent}"
    );
    assert!(
        demo.starts_with("HTTP/1.1 200"),
        "the previous configuration keeps serving: {demo}"
    );
}

/// Issue 23: a kill switch always wins. An edit that sets `suspend: true`
/// but does not load (here: a misspelt field) is rejected — and its kill
/// switch still turns on over the configuration being served; fixing the
/// edit without the switch lifts it.
#[test]
fn a_kill_switch_in_an_edit_that_does_not_load_still_stops_the_agent() {
    let config = temp_dir("gw-switch-broken").join("policy.yaml");
    let quickstart = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart.yaml"
    ))
    .unwrap();
    std::fs::write(&config, &quickstart).unwrap();
    let args = [&run_args(&config)[..], &["--reload-interval", "100ms"]].concat();
    let (mut child, addr) = common::spawn_gateway(&args);
    let before = tool_call_with_key(&addr, KEY);
    let until = |wanted: &str| {
        let mut last = String::new();
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            last = tool_call_with_key(&addr, KEY);
            if last.contains(wanted) {
                break;
            }
        }
        last
    };
    std::fs::write(
        &config,
        quickstart.replace(
            "spec:\n  agents:\n",
            "spec:\n  suspend: true\n  toolz: {}\n  agents:\n",
        ),
    )
    .unwrap();
    let suspended = until("kill_switch.policy");
    let metrics = http_get(&addr, "/metrics");
    std::fs::write(&config, &quickstart).unwrap();
    let lifted = until("HTTP/1.1 200");
    let _ = child.kill();
    let _ = child.wait();
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert!(
        metrics.contains("palisade_config_reload_errors_total 1"),
        "the broken edit was rejected: {metrics}"
    );
    assert!(
        suspended.starts_with("HTTP/1.1 403") && suspended.contains("kill_switch.policy"),
        "the rejected edit's kill switch stops the agent: {suspended}"
    );
    assert!(
        lifted.starts_with("HTTP/1.1 200"),
        "an edit that loads lifts it: {lifted}"
    );
}

fn http_get(addr: &str, path: &str) -> String {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
    )
}

/// A `/v1/tool-calls` request for `search_web` with `key`; the raw answer.
fn tool_call_with_key(addr: &str, key: &str) -> String {
    let request = http_request("POST", "/v1/tool-calls", r#"{"tool":"search_web"}"#)
        .replace(&format!("Bearer {KEY}"), &format!("Bearer {key}"));
    exchange(addr, &request)
}

/// Sends `request` on its own connection; the raw answer.
fn exchange(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// One `/v1/tool-calls` request for `search_web` on its own connection;
/// the raw HTTP answer.
fn tool_call_over_tcp(addr: &str, request_id: &str) -> String {
    let body = format!("{{\"tool\":\"search_web\",\"requestId\":\"{request_id}\"}}");
    exchange(addr, &http_request("POST", "/v1/tool-calls", &body))
}

fn http_request(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Stops the gateway with SIGTERM (it drains its audit queue) and counts
/// the rows `palisade-gateway audit query` then finds.
fn audited_rows_after_sigterm(mut child: std::process::Child, config: &std::path::Path) -> usize {
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([
            "audit",
            "query",
            "--config",
            config.to_str().unwrap(),
            "--output",
            "jsonl",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// `palisade-gateway run` on `config`, listening on a free port.
fn run_args(config: &std::path::Path) -> [&str; 5] {
    [
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]
}

/// The runtime's threads named `tokio-rt-worker` in process `pid`.
fn worker_threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).unwrap_or_default().trim() == "tokio-rt-worker"
        })
        .count()
}

#[test]
fn worker_threads_sets_the_serving_threads_and_refuses_zero() {
    let config = written("threads", &Policy::quickstart());
    let args = run_args(&config);
    // One thread: a single-threaded runtime (no worker pool); three: three
    // workers. Either way the gateway serves and drains its audit.
    for (threads, workers) in [("1", 0), ("3", 3)] {
        let (child, addr) =
            common::spawn_gateway(&[&args[..], &["--worker-threads", threads]].concat());
        assert_eq!(
            worker_threads_of(child.id()),
            workers,
            "--worker-threads {threads}"
        );
        for i in 0..5 {
            let resp = tool_call_over_tcp(&addr, &format!("t{threads}-{i}"));
            assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        }
        assert_eq!(
            audited_rows_after_sigterm(child, &config),
            if threads == "1" { 5 } else { 10 }
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([&args[..], &["--worker-threads", "0"]].concat())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--worker-threads") && err.contains("0"),
        "{err}"
    );
}

#[test]
fn no_audit_records_nothing_counts_what_it_dropped_and_is_refused_in_a_cluster() {
    use std::io::{Read, Write};
    let config = written("no-audit", &Policy::quickstart());
    let args = run_args(&config);
    let (child, addr) = common::spawn_gateway(&[&args[..], &["--no-audit"]].concat());
    for i in 0..3 {
        let resp = tool_call_over_tcp(&addr, &format!("off-{i}"));
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(s, "{}", http_request("GET", "/metrics", "")).unwrap();
    let mut metrics = String::new();
    s.read_to_string(&mut metrics).unwrap();
    assert!(
        metrics.contains("palisade_audit_discarded_total 3"),
        "the dropped decisions are counted: {metrics}"
    );
    assert_eq!(audited_rows_after_sigterm(child, &config), 0);
    // The same gateway with the audit on records what it decides.
    let (child, addr) = common::spawn_gateway(&args);
    assert!(tool_call_over_tcp(&addr, "on-0").starts_with("HTTP/1.1 200"));
    assert_eq!(audited_rows_after_sigterm(child, &config), 1);
    // A gateway in a cluster always audits.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args(["run", "--kubernetes", "--no-audit"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--no-audit") && err.contains("--kubernetes"),
        "{err}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_gateway_serves() {
    let mut g = gateway("openapi", Policy::quickstart(), true).await;
    // With an auditor token, so that the audit routes are served too.
    let d = temp_dir("gw-openapi-audited");
    let (store, audit) = common::audit_in(&d).await;
    g.state = palisade_gateway::state::AppState::builder(
        g.state.config.clone(),
        audit,
        g.state.metrics.clone(),
        palisade_gateway::approvals::Approvals::local(store.clone(), "gateway-test"),
    )
    .audit_reader(store, "auditor-token".into())
    .build();
    let resp = app(g.state.clone())
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    // Every route the router mounts is documented (path parameters by
    // position: the router says {verb} where the document says {action}).
    let shape = |path: &str| {
        path.split('/')
            .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
            .collect::<Vec<_>>()
            .join("/")
    };
    let documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| shape(p))
        .collect();
    let router = include_str!("../src/router.rs");
    let served: Vec<&str> = router
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"')?.split('"').next())
        .collect();
    assert!(served.len() >= 16, "{served:?}");
    for path in served {
        assert!(
            documented.contains(&shape(path)),
            "{path} is served but not documented"
        );
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            // Path parameters get example values (an unknown action is 404).
            let uri = path
                .replace("{name}", "demo-000000000000")
                .replace("{action}", "approve");
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(uri)
                .body(Body::empty())
                .unwrap();
            let status = app(g.state.clone()).oneshot(req).await.unwrap().status();
            assert!(
                status != 404 && status != 405,
                "{method} {path} is documented but not served ({status})"
            );
        }
    }
    let docs = app(g.state.clone())
        .oneshot(Request::get("/docs").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let html = String::from_utf8(
        axum::body::to_bytes(docs.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains("<code>POST /v1/tool-calls</code>") && html.contains("/openapi.json"));
}

#[tokio::test]
async fn the_audit_can_be_read_over_http_with_the_auditor_token_only() {
    let g = gateway("auditq", Policy::quickstart(), true).await;
    let (status, _) = call(
        &g,
        Some(KEY),
        json!({"tool": "search_web", "requestId": "r-audited"}),
    )
    .await;
    assert_eq!(status, 200);
    g.state.audit.flush().await.unwrap();
    // The same gateway with an auditor token.
    let readable = AppState::builder(
        g.state.config.clone(),
        g.state.audit.clone(),
        g.state.metrics.clone(),
        palisade_gateway::approvals::Approvals::local(g.store.clone(), "gateway-test"),
    )
    .audit_reader(g.store.clone(), "auditor-secret".into())
    .build();
    let router = app(readable);
    let get = |token: &str| {
        Request::get("/v1/audit/events?requestId=r-audited")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        router.clone().oneshot(get(KEY)).await.unwrap().status(),
        401,
        "an agent key does not read the audit"
    );
    let resp = router.clone().oneshot(get("auditor-secret")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["events"][0]["tool"], "search_web");
    assert_eq!(body["events"][0]["decision"], "Allow");
    let plain = app(g.state.clone())
        .oneshot(get("auditor-secret"))
        .await
        .unwrap();
    assert_eq!(plain.status(), 404, "not served unless configured");
}
