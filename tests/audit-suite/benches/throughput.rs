//! Audit throughput into a local PostgreSQL (fsync on, default settings):
//! rows per second with batches of 1, 100 and 1,000; the writer's
//! sustained rate end to end; and what `record` costs the caller.
//! `cargo bench -p palisade-audit-suite --bench throughput`; figures go to
//! docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use palisade_audit::event::Chain;
use palisade_audit::{
    AuditDecision, AuditError, AuditEvent, AuditMetrics, AuditWriter, EventKind, Migrations, Store,
    WriterConfig,
};
use palisade_audit_suite::{TestPostgres, temp_dir};
use std::time::Instant;

fn event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(
        EventKind::ToolCall,
        &format!("req-{i}"),
        "clinic",
        "intake",
        AuditDecision::Allow,
    );
    e.reason_codes = vec!["tool.allowed_by_rule".into()];
    e.tool = Some("sql_query".into());
    e.policy = Some("clinic-assistant".into());
    e.policy_generation = Some(3);
    e.rule = Some("read-only-sql".into());
    e.argument_digest = Some(format!("sha256:{}", "a".repeat(64)));
    e
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pg = TestPostgres::start_with_fsync(true);
    println!("PostgreSQL with fsync=on, synchronous_commit=on (defaults)");
    for (batch, total) in [(1usize, 2_000usize), (100, 50_000), (1_000, 100_000)] {
        let url = pg.database(&format!("batch{batch}"));
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let mut chain = Chain::new("bench");
        let rows: Vec<_> = (0..total).map(|i| chain.link(event(i))).collect();
        // On one connection, as the writer does.
        let mut conn = store.writer_connection().await.unwrap();
        let t = Instant::now();
        for chunk in rows.chunks(batch) {
            Store::insert_with(&mut conn, chunk).await.unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "insert batches of {batch:>5}: {total:>7} rows in {secs:>6.2} s = {:>8.0} rows/s",
            total as f64 / secs
        );
    }

    // End to end through the writer, with the caller's cost per record().
    let url = pg.database("writer");
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let (writer, task) = AuditWriter::start(
        store,
        WriterConfig::new(temp_dir("bench-spool")),
        AuditMetrics::unregistered().unwrap(),
    )
    .unwrap();
    // Sustained: offer 200,000 events as fast as the writer takes them,
    // waiting for room as the gateway's requests do (backpressure: asleep
    // while the queue is past its mark, not spinning on a full queue, which
    // on two cores took CPU from the writer it measures).
    let total = 200_000;
    let mut full = 0u64;
    let t = Instant::now();
    for i in 0..total {
        writer.room().await.unwrap();
        loop {
            match writer.record(event(i)) {
                Ok(()) => break,
                Err(AuditError::QueueFull) => {
                    full += 1;
                    tokio::task::yield_now().await;
                }
                Err(other) => panic!("{other}"),
            }
        }
    }
    writer.flush().await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "writer sustained: {total} events in {secs:.2} s = {:.0} events/s (times the queue was full: {full})",
        total as f64 / secs
    );

    // The caller's cost: bursts of 1,000 events with room in the queue, as a
    // request path sees it below saturation.
    let mut caller_ns = Vec::with_capacity(50_000);
    for burst in 0..50 {
        for i in 0..1_000 {
            let e = event(burst * 1_000 + i);
            let c = Instant::now();
            writer.record(e).unwrap();
            caller_ns.push(c.elapsed().as_nanos() as u64);
        }
        writer.flush().await.unwrap();
    }
    caller_ns.sort_unstable();
    let pct = |p: f64| caller_ns[((caller_ns.len() - 1) as f64 * p) as usize];
    println!(
        "record() on the caller (50 bursts of 1,000): p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    drop(writer);
    task.join().await;
}
