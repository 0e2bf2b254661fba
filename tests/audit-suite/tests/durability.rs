//! Nothing accepted is lost: the database dies mid-stream, the writer
//! process is killed with SIGKILL mid-spool, the spool fills up, the
//! process shuts down. And nothing secret is kept: canary markers in
//! prompts, keys and arguments never reach the database, the spool or the
//! logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::{
    AuditDecision, AuditError, AuditEvent, AuditMetrics, AuditWriter, EventKind, FailureMode,
    Migrations, Store, WriterConfig,
};
use palisade_audit_suite::{
    Backends, TestPostgres, assert_exactly_answered, drain_with_probe, numbered,
    probe_under_file_limit, temp_dir,
};
use sqlx::Row;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn config(spool: &std::path::Path) -> WriterConfig {
    let mut c = WriterConfig::new(spool);
    c.retry_interval = Duration::from_millis(100);
    c
}

async fn ids_in(store: &Store) -> (i64, HashSet<String>) {
    let rows = sqlx::query("SELECT id FROM audit_events")
        .fetch_all(store.pool())
        .await
        .unwrap();
    let ids: HashSet<String> = rows.iter().map(|r| r.get::<String, _>("id")).collect();
    (rows.len() as i64, ids)
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_postgres_mid_stream_loses_and_duplicates_nothing() {
    let pg = TestPostgres::start();
    let url = pg.database("midstream");
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let spool = temp_dir("spool-mid");
    let metrics = AuditMetrics::unregistered().unwrap();
    let (writer, task) =
        AuditWriter::start(store.clone(), config(&spool), metrics.clone()).unwrap();
    let mut sent = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        if i == 3_000 {
            pg.kill();
        }
        if i == 7_000 {
            pg.restart();
        }
        let e = numbered(i);
        sent.push(e.id.clone());
        loop {
            match writer.record(e.clone()) {
                Ok(()) => break,
                Err(AuditError::QueueFull) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(other) => panic!("event {i} refused: {other}"),
            }
        }
        // A steady stream: every 100 events are made durable before more
        // come, so the outage falls in the middle of real traffic.
        if i % 100 == 99 {
            writer.flush().await.unwrap();
        }
    }
    writer.flush().await.unwrap();
    let fresh = Store::connect(&url).await.unwrap();
    eventually("every event is in the database", async || {
        ids_in(&fresh).await.0 >= 10_000
    })
    .await;
    let (rows, ids) = ids_in(&fresh).await;
    assert_eq!(rows, 10_000, "each event exactly once");
    assert_eq!(ids, sent.into_iter().collect::<HashSet<_>>());
    assert!(
        metrics.spooled.get() > 0,
        "the outage was bridged by the spool"
    );
    assert_eq!(metrics.drained.get(), metrics.spooled.get());
    assert_eq!(metrics.written.get() + metrics.drained.get(), 10_000);
    assert_eq!(fresh.verify(None).await.unwrap().broken, None);
    drop(writer);
    task.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_between_batches_is_bridged_without_the_spool() {
    // The writer keeps one connection between batches; after a restart
    // that connection is dead. The next batch must go to the database on
    // a fresh connection, not to the spool, and nothing is written twice.
    let pg = TestPostgres::start();
    let url = pg.database("restart");
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let metrics = AuditMetrics::unregistered().unwrap();
    let (writer, task) = AuditWriter::start(
        store.clone(),
        config(&temp_dir("spool-restart")),
        metrics.clone(),
    )
    .unwrap();
    let event = |i: usize| {
        AuditEvent::new(
            EventKind::Chat,
            &format!("r{i}"),
            "ns",
            "a",
            AuditDecision::Allow,
        )
    };
    for i in 0..50 {
        writer.record(event(i)).unwrap();
    }
    writer.flush().await.unwrap();
    pg.kill();
    pg.restart();
    for i in 50..100 {
        writer.record(event(i)).unwrap();
    }
    writer.flush().await.unwrap();
    assert_eq!(metrics.spooled.get(), 0, "nothing went to the spool");
    assert_eq!(metrics.written.get(), 100);
    assert!(!writer.database_down());
    drop(writer);
    task.join().await;
    let fresh = Store::connect(&url).await.unwrap();
    assert_eq!(ids_in(&fresh).await.0, 100, "each event exactly once");
    assert_eq!(fresh.verify(None).await.unwrap().broken, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_with_sigkill_mid_spool_loses_no_acknowledged_event() {
    let pg = TestPostgres::start();
    let url = pg.database("sigkill");
    Store::open(&url, Migrations::Apply).await.unwrap();
    let spool = temp_dir("spool-kill");
    let probe = env!("CARGO_BIN_EXE_audit-probe");
    let mut child = Command::new(probe)
        .args([&url, spool.to_str().unwrap(), "5000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if let Some(id) = line.strip_prefix("ack ") {
            acked.push(id.to_string());
        }
        if acked.len() == 300 {
            pg.kill();
        }
        if acked.len() == 800 {
            // Mid-spool: the database is down, events are being fsync'd.
            child.kill().unwrap();
            break;
        }
    }
    let _ = child.wait();
    assert_eq!(acked.len(), 800);
    assert!(
        std::fs::read_dir(&spool).unwrap().count() > 0,
        "the killed writer left a spool"
    );
    pg.restart();
    // A new writer process drains what the killed one spooled.
    let status = Command::new(probe)
        .args([&url, spool.to_str().unwrap(), "0"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let store = Store::connect(&url).await.unwrap();
    let (rows, ids) = ids_in(&store).await;
    assert_eq!(rows as usize, ids.len(), "nothing was written twice");
    let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(store.verify(None).await.unwrap().broken, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_everything_that_was_accepted() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("shutdown") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let (writer, task) = AuditWriter::start(
            store.clone(),
            config(&temp_dir("spool-sd")),
            AuditMetrics::unregistered().unwrap(),
        )
        .unwrap();
        for i in 0..2_000 {
            writer
                .record(AuditEvent::new(
                    EventKind::Chat,
                    &format!("r{i}"),
                    "ns",
                    "a",
                    AuditDecision::Allow,
                ))
                .unwrap();
        }
        drop(writer);
        task.join().await;
        assert_eq!(ids_in(&store).await.0, 2_000, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_new_events_while_the_database_is_down_but_keeps_accepted_ones() {
    let pg = TestPostgres::start();
    let url = pg.database("failclosed");
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let mut cfg = config(&temp_dir("spool-fc"));
    cfg.failure_mode = FailureMode::FailClosed;
    let metrics = AuditMetrics::unregistered().unwrap();
    let (writer, _task) = AuditWriter::start(store.clone(), cfg, metrics.clone()).unwrap();
    writer
        .record_durable(AuditEvent::new(
            EventKind::ToolCall,
            "before",
            "ns",
            "a",
            AuditDecision::Allow,
        ))
        .await
        .unwrap();
    pg.kill();
    // The first event after the outage is accepted (nobody knew yet) and spooled...
    let accepted = AuditEvent::new(
        EventKind::ToolCall,
        "during",
        "ns",
        "a",
        AuditDecision::Allow,
    );
    let accepted_id = accepted.id.clone();
    writer.record_durable(accepted).await.unwrap();
    // ...and from then on the caller is told to refuse its request.
    let refused = writer
        .record(AuditEvent::new(
            EventKind::ToolCall,
            "refused",
            "ns",
            "a",
            AuditDecision::Allow,
        ))
        .unwrap_err();
    assert!(matches!(refused, AuditError::NotDurable), "{refused}");
    assert_eq!(metrics.database_down.get(), 1);
    pg.restart();
    eventually("the writer sees the database again", async || {
        !writer.database_down()
    })
    .await;
    writer
        .record_durable(AuditEvent::new(
            EventKind::ToolCall,
            "after",
            "ns",
            "a",
            AuditDecision::Allow,
        ))
        .await
        .unwrap();
    let fresh = Store::connect(&url).await.unwrap();
    let (_, ids) = ids_in(&fresh).await;
    assert!(ids.contains(&accepted_id));
    let requests: HashSet<String> = fresh
        .query(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.event.request_id)
        .collect();
    assert_eq!(
        requests,
        ["before", "during", "after"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_fails_closed_and_says_so_in_metrics() {
    let pg = TestPostgres::start();
    let url = pg.database("full");
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let mut cfg = config(&temp_dir("spool-full"));
    cfg.spool_max_bytes = 4_000;
    let metrics = AuditMetrics::unregistered().unwrap();
    let (writer, _task) = AuditWriter::start(store, cfg, metrics.clone()).unwrap();
    pg.kill();
    let mut refused = None;
    for i in 0..100 {
        match writer
            .record_durable(AuditEvent::new(
                EventKind::ToolCall,
                &format!("r{i}"),
                "ns",
                "a",
                AuditDecision::Allow,
            ))
            .await
        {
            Ok(()) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(refused.is_some(), "a 4 KB spool cannot hold 100 events");
    let next = writer
        .record(AuditEvent::new(
            EventKind::ToolCall,
            "x",
            "ns",
            "a",
            AuditDecision::Allow,
        ))
        .unwrap_err();
    assert!(next.to_string().contains("spool is full"), "{next}");
    assert!(metrics.failed.get() > 0 && metrics.refused.get() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_prompts_keys_and_arguments_never_reach_database_spool_or_logs() {
    use palisade_policy::{PromptFingerprint, api_key_digest, argument_digest};
    let marker = format!("CANARY{}", uuid_like());
    let prompt = format!("patient {marker} has a fever");
    let key = format!("sk-{marker}");
    let args = serde_json::json!({"to": format!("{marker}@example.com"), "ssn": marker});

    let pg = TestPostgres::start();
    let url = pg.database("canary");
    let sqlite_dir = temp_dir("canary-sqlite");
    let sqlite = format!("sqlite://{}", sqlite_dir.join("audit.db").display());
    let spool = temp_dir("canary-spool");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = log.clone();
    let subscriber = tracing_subscriber_like(sink);
    // Global: the writer logs from its own task on other threads.
    let _ = tracing::subscriber::set_global_default(subscriber);
    for url in [&url, &sqlite] {
        let store = Store::open(url, Migrations::Apply).await.unwrap();
        let (writer, task) =
            AuditWriter::start(store, config(&spool), AuditMetrics::unregistered().unwrap())
                .unwrap();
        let mut e = AuditEvent::new(
            EventKind::Chat,
            "req",
            "clinic",
            "intake",
            AuditDecision::Allow,
        );
        let fp = PromptFingerprint::of(&prompt);
        e.prompt_sha256 = Some(fp.sha256);
        e.prompt_chars = Some(fp.chars as i64);
        e.argument_digest = Some(argument_digest(&args));
        e.decided_by = Some(api_key_digest(&key));
        writer.record_durable(e.clone()).await.unwrap();
        if url.starts_with("postgres") {
            pg.kill();
            writer
                .record_durable(AuditEvent {
                    id: format!("{}-spooled", e.id),
                    ..e
                })
                .await
                .unwrap();
            let spooled: Vec<u8> = std::fs::read_dir(&spool)
                .unwrap()
                .flat_map(|f| std::fs::read(f.unwrap().path()).unwrap())
                .collect();
            assert!(!spooled.is_empty(), "the spool was used");
            assert!(
                !String::from_utf8_lossy(&spooled).contains(&marker),
                "marker in the spool"
            );
            pg.restart();
            eventually("the spool drains", async || !writer.database_down()).await;
        }
        drop(writer);
        task.join().await;
    }
    let store = Store::connect(&url).await.unwrap();
    let dump: Vec<String> = store
        .query(&Default::default())
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    assert_eq!(dump.len(), 2);
    let everything = format!(
        "{}{}{}",
        dump.join("\n"),
        String::from_utf8_lossy(&std::fs::read(sqlite_dir.join("audit.db")).unwrap()),
        String::from_utf8_lossy(&log.lock().unwrap())
    );
    assert!(!everything.contains(&marker), "the canary marker leaked");
    assert!(
        String::from_utf8_lossy(&log.lock().unwrap()).contains("audit database unreachable"),
        "logs were captured"
    );
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A tracing subscriber that writes every event (with fields) to a buffer.
fn tracing_subscriber_like(
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) -> impl tracing::Subscriber + Send + Sync {
    struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Writer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || Writer(buf.clone()))
        .with_ansi(false)
        .finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_sent_by_a_client_is_stored_as_a_replacement_character_not_a_stuck_batch() {
    // PostgreSQL's text cannot hold NUL; one such row used to fail its
    // batch and then the spool drain, forever.
    let backends = Backends::start();
    for (backend, url) in backends.urls("nul") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let metrics = AuditMetrics::unregistered().unwrap();
        let spool = temp_dir("spool-nul");
        let (writer, task) =
            AuditWriter::start(store.clone(), config(&spool), metrics.clone()).unwrap();
        let mut e = AuditEvent::new(
            EventKind::Chat,
            "req-nul",
            "ns",
            "agent",
            AuditDecision::Allow,
        );
        e.model = Some("gpt\0-4o".into());
        e.prompt_text = Some("before\0after".into());
        e.reason_codes = vec!["routing.\0default".into()];
        writer.record(e).unwrap();
        writer.record(numbered(1)).unwrap();
        writer.flush().await.unwrap();
        assert!(!writer.database_down(), "{backend}");
        assert_eq!(
            metrics.spooled.get(),
            0,
            "{backend}: nothing went to the spool"
        );
        let rows = store.query(&Default::default()).await.unwrap();
        assert_eq!(rows.len(), 2, "{backend}");
        assert_eq!(rows[0].event.model.as_deref(), Some("gpt\u{FFFD}-4o"));
        assert_eq!(
            rows[0].event.prompt_text.as_deref(),
            Some("before\u{FFFD}after")
        );
        assert_eq!(store.verify(None).await.unwrap().broken, None, "{backend}");
        drop(writer);
        task.join().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_drains_while_traffic_keeps_coming() {
    // Events arrive more often than the retry interval, before, during
    // and after the outage: the spool must still be retried, not only
    // when the queue goes quiet.
    let pg = std::sync::Arc::new(TestPostgres::start());
    let url = pg.database("steady");
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let metrics = AuditMetrics::unregistered().unwrap();
    let spool = temp_dir("spool-steady");
    let (writer, task) =
        AuditWriter::start(store.clone(), config(&spool), metrics.clone()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One event every 20 ms (the retry interval is 100 ms).
    let traffic = tokio::spawn({
        let (writer, stop) = (writer.clone(), stop.clone());
        async move {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer.record(numbered(sent)).unwrap();
                sent += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.kill()).await.unwrap();
    eventually("the outage goes to the spool", async || {
        writer.database_down()
    })
    .await;
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.restart())
        .await
        .unwrap();
    let mut drained = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !writer.database_down() {
            drained = true;
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = traffic.await.unwrap();
    assert!(
        drained,
        "the spool was not drained while events kept coming"
    );
    writer.flush().await.unwrap();
    let fresh = Store::connect(&url).await.unwrap();
    assert_eq!(
        ids_in(&fresh).await.0,
        sent as i64,
        "each event exactly once"
    );
    assert_eq!(fresh.verify(None).await.unwrap().broken, None);
    drop(writer);
    task.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_costs_a_timeout_not_a_hang() {
    let pg = TestPostgres::start();
    let url = pg.database("frozen");
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let metrics = AuditMetrics::unregistered().unwrap();
    let spool = temp_dir("spool-frozen");
    let mut c = config(&spool);
    c.database_timeout = Duration::from_millis(500);
    let (writer, task) = AuditWriter::start(store.clone(), c, metrics.clone()).unwrap();
    writer.record(numbered(0)).unwrap();
    writer.flush().await.unwrap();
    pg.freeze();
    for i in 1..=10 {
        writer.record(numbered(i)).unwrap();
    }
    // The kept connection's INSERT hangs, then reconnecting does: each
    // is cut at the timeout and the batch is spooled.
    let flushed = tokio::time::timeout(Duration::from_secs(5), writer.flush()).await;
    // Read before the thaw: once the server answers, the spool drains
    // within the retry interval.
    let (down, spooled) = (writer.database_down(), metrics.spooled.get());
    pg.thaw();
    assert!(
        matches!(flushed, Ok(Ok(()))),
        "flush should end once the batch is spooled: {flushed:?}"
    );
    assert!(down, "the hung database counts as down");
    assert!(spooled >= 10, "spooled {spooled}");
    let fresh = Store::connect(&url).await.unwrap();
    eventually("the spool is drained after the thaw", async || {
        !writer.database_down()
    })
    .await;
    assert_eq!(ids_in(&fresh).await.0, 11, "each event exactly once");
    assert_eq!(fresh.verify(None).await.unwrap().broken, None);
    drop(writer);
    task.join().await;
}

/// The writer hands each batch's receipts to a task on the runtime it was
/// started from (one wake-up per batch instead of one per request). When
/// that runtime is gone, or there was none, receipts are still resolved:
/// a request waiting on one is answered, it does not fail or hang.
#[test]
fn receipts_resolve_when_the_runtime_that_started_the_writer_is_gone_or_was_none() {
    let dir = temp_dir("receipts-runtime");
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let new_runtime = || tokio::runtime::Runtime::new().unwrap();
    let durable_within = |writer: &AuditWriter, i: usize| {
        let writer = writer.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), writer.record_durable(numbered(i)))
                .await
                .expect("a receipt resolved in time")
        }
    };
    let first = new_runtime();
    let store = first
        .block_on(Store::open(&url, Migrations::Apply))
        .unwrap();
    let (started_in_first, first_task) = first
        .block_on(async {
            AuditWriter::start(
                store.clone(),
                config(&dir.join("a")),
                AuditMetrics::unregistered().unwrap(),
            )
        })
        .unwrap();
    first
        .block_on(durable_within(&started_in_first, 0))
        .unwrap();
    drop(first);
    // Started outside any runtime.
    let (started_outside, outside_task) = AuditWriter::start(
        store,
        config(&dir.join("b")),
        AuditMetrics::unregistered().unwrap(),
    )
    .unwrap();
    let second = new_runtime();
    second.block_on(async {
        durable_within(&started_in_first, 1).await.unwrap();
        durable_within(&started_outside, 2).await.unwrap();
        drop((started_in_first, started_outside));
        first_task.join().await;
        outside_task.join().await;
    });
    let reopened = second
        .block_on(Store::open(&url, Migrations::Apply))
        .unwrap();
    let (rows, _) = second.block_on(ids_in(&reopened));
    assert_eq!(rows, 3, "every acknowledged event is in the database");
}

/// Receipts handed to the starting runtime's task, which that runtime shuts
/// down before running, are still answered with their batch's result: the
/// rows are durable, so the requests must not be told otherwise.
#[test]
fn receipts_queued_for_a_runtime_that_shuts_down_are_told_their_result() {
    let dir = temp_dir("receipts-queued");
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = idle.block_on(Store::open(&url, Migrations::Apply)).unwrap();
    let (writer, task) = idle
        .block_on(async {
            AuditWriter::start(
                store.clone(),
                config(&dir.join("spool")),
                AuditMetrics::unregistered().unwrap(),
            )
        })
        .unwrap();
    // `idle` is not driven from here on: the receipts of this event wait
    // in its task's queue until the runtime is dropped.
    let other = tokio::runtime::Runtime::new().unwrap();
    let waiting = other.spawn({
        let writer = writer.clone();
        async move { writer.record_durable(numbered(0)).await }
    });
    std::thread::sleep(Duration::from_millis(500));
    drop(idle);
    let told = other
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), waiting).await })
        .expect("the receipt was answered in time")
        .unwrap();
    assert!(told.is_ok(), "a durable row's request was told {told:?}");
    other.block_on(async {
        drop(writer);
        task.join().await;
        let (rows, _) = ids_in(&store).await;
        assert_eq!(rows, 1);
    });
}

/// While the database is down, a batch whose spool append fails part-way
/// (the file size limit, as a full disk) is refused, and none of it is
/// recorded once the spool is drained: the audit holds exactly the
/// answered events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_by_a_failed_spool_append_is_not_recorded() {
    let pg = TestPostgres::start();
    let url = pg.database("efbig");
    Store::open(&url, Migrations::Apply).await.unwrap();
    let spool = temp_dir("spool-efbig");
    let probe = env!("CARGO_BIN_EXE_audit-probe");
    let answers = probe_under_file_limit(probe, &url, &spool, 3000, 256, |acked| {
        if acked == 200 {
            // From here on batches go to the spool, until it is full.
            pg.kill();
        }
    });
    pg.restart();
    drain_with_probe(probe, &url, &spool);
    let store = Store::connect(&url).await.unwrap();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM audit_events")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_exactly_answered(&answers, &ids);
}
