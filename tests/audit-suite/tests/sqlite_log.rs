//! The SQLite writer checkpoints its write-ahead log itself, between
//! batches once their waiters are told, instead of SQLite doing it inside
//! a commit: the log must still stay bounded, or a standalone gateway's
//! disk fills with `-wal`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::{AuditMetrics, AuditWriter, Migrations, Store, WriterConfig};
use palisade_audit_suite::{numbered, temp_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_bounded_under_one_commit_per_event() {
    let dir = temp_dir("sqlite-log");
    let db = dir.join("audit.db");
    let store = Store::open(&format!("sqlite://{}", db.display()), Migrations::Apply)
        .await
        .unwrap();
    let (writer, task) = AuditWriter::start(
        store.clone(),
        WriterConfig::new(dir.join("spool")),
        AuditMetrics::unregistered().unwrap(),
    )
    .unwrap();
    // One event per commit: each commit appends about eight pages (the
    // table and its indexes) to the log, so 3,000 commits would leave it
    // near 100 MB if nothing checkpointed it.
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
