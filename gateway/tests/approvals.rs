//! Approvals of the standalone gateway: held calls answer 202, an operator
//! decides over HTTP or with the `approvals` CLI, the approved call runs
//! once and only for the exact agent, tool and arguments, before expiry;
//! every outcome is audited and counted.
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
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const KEY: &str = "demo-key-change-me";
const OPERATOR: &str = "operator-token-for-tests";

struct Gateway {
    state: AppState,
    store: Store,
}

async fn gateway(name: &str, ttl: &str) -> Gateway {
    gateway_with(name, Policy::quickstart().approvals_ttl(ttl)).await
}

async fn gateway_with(name: &str, policy: Policy) -> Gateway {
    let d = temp_dir(&format!("appr-{name}"));
    let files = vec![policy.write_to(&d)];
    let metrics = Arc::new(GatewayMetrics::new().unwrap());
    let current = snapshot::empty();
    reload::load_into(&files, &current, &metrics).unwrap();
    let (state, store) = common::standalone(&d, current, metrics, OPERATOR).await;
    Gateway { state, store }
}

async fn send(
    g: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app(g.state.clone())
        .oneshot(req.body(body).unwrap())
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

async fn tool(g: &Gateway, body: Value) -> (StatusCode, Value) {
    send(g, "POST", "/v1/tool-calls", Some(KEY), Some(body)).await
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .or(body["reasonCode"].as_str())
        .unwrap_or("")
}

#[tokio::test]
async fn approve_once_then_replay_and_mismatch_are_refused_and_every_step_is_audited() {
    let g = gateway("approve", "15m").await;
    let call = json!({"tool": "send_email", "arguments": {"to": "a@b.c", "body": "hi"}, "requestId": "r-1"});

    // Held: 202 with the approval's name, where to poll and the expiry.
    let (status, held) = tool(&g, call.clone()).await;
    assert_eq!(status, 202, "{held}");
    assert_eq!(
        held["reasonCode"], "tool.approval_required_by_rule",
        "why it is held"
    );
    assert_eq!(held["reasonCodes"][1], "approval.pending");
    assert_eq!(held["approval"]["phase"], "Pending");
    let name = held["approval"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("demo-"), "{name}");
    assert_eq!(held["approval"]["poll"], format!("/v1/approvals/{name}"));
    assert!(
        held["approval"]["expiresAt"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            > jiff::Timestamp::now()
    );
    // The same request again finds the same approval (idempotent).
    let (_, again) = tool(&g, call.clone()).await;
    assert_eq!(again["approval"]["name"], name.as_str());

    // Using it before a decision: still 202, still pending.
    let mut using = call.clone();
    using["approval"] = json!(name);
    let (status, body) = tool(&g, using.clone()).await;
    assert_eq!(
        (status.as_u16(), body["approval"]["phase"].as_str()),
        (202, Some("Pending"))
    );

    // Agents cannot list or decide; no token is 401.
    let (status, body) = send(
        &g,
        "POST",
        &format!("/v1/approvals/{name}/approve"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (403, "approvals.operator_only")
    );
    let (status, _) = send(&g, "GET", "/v1/approvals", None, None).await;
    assert_eq!(status, 401);
    let (status, list) = send(
        &g,
        "GET",
        "/v1/approvals?pending=true",
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["name"], name.as_str());

    // The agent long-polls; an operator approves meanwhile; the poll
    // answers at once, not at the end of its wait.
    let poll = {
        let g2 = Gateway {
            state: g.state.clone(),
            store: g.store.clone(),
        };
        let path = format!("/v1/approvals/{name}?wait=20s");
        tokio::spawn(async move {
            let started = Instant::now();
            let r = send(&g2, "GET", &path, Some(KEY), None).await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, decided) = send(
        &g,
        "POST",
        &format!("/v1/approvals/{name}/approve"),
        Some(OPERATOR),
        Some(json!({"reason": "customer asked for it"})),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["decidedBy"], "operator:oncall");
    // A 200 means the decision's audit row is recorded: readers that
    // catch up with what was answered (the audit API, the console) see it.
    // That it survives the gateway dying is answered_means_recorded.rs.
    g.state.audit.caught_up().await;
    let approved = g
        .store
        .query(&Filter {
            reason: Some("approval.approved".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(
        approved[0].event.decided_by.as_deref(),
        Some("operator:oncall")
    );
    let ((status, polled), waited) = poll.await.unwrap();
    assert_eq!(
        (status.as_u16(), polled["phase"].as_str()),
        (200, Some("Approved"))
    );
    assert!(
        waited < Duration::from_secs(5),
        "the long-poll waited {waited:?}"
    );

    // A decision is final.
    let (status, body) = send(
        &g,
        "POST",
        &format!("/v1/approvals/{name}/deny"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (409, "approval.already_decided")
    );

    // Different arguments: refused, and the approval is not used up.
    let mut other = using.clone();
    other["arguments"]["to"] = json!("someone@else.example");
    let (status, body) = tool(&g, other).await;
    assert_eq!((status.as_u16(), code(&body)), (403, "approval.mismatch"));

    // The approved call runs once.
    let (status, body) = tool(&g, using.clone()).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (200, "tool.allowed_by_approval"),
        "{body}"
    );
    let (status, body) = tool(&g, using.clone()).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (403, "approval.replay_refused")
    );
    let (_, polled) = send(&g, "GET", &format!("/v1/approvals/{name}"), Some(KEY), None).await;
    assert_eq!(polled["phase"], "Consumed");

    // The audit holds each step.
    g.state.audit.flush().await.unwrap();
    let rows = g.store.query(&Filter::default()).await.unwrap();
    let approval_rows: Vec<(String, String, Option<String>)> = rows
        .iter()
        .filter(|r| r.event.kind == palisade_audit::EventKind::Approval)
        .map(|r| {
            (
                r.event.reason_codes[0].clone(),
                r.event.decision.clone(),
                r.event.decided_by.clone(),
            )
        })
        .collect();
    assert_eq!(
        approval_rows[0],
        (
            "approval.approved".into(),
            "Approved".into(),
            Some("operator:oncall".into())
        )
    );
    assert_eq!(approval_rows[1].0, "approval.consumed");
    assert_eq!(approval_rows[2].0, "approval.replay_refused");
    let allowed = rows
        .iter()
        .find(|r| {
            r.event.reason_codes.first().map(String::as_str) == Some("tool.allowed_by_approval")
        })
        .expect("the allowed call is audited");
    assert_eq!(allowed.event.decision, "Allow");
    assert_eq!(allowed.event.approval.as_deref(), Some(name.as_str()));
    assert_eq!(allowed.event.decided_by.as_deref(), Some("operator:oncall"));

    let metrics = g.state.metrics.render();
    for outcome in [
        "requested",
        "approved",
        "consumed",
        "replay_refused",
        "mismatch",
    ] {
        assert!(
            metrics.contains(&format!(
                "palisade_approvals_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome} not counted:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn denied_expired_unknown_and_foreign_approvals_are_refused() {
    let g = gateway("deny", "1s").await;
    let (_, held) = tool(
        &g,
        json!({"tool": "send_email", "arguments": {"to": "x"}, "requestId": "r-d"}),
    )
    .await;
    let denied = held["approval"]["name"].as_str().unwrap().to_string();
    let (_, held) = tool(
        &g,
        json!({"tool": "send_email", "arguments": {"to": "y"}, "requestId": "r-e"}),
    )
    .await;
    let expiring = held["approval"]["name"].as_str().unwrap().to_string();

    let (status, _) = send(
        &g,
        "POST",
        &format!("/v1/approvals/{denied}/deny"),
        Some(OPERATOR),
        Some(json!({"reason": "no"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = tool(
        &g,
        json!({"tool": "send_email", "arguments": {"to": "x"}, "approval": denied}),
    )
    .await;
    assert_eq!((status.as_u16(), code(&body)), (403, "approval.denied"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operator:oncall: no"),
        "{body}"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = send(
        &g,
        "POST",
        &format!("/v1/approvals/{expiring}/approve"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (409, "approval.expired"),
        "too late to decide"
    );
    let (status, body) = tool(
        &g,
        json!({"tool": "send_email", "arguments": {"to": "y"}, "approval": expiring}),
    )
    .await;
    assert_eq!((status.as_u16(), code(&body)), (403, "approval.expired"));

    let (status, body) = tool(
        &g,
        json!({"tool": "send_email", "arguments": {"to": "y"}, "approval": "demo-000000000000"}),
    )
    .await;
    assert_eq!((status.as_u16(), code(&body)), (403, "approval.not_found"));
    // Nesting is bounded before anything is parsed.
    let deep = format!(
        "{{\"tool\":\"send_email\",\"arguments\":{}1{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    let resp = app(g.state.clone())
        .oneshot(
            Request::post("/v1/tool-calls")
                .header("authorization", format!("Bearer {KEY}"))
                .header("content-type", "application/json")
                .body(Body::from(deep))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

fn gateway_binary(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approvals_cli_decides_for_a_running_gateway_and_expiry_is_audited() {
    let file = Policy::quickstart()
        .approvals_ttl("2s")
        .write_to(&temp_dir("appr-cli"));
    let file_arg = file.to_str().unwrap().to_owned();
    let (mut child, addr) =
        common::spawn_gateway(&["run", "--config", &file_arg, "--listen", "127.0.0.1:0"]);
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(format!("http://{addr}/v1/tool-calls"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let held: String = post(json!({"tool": "send_email", "arguments": {"to": "cli"}}))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let held: Value = serde_json::from_str(&held).unwrap();
    let name = held["approval"]["name"].as_str().unwrap().to_string();
    let _expires: String = post(json!({"tool": "send_email", "arguments": {"to": "never"}}))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let list = gateway_binary(&["approvals", "list", "--pending", "--config", &file_arg]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success() && listed.contains(&name) && listed.contains("Pending"),
        "{listed}"
    );
    // `show` gives the human what was held, the arguments included.
    let show = gateway_binary(&["approvals", "show", &name, "--config", &file_arg]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    assert!(shown.contains("tool:        send_email"), "{shown}");
    assert!(
        shown.contains("arguments:\n{\n  \"to\": \"cli\"\n}"),
        "{shown}"
    );
    let missing = gateway_binary(&[
        "approvals",
        "show",
        "demo-000000000000",
        "--config",
        &file_arg,
    ]);
    assert!(!missing.status.success());

    let approve = gateway_binary(&[
        "approvals",
        "approve",
        &name,
        "--reason",
        "checked",
        "--config",
        &file_arg,
    ]);
    let said = String::from_utf8_lossy(&approve.stdout);
    assert!(
        approve.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    assert!(said.contains("approved by cli:"), "{said}");
    let again = gateway_binary(&["approvals", "deny", &name, "--config", &file_arg]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already decided"));

    let used = post(json!({"tool": "send_email", "arguments": {"to": "cli"}, "approval": name}))
        .await
        .unwrap();
    assert_eq!(used.status(), 200);

    // The undecided one expires; the gateway audits that once.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let out = gateway_binary(&[
        "audit",
        "query",
        "--config",
        &file_arg,
        "--reason",
        "approval.expired",
        "--output",
        "jsonl",
    ]);
    let rows = String::from_utf8_lossy(&out.stdout);
    assert_eq!(rows.lines().count(), 1, "one expiry row:\n{rows}");
    let out = gateway_binary(&[
        "audit",
        "query",
        "--config",
        &file_arg,
        "--reason",
        "approval.approved",
        "--output",
        "jsonl",
    ]);
    let row: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(
        row["decidedBy"].as_str().unwrap().starts_with("cli:"),
        "{row}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn beyond_its_pending_approvals_an_agent_gets_429_and_a_retry_still_finds_its_own() {
    let g = gateway_with(
        "cap",
        Policy::quickstart()
            .approvals_ttl("15m")
            .max_pending_per_agent(2),
    )
    .await;
    let call = |to: &str, id: &str| json!({"tool": "send_email", "arguments": {"to": to}, "requestId": id});
    let (status, first) = tool(&g, call("a@b.c", "r-1")).await;
    assert_eq!(status, 202, "{first}");
    let (status, body) = tool(&g, call("b@b.c", "r-2")).await;
    assert_eq!(status, 202, "{body}");

    // A third would need a new approval: refused, recorded nowhere.
    let (status, body) = tool(&g, call("c@b.c", "r-3")).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (429, "limit.pending_approvals"),
        "{body}"
    );
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already has 2 approvals pending"),
        "{body}"
    );
    let (_, listed) = send(&g, "GET", "/v1/approvals", Some(OPERATOR), None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    // A retry of a call already held finds its approval.
    let (status, again) = tool(&g, call("a@b.c", "r-1")).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["approval"]["name"], first["approval"]["name"]);

    // Once one is decided there is room again.
    let name = first["approval"]["name"].as_str().unwrap();
    let (status, _) = send(
        &g,
        "POST",
        &format!("/v1/approvals/{name}/deny"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = tool(&g, call("c@b.c", "r-3")).await;
    assert_eq!(status, 202, "{body}");

    g.state.audit.flush().await.unwrap();
    let limited = g
        .store
        .query(&Filter {
            reason: Some("limit.pending_approvals".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert_eq!(limited[0].event.decision, "Deny");
}

#[tokio::test]
async fn a_megabyte_of_arguments_is_shown_as_a_4_kib_preview_and_the_approval_is_for_exactly_that_call()
 {
    let policy = Policy::quickstart()
        .approvals_ttl("15m")
        .set("audit", json!({"redactKeys": ["password"]}));
    let g = gateway_with("preview", policy).await;
    let text = "x".repeat(1_000_000);
    let call = json!({"tool": "send_email", "arguments": {"password": "hunter2", "recipient": "a@b.c", "text": text}, "requestId": "r-big"});
    let (status, held) = tool(&g, call.clone()).await;
    assert_eq!(status, 202, "{held}");
    let name = held["approval"]["name"].as_str().unwrap().to_owned();

    // What the operator sees: the start of the arguments, the password
    // redacted, at most 4 KiB, and that it was cut.
    let (status, list) = send(&g, "GET", "/v1/approvals", Some(OPERATOR), None).await;
    assert_eq!(status, 200);
    let seen = &list["items"][0];
    assert_eq!(seen["name"], name.as_str());
    assert_eq!(seen["argumentsTruncated"], true, "{seen}");
    let preview = seen["argumentsPreview"].as_str().unwrap();
    assert!(preview.len() <= 4096, "{}", preview.len());
    assert!(
        preview.starts_with(
            "{\n  \"password\": \"[REDACTED]\",\n  \"recipient\": \"a@b.c\",\n  \"text\": \"xxx"
        ),
        "{preview}"
    );
    assert!(!preview.contains("hunter2"));
    assert!(
        preview
            .ends_with("bytes are shown; the approval is for the full arguments, by their digest]"),
        "{preview}"
    );
    // The table stores the preview, not the megabyte.
    let namespace = seen["namespace"].as_str().unwrap();
    let stored = palisade_audit::approvals::ApprovalStore::new(g.store.clone())
        .get(namespace, &name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.call.arguments_preview, preview);
    assert!(stored.call.arguments_truncated);

    let (status, _) = send(
        &g,
        "POST",
        &format!("/v1/approvals/{name}/approve"),
        Some(OPERATOR),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Arguments that differ only past the preview are another call.
    let mut other = call.clone();
    other["arguments"]["text"] = json!(format!("{}y", "x".repeat(999_999)));
    other["approval"] = json!(name);
    let (status, body) = tool(&g, other).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (403, "approval.mismatch"),
        "{body}"
    );
    // Exactly the held call runs, once.
    let mut using = call;
    using["approval"] = json!(name);
    let (status, body) = tool(&g, using).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (200, "tool.allowed_by_approval"),
        "{body}"
    );
}
