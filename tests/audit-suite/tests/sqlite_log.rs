//! The SQLite writer: its events are durable in a journal before they are
//! in the database, so answers never wait for SQLite (its lock, its
//! checkpoints); it checkpoints the write-ahead log itself, between
//! commits, and the log must still stay bounded, or a standalone gateway's
//! disk fills with `-wal`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::{AuditMetrics, AuditWriter, Migrations, Store, WriterConfig, WriterTask};
use palisade_audit_suite::{
    assert_exactly_answered, drain_with_probe, numbered, probe_under_file_limit, temp_dir,
};
use std::path::PathBuf;
use std::time::Duration;

/// An SQLite audit (`audit.db`) in a fresh directory named after `name`.
async fn sqlite_audit(name: &str) -> (PathBuf, Store) {
    let dir = temp_dir(name);
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    (
        dir.clone(),
        Store::open(&url, Migrations::Apply).await.unwrap(),
    )
}

/// A writer on `store`, with its spool and journal in `dir`/spool, whose
/// batches wait `linger` for others to join them.
fn writer_on(dir: &std::path::Path, store: &Store, linger: Duration) -> (AuditWriter, WriterTask) {
    let mut config = WriterConfig::new(dir.join("spool"));
    config.linger = linger;
    AuditWriter::start(store.clone(), config, AuditMetrics::unregistered().unwrap()).unwrap()
}

