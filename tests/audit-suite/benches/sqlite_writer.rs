//! The SQLite audit writer against its peer: the same number of rows
//! inserted into the same table by the fastest plain way SQLite offers
//! (one transaction, one prepared single-row statement reused, through
//! the SQLite library itself). Issue 24
//! asks the writer for at least 30,000 events/s on the 2-core machine;
//! the ratio to the peer says how much of SQLite's speed the writer uses.
//!
//!   cargo bench -p palisade-audit-suite --bench sqlite_writer
//!
//! (PostgreSQL's writer: `benches/throughput.rs`.)

#![allow(clippy::expect_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_audit::store::{Migrations, Store};
use palisade_audit::{
    AuditDecision, AuditEvent, AuditMetrics, AuditWriter, EventKind, WriterConfig,
};
use std::time::{Duration, Instant};

const EVENTS: u64 = 5_000;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

async fn store(dir: &std::path::Path) -> Store {
    let url = format!("sqlite://{}/audit.db", dir.display());
    Store::open(&url, Migrations::Apply)
        .await
        .expect("a SQLite audit store")
}

/// `iters` runs of `run`, timed one by one.
fn timed(iters: u64, mut run: impl FnMut()) -> Duration {
    (0..iters)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("sqlite_audit");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);

    let dir = temp_dir("writer");
    let (writer, _task) = rt.block_on(async {
        AuditWriter::start(
            store(&dir).await,
            WriterConfig::new(dir.join("spool")),
            AuditMetrics::unregistered().expect("metrics"),
        )
        .expect("a writer")
    });
    let mut n = 0u64;
    group.bench_function("writer_record_then_flush", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                for _ in 0..EVENTS {
                    n += 1;
                    let mut e = AuditEvent::new(
                        EventKind::ToolCall,
                        &format!("r{n}"),
                        "clinic",
                        "agent",
                        AuditDecision::Allow,
                    );
                    e.tool = Some("search_web".into());
                    writer.record(e).expect("the queue has room");
                }
                rt.block_on(writer.flush()).expect("written");
            })
        })
    });

    // The peer writes with the SQLite library itself (rusqlite, as the
    // writer does) into a file the store created: the same schema,
    // indexes, WAL and `synchronous=NORMAL`.
    let dir = temp_dir("peer");
    rt.block_on(store(&dir));
    let mut peer = rusqlite::Connection::open(dir.join("audit.db")).expect("the peer's file");
    peer.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")
        .expect("WAL");
    let mut m = 0i64;
    group.bench_function("peer_one_transaction_prepared_insert", |b| {
        b.iter_custom(|iters| {
            timed(iters, || {
                let tx = peer.transaction().expect("a transaction");
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO audit_events (id, writer, seq, time, time_ms, kind, request_id, namespace, agent, decision, enforced, reason_codes, tool, prev_hash, hash) \
                             VALUES (?, 'w', ?, '2026-12-05T00:00:00Z', 0, 'tool_call', ?, 'clinic', 'agent', 'allow', 1, '[]', 'search_web', 'p', 'h')",
                        )
                        .expect("prepared");
                    for _ in 0..EVENTS {
                        m += 1;
                        insert
                            .execute(rusqlite::params![format!("peer-{m}"), m, format!("r{m}")])
                            .expect("inserted");
                    }
                }
                tx.commit().expect("committed");
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
