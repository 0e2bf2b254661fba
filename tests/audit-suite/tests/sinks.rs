//! The audit store and writer against a real PostgreSQL server and an
//! SQLite file: the same suite, both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::store::redact_url;
use palisade_audit::{
    AuditDecision, AuditError, AuditEvent, AuditMetrics, AuditWriter, EventKind, Filter,
    Migrations, Store, WriterConfig,
};
use palisade_audit_suite::{Backends, TestPostgres, temp_dir};
use sqlx::Row;
use std::time::Duration;

fn event(
    request: &str,
    agent: &str,
    decision: AuditDecision,
    reason: &str,
    tool: Option<&str>,
) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::ToolCall, request, "clinic", agent, decision);
    e.reason_codes = vec![reason.to_owned()];
    e.tool = tool.map(String::from);
    e.policy = Some("clinic-assistant".into());
    e.policy_generation = Some(3);
    e
}

async fn row_count(store: &Store) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM audit_events")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("n")
}

async fn writer(store: Store) -> (AuditWriter, palisade_audit::WriterTask, std::path::PathBuf) {
    let spool = temp_dir("spool");
    let (w, t) = AuditWriter::start(
        store,
        WriterConfig::new(&spool),
        AuditMetrics::unregistered().unwrap(),
    )
    .unwrap();
    (w, t, spool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_applied_and_a_schema_older_or_newer_than_expected_is_refused() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("schema") {
        let fresh = Store::open(&url, Migrations::VerifyOnly).await.unwrap_err();
        assert!(
            matches!(fresh, AuditError::SchemaOlder { .. }),
            "{backend}: {fresh}"
        );
        assert!(
            fresh
                .to_string()
                .contains("run `palisade-gateway audit migrate"),
            "{backend}: {fresh}"
        );
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        Store::open(&url, Migrations::VerifyOnly).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (99999, 'future', CURRENT_TIMESTAMP, TRUE, $1, 0)")
            .bind(vec![0u8])
            .execute(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        let newer = Store::open(&url, Migrations::VerifyOnly).await.unwrap_err();
        // The newest migration the binary embeds: the count of audit/migrations.
        let known = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../audit/migrations"
        ))
        .unwrap()
        .count();
        assert_eq!(
            newer.to_string(),
            format!(
                "the audit database schema is newer than this binary supports (it has migration 99999, this binary knows up to {known}); upgrade Palisade before writing to it"
            ),
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_written_in_batches_and_found_by_every_filter() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("filters") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let (w, task, _) = writer(store.clone()).await;
        let before = jiff::Timestamp::now();
        w.record(event(
            "req-1",
            "intake",
            AuditDecision::Allow,
            "tool.allowed_by_rule",
            Some("sql_query"),
        ))
        .unwrap();
        w.record(event(
            "req-2",
            "intake",
            AuditDecision::Deny,
            "tool.denied_by_rule",
            Some("bulk_export"),
        ))
        .unwrap();
        w.record(event(
            "req-3",
            "billing",
            AuditDecision::Deny,
            "kill_switch.agent",
            Some("pay"),
        ))
        .unwrap();
        let mut chat = AuditEvent::new(
            EventKind::Chat,
            "req-4",
            "clinic",
            "intake",
            AuditDecision::Allow,
        );
        chat.reason_codes = vec!["routing.keyword".into(), "routing.prompt_length".into()];
        chat.provider = Some("local".into());
        w.record(chat).unwrap();
        w.flush().await.unwrap();
        let q = |f: Filter| {
            let store = store.clone();
            async move {
                store
                    .query(&f)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| c.event.request_id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            q(Filter::default()).await,
            ["req-1", "req-2", "req-3", "req-4"],
            "{backend}"
        );
        assert_eq!(
            q(Filter {
                request_id: Some("req-2".into()),
                ..Default::default()
            })
            .await,
            ["req-2"],
            "{backend}"
        );
        assert_eq!(
            q(Filter {
                agent: Some("billing".into()),
                ..Default::default()
            })
            .await,
            ["req-3"],
            "{backend}"
        );
        assert_eq!(
            q(Filter {
                decision: Some("Deny".into()),
                ..Default::default()
            })
            .await,
            ["req-2", "req-3"],
            "{backend}"
        );
        assert_eq!(
            q(Filter {
                reason: Some("routing.prompt_length".into()),
                ..Default::default()
            })
            .await,
            ["req-4"],
            "{backend}"
        );
        assert_eq!(
            q(Filter {
                reason: Some("routing".into()),
                ..Default::default()
            })
            .await,
            Vec::<String>::new(),
            "{backend}: reason matches whole codes"
        );
        assert_eq!(
            q(Filter {
                tool: Some("pay".into()),
                namespace: Some("clinic".into()),
                ..Default::default()
            })
            .await,
            ["req-3"],
            "{backend}"
        );
        assert_eq!(
            q(Filter {
                since: Some(before),
                until: Some(jiff::Timestamp::now()),
                limit: Some(2),
                ..Default::default()
            })
            .await,
            ["req-1", "req-2"],
            "{backend}"
        );
        let row = &store
            .query(&Filter {
                request_id: Some("req-1".into()),
                ..Default::default()
            })
            .await
            .unwrap()[0];
        assert_eq!(
            (
                row.event.policy.as_deref(),
                row.event.policy_generation,
                row.event.enforced
            ),
            (Some("clinic-assistant"), Some(3), true)
        );
        drop(w);
        task.join().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_are_idempotent_on_the_event_id() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("idempotent") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let mut chain = palisade_audit::event::Chain::new("w");
        let rows: Vec<_> = (0..250)
            .map(|i| {
                chain.link(event(
                    &format!("r{i}"),
                    "a",
                    AuditDecision::Allow,
                    "x",
                    None,
                ))
            })
            .collect();
        assert_eq!(store.insert(&rows).await.unwrap(), 250, "{backend}");
        assert_eq!(store.insert(&rows).await.unwrap(), 0, "{backend}");
        assert_eq!(row_count(&store).await, 250, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_reads_back_as_written_and_verifies() {
    // Each column set and each optional one empty, with text a naive
    // encoder would mangle: quotes, braces and commas (PostgreSQL array
    // syntax), newlines, NUL-free unicode, an empty string.
    let mut full = AuditEvent::new(
        EventKind::Chat,
        "req-\"1\"",
        "clinic",
        "in{take}",
        AuditDecision::Allow,
    );
    full.policy = Some("clinic, assistant".into());
    full.policy_generation = Some(i64::MAX);
    full.rule = Some(String::new());
    full.enforced = false;
    full.reason_codes = vec!["routing.keyword".into(), "tool.held_for_approval".into()];
    full.tool = Some("sql_query".into());
    full.argument_digest = Some(format!("sha256:{}", "b".repeat(64)));
    full.arguments =
        Some(serde_json::json!({"q": "SELECT 'x' -- \\ {1,2}", "n": [1, null, {"ü": true}]}));
    full.provider = Some("openai".into());
    full.model = Some("gpt-4o-mini".into());
    full.prompt_sha256 = Some("c".repeat(64));
    full.prompt_chars = Some(0);
    full.prompt_text = Some("line one\nline \"two\"\t{NULL}, ☃".into());
    full.upstream_status = Some(502);
    full.latency_us = Some(-1);
    full.approval = Some("intake-sql-query-7f3a".into());
    full.decided_by = Some("alice@example.com".into());
    full.input_tokens = Some(1_234);
    full.output_tokens = Some(0);
    full.cached_tokens = Some(i64::MAX);
    let mut empty = AuditEvent::new(
        EventKind::ToolCall,
        "req-2",
        "clinic",
        "intake",
        AuditDecision::Deny,
    );
    empty.reason_codes = Vec::new();
    let backends = Backends::start();
    for (backend, url) in backends.urls("roundtrip") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let mut chain = palisade_audit::event::Chain::new("w-roundtrip");
        let rows = vec![chain.link(full.clone()), chain.link(empty.clone())];
        assert_eq!(store.insert(&rows).await.unwrap(), 2, "{backend}");
        let back = store.query(&Filter::default()).await.unwrap();
        assert_eq!(back, rows, "{backend}");
        let report = store.verify(None).await.unwrap();
        assert_eq!((report.rows, report.broken), (2, None), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_the_first_edited_deleted_or_reordered_row() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("tamper") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let mut chain = palisade_audit::event::Chain::new("w");
        let rows: Vec<_> = (0..10)
            .map(|i| {
                chain.link(event(
                    &format!("r{i}"),
                    "a",
                    AuditDecision::Allow,
                    "x",
                    None,
                ))
            })
            .collect();
        store.insert(&rows).await.unwrap();
        let report = store.verify(None).await.unwrap();
        assert_eq!(
            (report.rows, report.writers, report.broken),
            (10, 1, None),
            "{backend}"
        );

        sqlx::query("UPDATE audit_events SET decision = 'Deny' WHERE seq = 4")
            .execute(store.pool())
            .await
            .unwrap();
        let broken = store.verify(None).await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 4, "{backend}");
        assert!(
            broken.problem.contains("edited"),
            "{backend}: {}",
            broken.problem
        );
        sqlx::query("UPDATE audit_events SET decision = 'Allow' WHERE seq = 4")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(
            store.verify(None).await.unwrap().broken,
            None,
            "{backend}: restoring the value restores the chain"
        );

        sqlx::query("DELETE FROM audit_events WHERE seq = 6")
            .execute(store.pool())
            .await
            .unwrap();
        let broken = store.verify(None).await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 7, "{backend}");
        assert!(
            broken.problem.contains("missing or were reordered"),
            "{backend}: {}",
            broken.problem
        );
        store.insert(&rows[5..6]).await.unwrap();

        // Swap two rows' positions.
        sqlx::query("UPDATE audit_events SET seq = 100 WHERE seq = 2")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE audit_events SET seq = 2 WHERE seq = 3")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE audit_events SET seq = 3 WHERE seq = 100")
            .execute(store.pool())
            .await
            .unwrap();
        let broken = store.verify(None).await.unwrap().broken.unwrap();
        assert_eq!(broken.seq, 2, "{backend}");
        assert!(
            broken.problem.contains("reordered"),
            "{backend}: {}",
            broken.problem
        );
    }
}

#[test]
fn database_urls_are_printed_without_their_password() {
    assert_eq!(
        redact_url("postgres://palisade:s3cret@db:5432/audit"),
        "postgres://palisade:***@db:5432/audit"
    );
    assert_eq!(
        redact_url("sqlite:///var/lib/palisade/audit.db"),
        "sqlite:///var/lib/palisade/audit.db"
    );
}

/// Records events r{i} for each i in `range`.
fn record_range(w: &AuditWriter, range: std::ops::Range<u32>) {
    for i in range {
        w.record(event(
            &format!("r{i}"),
            "a",
            AuditDecision::Allow,
            "x",
            None,
        ))
        .unwrap();
    }
}

/// Waits until `store` holds `rows` rows, failing with `what` after 10 s.
async fn rows_within_10_s(store: &Store, rows: i64, what: &str) {
    let start = tokio::time::Instant::now();
    loop {
        let n = row_count(store).await;
        if n >= rows {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} ({n} of {rows} written)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The writer sleeps through its linger (events do not wake it one by
/// one), yet a full batch or a waiting flush never waits for the linger
/// to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_or_a_flush_ends_the_linger_at_once() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("linger") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let mut config = WriterConfig::new(temp_dir("spool-linger"));
        config.linger = Duration::from_secs(60);
        config.batch_max = 10;
        let (w, task) =
            AuditWriter::start(store.clone(), config, AuditMetrics::unregistered().unwrap())
                .unwrap();
        let count = async || row_count(&store).await;
        w.record(event("r0", "a", AuditDecision::Allow, "x", None))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(count().await, 0, "{backend}: the first event lingers");

        record_range(&w, 1..10);
        rows_within_10_s(
            &store,
            10,
            &format!("{backend}: a full batch waited for the linger"),
        )
        .await;

        w.record(event("r10", "a", AuditDecision::Allow, "x", None))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), w.flush())
            .await
            .unwrap_or_else(|_| panic!("{backend}: a flush waited for the linger"))
            .unwrap();
        assert_eq!(count().await, 11, "{backend}");

        // A backlog of full batches is written back to back while senders
        // stay: the writer does not sleep a linger between batches it
        // already has (it did: a writer behind the traffic wrote one batch
        // per linger, whatever the database's speed).
        record_range(&w, 11..41);
        rows_within_10_s(
            &store,
            41,
            &format!("{backend}: a backlog of full batches waited a linger between batches"),
        )
        .await;

        // Full batches already queued do not linger either (at shutdown a
        // full queue would otherwise take one linger per batch).
        record_range(&w, 41..71);
        drop(w);
        tokio::time::timeout(Duration::from_secs(10), task.join())
            .await
            .unwrap_or_else(|_| panic!("{backend}: queued full batches waited for the linger"));
        assert_eq!(count().await, 71, "{backend}");
    }
}

/// Between batches under steady traffic the writer looks at the queue once
/// a linger instead of being woken by each first event; after a quiet
/// linger it waits for the next event again. Either way an event is
/// written about a linger after it is recorded, without a flush, and the
/// last handle going ends the writer at once even mid-linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_written_a_linger_after_they_are_recorded_busy_or_not() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("cadence") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let mut config = WriterConfig::new(temp_dir("spool-cadence"));
        config.linger = Duration::from_millis(200);
        let (w, task) =
            AuditWriter::start(store.clone(), config, AuditMetrics::unregistered().unwrap())
                .unwrap();
        let written_within = async |n: i64, what: &str| {
            let recorded = tokio::time::Instant::now();
            while row_count(&store).await < n {
                assert!(
                    recorded.elapsed() < Duration::from_secs(5),
                    "{backend}: {what} was not written without a flush"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        w.record(event("r0", "a", AuditDecision::Allow, "x", None))
            .unwrap();
        written_within(1, "the first event").await;
        // Recorded while the writer is between looks at the queue.
        tokio::time::sleep(Duration::from_millis(50)).await;
        w.record(event("r1", "a", AuditDecision::Allow, "x", None))
            .unwrap();
        written_within(2, "an event under steady traffic").await;
        // Quiet for several lingers: the writer waits for an event again.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        w.record(event("r2", "a", AuditDecision::Allow, "x", None))
            .unwrap();
        written_within(3, "an event after a quiet spell").await;

        let mut config = WriterConfig::new(temp_dir("spool-cadence-stop"));
        config.linger = Duration::from_secs(60);
        let (w2, task2) =
            AuditWriter::start(store.clone(), config, AuditMetrics::unregistered().unwrap())
                .unwrap();
        w2.record_durable(event("r3", "a", AuditDecision::Allow, "x", None))
            .await
            .unwrap();
        // The writer is now between looks at the queue, a minute apart.
        w2.record(event("r4", "a", AuditDecision::Allow, "x", None))
            .unwrap();
        drop(w2);
        tokio::time::timeout(Duration::from_secs(10), task2.join())
            .await
            .unwrap_or_else(|_| panic!("{backend}: the writer waited out its linger at shutdown"));
        assert_eq!(row_count(&store).await, 5, "{backend}");
        drop(w);
        task.join().await;
    }
}

/// The writer has its own thread: events recorded on a single-threaded
/// runtime (the gateway's, pinned to one core) are written to PostgreSQL
/// while that runtime is busy and never yields — and, the other way
/// round, the writer's batches and spool fsyncs never stall the requests
/// queued on that runtime. (SQLite is left out: its one pooled
/// connection is shared with the queries on the caller's runtime, and
/// goes back to the pool on that runtime.)
#[tokio::test(flavor = "current_thread")]
async fn events_are_written_while_the_recording_runtime_is_busy() {
    let postgres = TestPostgres::start();
    let store = Store::open(&postgres.database("busy"), Migrations::Apply)
        .await
        .unwrap();
    let metrics = AuditMetrics::unregistered().unwrap();
    let mut config = WriterConfig::new(temp_dir("spool-busy"));
    config.linger = Duration::from_millis(5);
    let (w, task) = AuditWriter::start(store.clone(), config, metrics.clone()).unwrap();
    for i in 0..20 {
        w.record(event(
            &format!("busy-{i}"),
            "a",
            AuditDecision::Allow,
            "x",
            None,
        ))
        .unwrap();
    }
    // Hold this runtime's only thread without yielding.
    let started = std::time::Instant::now();
    while metrics.written.get() < 20 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        metrics.written.get(),
        20,
        "the writer waited for the recording runtime to yield"
    );
    drop(w);
    task.join().await;
    assert_eq!(row_count(&store).await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_is_kept_once_per_agent_and_its_lift_returns_what_it_was() {
    use palisade_audit::quarantines::{QuarantineRow, QuarantineStore};
    let backends = Backends::start();
    for (backend, url) in backends.urls("quarantines") {
        let store = QuarantineStore::new(Store::open(&url, Migrations::Apply).await.unwrap());
        let row = |kind: &str, request: &str| QuarantineRow {
            namespace: "clinic".into(),
            agent: "intake".into(),
            kind: kind.into(),
            detail: "argument path looks like path traversal".into(),
            request_id: request.into(),
            since: jiff::Timestamp::from_millisecond(1_800_000_000_123).unwrap(),
        };
        let first = row("path_traversal", "r-1");
        assert!(store.add(&first).await.unwrap(), "{backend}");
        // A second alert keeps the first row.
        assert!(
            !store.add(&row("sql_injection", "r-2")).await.unwrap(),
            "{backend}"
        );
        assert_eq!(
            store.list().await.unwrap(),
            vec![first.clone()],
            "{backend}"
        );
        assert_eq!(
            store.lift("clinic", "other").await.unwrap(),
            None,
            "{backend}"
        );
        assert_eq!(
            store.lift("clinic", "intake").await.unwrap(),
            Some(first),
            "{backend}"
        );
        assert_eq!(store.list().await.unwrap(), vec![], "{backend}");
        assert_eq!(
            store.lift("clinic", "intake").await.unwrap(),
            None,
            "{backend}"
        );
    }
}