/// An SQLite audit in a fresh directory named after `name`, and a writer
/// on it whose batches wait `linger` for others to join them.
async fn sqlite_writer(name: &str, linger: Duration) -> (PathBuf, Store, AuditWriter, WriterTask) {
    let (dir, store) = sqlite_audit(name).await;
    let (writer, task) = writer_on(&dir, &store, linger);
    (dir, store, writer, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_bounded_under_one_commit_per_event() {
    // No linger: one event per commit. Each commit appends about eight
    // pages (the table and its indexes) to the log, so 3,000 commits
    // would leave it near 100 MB if nothing checkpointed it.
    let (dir, store, writer, task) = sqlite_writer("sqlite-log", Duration::ZERO).await;
    for i in 0..3_000 {
        writer.record_durable(numbered(i)).await.unwrap();
    }
    let log = std::fs::metadata(dir.join("audit.db-wal")).unwrap().len();
    // SQLite's usual threshold is 1,000 pages of 4 KiB: the log is reused
    // from its start after each checkpoint and stays about that long.
    assert!(
        log < 8 * 1024 * 1024,
        "the write-ahead log grew to {log} bytes: not checkpointed"
    );
    drop(writer);
    task.join().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3_000);
}

async fn rows(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// The rows in `store` once there are `n`, or after 15 s.
async fn rows_within_15_s(store: &Store, n: i64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while rows(store).await < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rows(store).await
}

/// Two writers on one directory: the first started with a minute's
/// linger and ten events recorded (they wait in its journal, none in the
/// database yet), the second started after it with a 25 ms linger.
async fn two_writers_the_first_holding_ten(
    dir: &std::path::Path,
    store: &Store,
) -> ((AuditWriter, WriterTask), (AuditWriter, WriterTask)) {
    let (first, first_task) = writer_on(dir, store, Duration::from_secs(60));
    for i in 0..10 {
        first.record_durable(numbered(i)).await.unwrap();
    }
    let second = writer_on(dir, store, Duration::from_millis(25));
    ((first, first_task), second)
}

fn journal_files(spool: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(spool)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("journal-"))
        .collect()
}

/// A writer (linger 25 ms) whose first event is in the database, and
/// another connection holding the database's write lock (a long
/// transaction, a backup): SQLite refuses writes until it is released.
async fn locked_after_one(
    name: &str,
) -> (
    PathBuf,
    Store,
    AuditWriter,
    WriterTask,
    rusqlite::Connection,
) {
    let (dir, store, writer, task) = sqlite_writer(name, Duration::from_millis(25)).await;
    writer.record_durable(numbered(0)).await.unwrap();
    writer.flush().await.unwrap();
    let lock = rusqlite::Connection::open(dir.join("audit.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    (dir, store, writer, task, lock)
}

/// An answer waits for its event to be in the writer's journal, not for
/// SQLite: a connection holding the database's write lock (a long
/// transaction, a backup) does not hold up decisions, and their rows are
/// written once it lets go. (Before the journal, each waited out SQLite's
/// 5 s busy timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_do_not_wait_for_a_locked_database_and_their_rows_follow() {
    let (dir, store, writer, task, lock) = locked_after_one("sqlite-locked").await;
    let started = std::time::Instant::now();
    for i in 1..=50 {
        writer.record_durable(numbered(i)).await.unwrap();
    }
    let answered_in = started.elapsed();
    assert!(
        answered_in < Duration::from_secs(2),
        "50 durable events took {answered_in:?} while another connection held the write lock"
    );
    assert_eq!(rows(&store).await, 1, "written while the lock is held");
    assert_eq!(journal_files(&dir.join("spool")).len(), 1);
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    tokio::time::timeout(Duration::from_secs(20), writer.flush())
        .await
        .expect("the rows follow once the lock is released")
        .unwrap();
    assert_eq!(rows(&store).await, 51);
    drop(writer);
    task.join().await;
    assert_eq!(
        journal_files(&dir.join("spool")),
        Vec::<String>::new(),
        "a written journal is deleted"
    );
}

/// A writer starting on a directory where another live writer keeps its
/// journal (two processes sharing a spool directory) leaves that journal
/// alone: taking it would lose the other's events if that one then died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_writers_journal_is_left_to_it() {
    let (dir, store) = sqlite_audit("sqlite-two-writers").await;
    // The first writer's events wait a minute in its journal before they
    // are written to the database.
    let ((first, first_task), (second, second_task)) =
        two_writers_the_first_holding_ten(&dir, &store).await;
    let journal = journal_files(&dir.join("spool"));
    assert_eq!(journal.len(), 1, "the first writer's journal");
    assert_eq!(rows(&store).await, 0);
    second.record_durable(numbered(100)).await.unwrap();
    second.flush().await.unwrap();
    let after = journal_files(&dir.join("spool"));
    assert!(
        journal.iter().all(|j| after.contains(j)),
        "the live writer's journal {journal:?} was taken: {after:?}"
    );
    assert_eq!(rows(&store).await, 1, "only the second writer's event");
    drop((first, second));
    first_task.join().await;
    second_task.join().await;
    assert_eq!(rows(&store).await, 11);
    assert_eq!(journal_files(&dir.join("spool")), Vec::<String>::new());
}

/// Shutting down while SQLite refuses writes and the database thread is
/// behind does not hang: what was answered stays in the journal, and the
/// next start writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_sqlite_refusing_writes_keeps_the_journal_for_the_next_start() {
    let (dir, store, writer, task, lock) = locked_after_one("sqlite-refusing").await;
    // One batch per answer, until the database thread's queue is full and
    // the writer waits for it.
    let mut answered = 1;
    for i in 1..500 {
        match tokio::time::timeout(
            Duration::from_millis(500),
            writer.record_durable(numbered(i)),
        )
        .await
        {
            Ok(r) => {
                r.unwrap();
                answered += 1;
            }
            Err(_) => break,
        }
    }
    assert!(answered < 500, "the writer never waited for the database");
    drop(writer);
    tokio::time::timeout(Duration::from_secs(20), task.join())
        .await
        .expect("shutdown waits for a database that refuses writes");
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    assert!(!journal_files(&dir.join("spool")).is_empty());
    let (again, again_task) = writer_on(&dir, &store, Duration::from_millis(25));
    again.flush().await.unwrap();
    drop(again);
    again_task.join().await;
    assert!(
        rows(&store).await >= answered,
        "{} rows for {answered} answered",
        rows(&store).await
    );
    assert_eq!(journal_files(&dir.join("spool")), Vec::<String>::new());
}

