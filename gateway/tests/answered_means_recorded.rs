//! Answered means recorded: every decision the real gateway answered is
//! in the audit database after the process is killed with SIGKILL the
//! moment the last answer arrived — tool calls over `/v1/tool-calls`, chat
//! requests and the tool calls their answers proposed — on SQLite (the
//! standalone default) and on PostgreSQL. With `--audit-chat-events
//! buffered`, the chat events are counted as answered before recorded. An
//! SQLite durability setting (`?synchronous=`) that does not exist stops
//! the start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use palisade_audit::Store;
use palisade_audit_suite::TestPostgres;
use palisade_fake_upstreams::{FakeOpenAi, Script};
use serde_json::json;
use sqlx::Row;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "recorded-key";

/// A policy for agent `app`: `search_*` allowed, the rest denied, chat
/// served by `upstream`, which proposes one allowed and one denied call.
fn write_policy(dir: &Path, upstream: &str) -> String {
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: recorded}}
spec:
  agents:
    - {{name: app, apiKeySecretRef: {{name: keys, key: app}}}}
  models: {{allow: ["*"]}}
  providers:
    - {{name: cloud, type: openai, baseUrl: "{upstream}"}}
  routing:
    defaultProvider: cloud
  tools:
    default: Deny
    rules:
      - {{tools: ["search_*"], action: Allow}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{app: {KEY}}}
"#
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// `palisade-gateway run` on `config`, a free port, auditing to
/// `audit_url`.
fn run_args<'a>(config: &'a str, audit_url: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--config",
        config,
        "--listen",
        "127.0.0.1:0",
        "--audit-url",
        audit_url,
    ]
}

/// Sends tool calls and chat requests from `clients` concurrent clients
/// for `load`: the request ids answered with a decision, each with the
/// rows it must have left (a tool call 1; a chat request 3: its route
/// and the two tool calls its answer proposed).
async fn answered(addr: &str, clients: usize, load: Duration) -> HashMap<String, i64> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let answered = Arc::new(Mutex::new(HashMap::new()));
    let until = Instant::now() + load;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, answered, addr) = (http.clone(), Arc::clone(&answered), addr.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < until {
                i += 1;
                let id = format!("req-{c}-{i}");
                let chat = i % 4 == 0;
                let request = if chat {
                    http.post(format!("http://{addr}/v1/chat/completions"))
                        .body(
                            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
                                .to_string(),
                        )
                } else {
                    let tool = if i % 2 == 0 {
                        "search_web"
                    } else {
                        "drop_table"
                    };
                    http.post(format!("http://{addr}/v1/tool-calls"))
                        .body(json!({"tool": tool, "arguments": {"q": i}}).to_string())
                };
                let answer = request
                    .header("content-type", "application/json")
                    .bearer_auth(KEY)
                    .header("x-request-id", &id)
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                // The whole answer, tool-call decisions included.
                let body = answer.text().await.unwrap();
                assert!(
                    status == 200 || (!chat && status == 403),
                    "{status}: {body}"
                );
                answered
                    .lock()
                    .unwrap()
                    .insert(id, if chat { 3 } else { 1 });
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(answered).unwrap().into_inner().unwrap()
}

/// Rows of every kind an answer waits for, by request id: not the
/// security alerts a request may raise (the load denies `drop_table` over
/// and over), which are queued beside the answer, never awaited by it.
const EVERY_KIND: &str = "SELECT request_id, COUNT(*) AS n FROM audit_events WHERE kind <> 'security_alert' GROUP BY request_id";
/// Tool-call rows by request id.
const TOOL_CALLS: &str = "SELECT request_id, COUNT(*) AS n FROM audit_events WHERE kind = 'tool_call' GROUP BY request_id";

/// Rows in the audit database by request id, as `query` counts them.
async fn rows_by_request(url: &str, query: &'static str) -> HashMap<String, i64> {
    let store = Store::connect(url).await.unwrap();
    sqlx::query(query)
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>("request_id"), r.get::<i64, _>("n")))
        .collect()
}

