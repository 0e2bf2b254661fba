//! A writer that is behind a healthy database slows new work down instead
//! of refusing it: `room` waits (counted in
//! `palisade_audit_backpressure_total` and `_waiting`) until the writer
//! catches up, and refuses only after the backpressure timeout. Submitted
//! events come with a receipt that resolves once they are durable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::{AuditError, AuditMetrics, AuditWriter, Migrations, Store, WriterConfig};
use palisade_audit_suite::{TestPostgres, numbered, temp_dir};
use std::time::Duration;

/// A writer on `pg` with a 16-event queue (backpressure past 12) and a
/// database timeout long enough that a frozen server counts as slow, not
/// down.
async fn small_writer(
    pg: &TestPostgres,
    name: &str,
    backpressure_timeout: Duration,
) -> (Store, AuditWriter, palisade_audit::WriterTask, AuditMetrics) {
    let url = pg.database(name);
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let metrics = AuditMetrics::unregistered().unwrap();
    let mut c = WriterConfig::new(temp_dir(name));
    c.queue_capacity = 16;
    c.batch_max = 4;
    c.backpressure_timeout = backpressure_timeout;
    c.database_timeout = Duration::from_secs(60);
    let (writer, task) = AuditWriter::start(store.clone(), c, metrics.clone()).unwrap();
    (store, writer, task, metrics)
}

/// Fills the queue past the backpressure mark while the database hangs.
async fn fill_while_frozen(pg: &TestPostgres, writer: &AuditWriter) {
    writer.record_durable(numbered(0)).await.unwrap();
    pg.freeze();
    // 16 queued; the writer takes a batch of 4 and hangs on it: 12 wait.
    for i in 1..=16 {
        writer.record(numbered(i)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_makes_new_work_wait_not_fail() {
    let pg = TestPostgres::start();
    let (store, writer, task, metrics) = small_writer(&pg, "behind", Duration::from_secs(30)).await;
    fill_while_frozen(&pg, &writer).await;
    let waiting = tokio::spawn({
        let writer = writer.clone();
        async move { writer.room().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (still_waiting, gauge) = (!waiting.is_finished(), metrics.backpressure_waiting.get());
    pg.thaw();
    assert!(still_waiting, "room() returned while the writer was behind");
    assert_eq!(gauge, 1, "palisade_audit_backpressure_waiting");
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("room() never returned after the database caught up")
        .unwrap()
        .expect("room() refused although the database recovered in time");
    assert_eq!(metrics.backpressure.get(), 1);
    assert_eq!(metrics.backpressure_waiting.get(), 0);
    assert_eq!(metrics.refused.get(), 0, "nothing was refused");
    writer.record_durable(numbered(17)).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 18, "every event written, none spooled");
    assert_eq!(metrics.spooled.get(), 0);
    drop(writer);
    task.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_stays_behind_refuses_after_the_backpressure_timeout() {
    let pg = TestPostgres::start();
    let (_store, writer, task, metrics) =
        small_writer(&pg, "stuck", Duration::from_millis(400)).await;
    fill_while_frozen(&pg, &writer).await;
    let started = std::time::Instant::now();
    let refused = writer.room().await;
    let waited = started.elapsed();
    pg.thaw();
    assert!(matches!(refused, Err(AuditError::QueueFull)), "{refused:?}");
    assert!(
        waited >= Duration::from_millis(400),
        "refused after {waited:?}, before the timeout"
    );
    assert_eq!(metrics.refused.get(), 1);
    assert_eq!(metrics.backpressure_waiting.get(), 0);
    drop(writer);
    task.join().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_resolves_only_once_its_event_is_in_the_database() {
    let pg = TestPostgres::start();
    let (store, writer, task, _) = small_writer(&pg, "receipt", Duration::from_secs(30)).await;
    writer.record_durable(numbered(0)).await.unwrap();
    pg.freeze();
    let receipt = writer.submit(numbered(1)).unwrap();
    let waiting = tokio::spawn(receipt.wait());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early = waiting.is_finished();
    pg.thaw();
    assert!(!early, "the receipt resolved while the database hung");
    waiting.await.unwrap().unwrap();
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE request_id = 'req-1'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(rows, 1);
    drop(writer);
    task.join().await;
}