/// A journal an earlier run left, which SQLite refuses when the next
/// writer starts (another connection holds the write lock), is written
/// once the database takes writes again, while that writer runs — not
/// only at the start after it (an auditor would miss those decisions for
/// as long as the gateway runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_refused_at_start_is_written_once_the_database_takes_writes() {
    let (dir, store, writer, task, lock) = locked_after_one("sqlite-left-refused").await;
    for i in 1..=20 {
        writer.record_durable(numbered(i)).await.unwrap();
    }
    // Shut down while the database refuses: the 20 stay in the journal.
    drop(writer);
    task.join().await;
    let left = journal_files(&dir.join("spool"));
    assert!(!left.is_empty());
    // The next writer starts while the lock is still held: its first try
    // at the left journal is refused.
    let (again, again_task) = writer_on(&dir, &store, Duration::from_millis(25));
    again.record_durable(numbered(100)).await.unwrap();
    assert_eq!(rows(&store).await, 1, "written while the lock is held");
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    assert_eq!(
        rows_within_15_s(&store, 22).await,
        22,
        "the earlier run's 20 and this writer's one, with the writer still running"
    );
    let now = journal_files(&dir.join("spool"));
    assert!(
        left.iter().all(|f| !now.contains(f)),
        "the earlier run's journal {left:?} is still there: {now:?}"
    );
    drop(again);
    again_task.join().await;
}

/// Readers that catch up first (the audit API, the console) do not wait
/// on a database the writer already knows refuses writes: a console page
/// would otherwise take a second per query while SQLite is locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_do_not_wait_on_a_database_known_to_refuse_writes() {
    let (_dir, _store, writer, task, lock) = locked_after_one("sqlite-caught-up").await;
    writer.record_durable(numbered(1)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !writer.database_down() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(writer.database_down(), "the refusal is seen");
    let started = std::time::Instant::now();
    for _ in 0..3 {
        writer.caught_up().await;
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(300),
        "three catch-ups took {waited:?} with the database known down"
    );
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    drop(writer);
    task.join().await;
}

/// A batch whose journal append fails part-way (here: the file size
/// limit, as a full disk would) is refused, and none of it is recorded
/// after a crash: the audit holds exactly the events that were answered,
/// not some of the refused ones too (a 503 recorded as allowed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_by_a_failed_append_is_not_recorded_after_a_crash() {
    let (dir, store) = sqlite_audit("sqlite-efbig").await;
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let spool = dir.join("spool");
    let probe = env!("CARGO_BIN_EXE_audit-probe");
    // Killed once it has answered: what it answered is in its journal
    // files, not all in the database (the limit holds SQLite's log back
    // too). A new writer, without the limit, writes the journals.
    let answers = probe_under_file_limit(probe, &url, &spool, 3000, 256, |_| {});
    drain_with_probe(probe, &url, &spool);
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM audit_events")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_exactly_answered(&answers, &ids);
}

/// A journal that another live writer held when this one started (a
/// rolling restart: the new gateway up before the old one is gone), and
/// that the other then left behind (it stopped while SQLite refused
/// writes), is written by this writer while it runs, not at its next
/// start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_held_at_start_and_left_later_is_written_while_running() {
    let (dir, store) = sqlite_audit("sqlite-held-then-left").await;
    let ((old, old_task), (new, new_task)) = two_writers_the_first_holding_ten(&dir, &store).await;
    new.record_durable(numbered(100)).await.unwrap();
    new.flush().await.unwrap();
    // The old one stops while SQLite refuses writes: its journal stays.
    let lock = rusqlite::Connection::open(dir.join("audit.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    drop(old);
    old_task.join().await;
    assert!(!journal_files(&dir.join("spool")).is_empty());
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    assert_eq!(
        rows_within_15_s(&store, 11).await,
        11,
        "the old writer's 10 and the new one's, with the new writer still running"
    );
    drop(new);
    new_task.join().await;
    assert_eq!(journal_files(&dir.join("spool")), Vec::<String>::new());
}
