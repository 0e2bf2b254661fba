//! `palisade-gateway audit migrate | verify | query`, run as an operator
//! would, against an SQLite audit file written by the real writer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::{
    AuditDecision, AuditEvent, AuditMetrics, AuditWriter, EventKind, Migrations, Store,
    WriterConfig,
};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args(args)
        .output()
        .unwrap()
}

fn dir(name: &str) -> std::path::PathBuf {
    palisade_testkit::temp_dir(&format!("audit-cli-{name}"))
}

async fn seed(url: &str) -> (AuditWriter, palisade_audit::WriterTask) {
    let store = Store::open(url, Migrations::Apply).await.unwrap();
    let (w, t) = AuditWriter::start(
        store,
        WriterConfig::new(dir("spool")),
        AuditMetrics::unregistered().unwrap(),
    )
    .unwrap();
    for (req, agent, decision, reason, tool) in [
        (
            "req-1",
            "intake",
            AuditDecision::Allow,
            "tool.allowed_by_rule",
            "sql_query",
        ),
        (
            "req-2",
            "intake",
            AuditDecision::Deny,
            "tool.denied_by_rule",
            "bulk_export",
        ),
        (
            "req-3",
            "billing",
            AuditDecision::Deny,
            "kill_switch.agent",
            "pay",
        ),
    ] {
        let mut e = AuditEvent::new(EventKind::ToolCall, req, "clinic", agent, decision);
        e.reason_codes = vec![reason.into()];
        e.tool = Some(tool.into());
        w.record(e).unwrap();
    }
    w.flush().await.unwrap();
    (w, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_filters_and_prints_table_or_json_lines() {
    let d = dir("query");
    let url = format!("sqlite://{}", d.join("audit.db").display());
    let (_w, _t) = seed(&url).await;
    let out = gateway(&[
        "audit",
        "query",
        "--url",
        &url,
        "--decision",
        "Deny",
        "--output",
        "jsonl",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let requests: Vec<&str> = rows
        .iter()
        .map(|r| r["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(requests, ["req-2", "req-3"]);
    let table = gateway(&[
        "audit",
        "query",
        "--url",
        &url,
        "--reason",
        "kill_switch.agent",
        "--since",
        "1h",
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("DECISION"),
        "{text}"
    );
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[1].contains("clinic/billing") && lines[1].contains("kill_switch.agent"),
        "{text}"
    );
    let bad = gateway(&["audit", "query", "--url", &url, "--since", "yesterday"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("--since \"yesterday\": write an RFC 3339 time"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_an_intact_chain_and_then_the_edited_row() {
    let d = dir("verify");
    let url = format!("sqlite://{}", d.join("audit.db").display());
    let (_w, _t) = seed(&url).await;
    let ok = gateway(&["audit", "verify", "--url", &url]);
    assert!(ok.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "chain intact: 3 rows from 1 writers"
    );
    let store = Store::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_events SET decision = 'Allow' WHERE request_id = 'req-2'")
        .execute(store.pool())
        .await
        .unwrap();
    let broken = gateway(&["audit", "verify", "--url", &url]);
    assert_eq!(broken.status.code(), Some(1));
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(
        text.starts_with("BROKEN at writer ")
            && text.contains(" seq 2 ")
            && text.contains("edited"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_schema_and_query_refuses_an_unmigrated_database() {
    let d = dir("migrate");
    let url = format!("sqlite://{}", d.join("fresh.db").display());
    let refused = gateway(&["audit", "query", "--url", &url]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("run `palisade-gateway audit migrate"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = gateway(&["audit", "migrate", "--url", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(gateway(&["audit", "query", "--url", &url]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_files_say_where_the_default_sqlite_audit_lives() {
    let d = dir("config");
    let config = d.join("policy.yaml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.yaml"),
        &config,
    )
    .unwrap();
    let out = gateway(&["audit", "migrate", "--config", config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.join("palisade-audit.db").exists(),
        "the SQLite file is created next to the configuration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_decisions_as_they_are_recorded() {
    let d = dir("follow");
    let url = format!("sqlite://{}", d.join("audit.db").display());
    let (w, _t) = seed(&url).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([
            "audit", "query", "--url", &url, "--output", "jsonl", "--follow", "--agent", "intake",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        serde_json::from_str::<serde_json::Value>(
            &rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(next()["requestId"], "req-1");
    assert_eq!(next()["requestId"], "req-2");
    let mut e = AuditEvent::new(
        EventKind::Chat,
        "req-new",
        "clinic",
        "intake",
        AuditDecision::Allow,
    );
    e.provider = Some("local".into());
    w.record(e).unwrap();
    w.flush().await.unwrap();
    assert_eq!(next()["requestId"], "req-new");
    let _ = child.kill();
    let _ = child.wait();
}