/// Loads the gateway auditing to `audit_url` (with `extra` flags), kills
/// it with SIGKILL as soon as the last answer is in, and starts it again
/// (to write its journal or spool to the database): what was answered, and the gateway's
/// metrics just before the kill.
async fn kill_after_answers(
    dir: &Path,
    audit_url: &str,
    extra: &[&str],
) -> (HashMap<String, i64>, String) {
    let upstream = FakeOpenAi::start(Script::ToolCalls(vec![
        ("search_web".into(), json!({"q": "x"})),
        ("drop_table".into(), json!({"t": "users"})),
    ]))
    .await
    .unwrap();
    let config = write_policy(dir, &upstream.base_url());
    let mut args = run_args(&config, audit_url);
    args.extend_from_slice(extra);
    let (mut gateway, addr) = common::spawn_gateway(&args);
    let answered = answered(&addr, 32, Duration::from_millis(1500)).await;
    let metrics = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    // Started again and stopped as an operator would (SIGTERM), so that
    // what it found of the killed one's (journal, spool) is written before
    // it exits.
    let (again, _) = common::spawn_gateway(&args);
    common::Stopped(again).stop();
    (answered, metrics)
}

/// Every answered request's rows are in the database, and nothing else.
fn assert_all_recorded(answered: &HashMap<String, i64>, rows: &HashMap<String, i64>) {
    assert!(answered.len() > 100, "only {} answers", answered.len());
    let missing: Vec<_> = answered
        .iter()
        .filter(|(id, n)| rows.get(*id) != Some(n))
        .map(|(id, n)| format!("{id}: {n} answered, {:?} recorded", rows.get(id)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests not (fully) recorded, e.g. {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(
        rows.values().sum::<i64>(),
        answered.values().sum::<i64>(),
        "rows of requests never answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_decision_survives_sigkill_on_sqlite() {
    let dir = palisade_testkit::temp_dir("recorded-sqlite");
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let (answered, _) = kill_after_answers(&dir, &url, &[]).await;
    assert_all_recorded(&answered, &rows_by_request(&url, EVERY_KIND).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_decision_survives_sigkill_on_postgres() {
    let pg = TestPostgres::start();
    let url = pg.database("recorded");
    let dir = palisade_testkit::temp_dir("recorded-pg");
    let (answered, _) = kill_after_answers(&dir, &url, &[]).await;
    assert_all_recorded(&answered, &rows_by_request(&url, EVERY_KIND).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_chat_events_are_counted_and_tool_call_decisions_stay_durable() {
    let dir = palisade_testkit::temp_dir("recorded-buffered");
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let (answered, metrics) =
        kill_after_answers(&dir, &url, &["--audit-chat-events", "buffered"]).await;
    let chats = answered.values().filter(|n| **n == 3).count();
    let buffered: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("palisade_audit_buffered_total "))
        .expect("palisade_audit_buffered_total is exported")
        .parse()
        .unwrap();
    assert_eq!(
        buffered, chats,
        "every chat event answered buffered is counted"
    );
    // The decisions on tool calls stay durable: one row per tool call
    // (a chat answer proposed two).
    let tool_calls: HashMap<String, i64> = answered
        .into_iter()
        .map(|(id, n)| (id, if n == 3 { 2 } else { 1 }))
        .collect();
    assert_all_recorded(&tool_calls, &rows_by_request(&url, TOOL_CALLS).await);
}

#[test]
fn an_sqlite_durability_setting_that_does_not_exist_is_refused_at_start_up() {
    let dir = palisade_testkit::temp_dir("recorded-bad-sync");
    let config = write_policy(&dir, "http://127.0.0.1:9");
    let url = format!(
        "sqlite://{}?synchronous=off",
        dir.join("audit.db").display()
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args(run_args(&config, &url))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with synchronous=off");
    assert!(stderr.contains("synchronous=\"off\""), "{stderr}");
    assert!(stderr.contains("?synchronous=full"), "{stderr}");
    // A setting that exists starts.
    let full = format!(
        "sqlite://{}?synchronous=full",
        dir.join("audit.db").display()
    );
    let (mut gateway, _) = common::spawn_gateway(&run_args(&config, &full));
    gateway.kill().unwrap();
    gateway.wait().unwrap();
}
