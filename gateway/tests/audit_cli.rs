//! `palisade-gateway audit migrate | verify | query`, run as an operator
//! would, against an SQLite audit file written by the real writer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::{
    AuditDecision, AuditEvent, AuditKey, AuditMetrics, AuditWriter, EventKind, Migrations, Store,
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
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        text.starts_with("audit chain: 3 rows from 1 writer\n")
            && text.ends_with("result: intact\n"),
        "{text}"
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
        text.contains("\nresult: BROKEN at writer ")
            && text.contains(" seq 2 ")
            && text.contains("edited"),
        "{text}"
    );
}

/// One process start of a gateway holding `key`: `n` decisions.
async fn keyed_writer(url: &str, key: &AuditKey, n: usize) {
    let store = Store::open(url, Migrations::Apply).await.unwrap();
    let mut config = WriterConfig::new(dir("keyed-spool"));
    config.key = Some(key.clone());
    let (w, t) = AuditWriter::start(store, config, AuditMetrics::unregistered().unwrap()).unwrap();
    for i in 0..n {
        w.record(AuditEvent::new(
            EventKind::Chat,
            &format!("req-{i}"),
            "clinic",
            "intake",
            AuditDecision::Allow,
        ))
        .unwrap();
    }
    drop(w);
    t.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_which_checks_ran_and_without_the_key_that_it_could_not_check_them() {
    let d = dir("checks");
    // Where a standalone gateway run with d/policy.yaml keeps them.
    let url = format!("sqlite://{}", d.join("palisade-audit.db").display());
    let key_file = d.join("palisade-audit.key");
    std::fs::write(&key_file, format!("{}\n", "7f".repeat(32))).unwrap();
    let key = AuditKey::from_file(&key_file).unwrap();
    keyed_writer(&url, &key, 4).await;
    keyed_writer(&url, &key, 2).await;

    let ok = gateway(&[
        "audit",
        "verify",
        "--url",
        &url,
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for line in [
        "audit chain: 6 rows from 2 writers\n",
        "- order within each writer (seq, previous-hash links): checked\n",
        "- linkage between writers: checked: 1 of 2 chains starts from the newest row before it; 1 starts a new history (the first writer",
        "- chain ends no later writer links to (rows deleted from their end cannot be detected): 1 (writer ",
        &format!(
            "- keyed hashes (HMAC-SHA256): checked with key {}: 6 rows\n",
            key.fingerprint()
        ),
        "- unkeyed rows (plain SHA-256): none\n",
        "result: intact\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }

    // Without the key nothing says intact: exit 2, and why.
    let unkeyed = gateway(&["audit", "verify", "--url", &url]);
    let text = String::from_utf8_lossy(&unkeyed.stdout);
    assert_eq!(unkeyed.status.code(), Some(2), "{text}");
    assert!(
        text.contains("- keyed hashes (HMAC-SHA256): NOT checked for 6 rows: no key given (--key-file or PALISADE_AUDIT_KEY_FILE)\n")
            && text.contains("result: no broken link found, but not every check ran\n"),
        "{text}"
    );

    // A standalone gateway's key is found next to its configuration.
    let config = d.join("policy.yaml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.yaml"),
        &config,
    )
    .unwrap();
    let by_config = gateway(&["audit", "verify", "--config", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&by_config.stdout);
    assert_eq!(by_config.status.code(), Some(0), "{text}");
    assert!(text.contains("result: intact\n"), "{text}");

    // The wrong key: every keyed row fails its check.
    let wrong = d.join("wrong.key");
    std::fs::write(&wrong, "00".repeat(32)).unwrap();
    let out = gateway(&[
        "audit",
        "verify",
        "--url",
        &url,
        "--key-file",
        wrong.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not the key it was written with"), "{text}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_as_the_owner_leaves_the_runtime_role_insert_and_select_only() {
    let pg = palisade_audit_suite::TestPostgres::start();
    let owner = pg.database("runtime_role");
    // What the chart's migration Job runs.
    let out = Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([
            "audit",
            "migrate",
            "--url",
            &owner,
            "--runtime-role",
            "palisade_writer",
            "--runtime-password-env",
            "WRITER_PASSWORD",
        ])
        .env("WRITER_PASSWORD", "it's-a-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("role palisade_writer may SELECT and INSERT audit rows, nothing else"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // What the gateways and the operator connect as.
    let runtime = owner.replace("palisade@", "palisade_writer:it%27s-a-secret@");
    let d = dir("runtime-role");
    let key_file = d.join("audit.key");
    std::fs::write(&key_file, "ab".repeat(32)).unwrap();
    keyed_writer(&runtime, &AuditKey::from_file(&key_file).unwrap(), 3).await;
    let verified = gateway(&[
        "audit",
        "verify",
        "--url",
        &runtime,
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let store = Store::connect(&runtime).await.unwrap();
    for sql in [
        "UPDATE audit_events SET decision = 'Deny'",
        "DELETE FROM audit_events",
    ] {
        let refused = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .expect_err(sql);
        assert!(
            refused.to_string().contains("permission denied"),
            "{sql}: {refused}"
        );
    }
    // Run again (every upgrade): the role exists, its password is reset.
    let again = Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([
            "audit",
            "migrate",
            "--url",
            &owner,
            "--runtime-role",
            "palisade_writer",
        ])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // A role name that is not plain is refused, naming the flag.
    let bad = gateway(&[
        "audit",
        "migrate",
        "--url",
        &owner,
        "--runtime-role",
        "w; DROP TABLE x",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("--runtime-role \"w; DROP TABLE x\" is not a plain PostgreSQL role name"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// `audit usage`: requests and tokens per namespace, agent, provider and
/// model over the last 24 hours (or `--since`), as a table or JSON lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_prints_tokens_per_agent_provider_and_model() {
    let d = dir("usage");
    let url = format!("sqlite://{}", d.join("audit.db").display());
    let (w, _t) = seed(&url).await;
    for (req, kind, tokens) in [
        ("req-4", EventKind::Chat, Some((120, 30, 100))),
        ("req-5", EventKind::Chat, None),
        ("req-5", EventKind::Usage, Some((80, 10, 0))),
    ] {
        let mut e = AuditEvent::new(kind, req, "clinic", "intake", AuditDecision::Allow);
        e.provider = Some("cloud".into());
        e.model = Some("gpt-4o".into());
        if let Some((i, o, c)) = tokens {
            (e.input_tokens, e.output_tokens, e.cached_tokens) = (Some(i), Some(o), Some(c));
        }
        w.record(e).unwrap();
    }
    w.flush().await.unwrap();
    let out = gateway(&["audit", "usage", "--url", &url]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec![
                "NAMESPACE/AGENT",
                "PROVIDER",
                "MODEL",
                "REQUESTS",
                "INPUT",
                "OUTPUT",
                "CACHED"
            ],
            vec!["clinic/intake", "cloud", "gpt-4o", "2", "200", "40", "100"],
        ]
    );
    let out = gateway(&[
        "audit", "usage", "--url", &url, "--agent", "billing", "--output", "jsonl",
    ]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "no routed requests of billing"
    );
    let bad = gateway(&["audit", "usage", "--url", &url, "--since", "yesterday"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--since"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
