//! How long a decision waits to be durable (its receipt, what every
//! tool-call answer waits for), at a steady RATE decisions a second (open
//! loop: each is submitted at its time, whether or not earlier ones are
//! durable yet, and its wait counted from its submission),
//! for each backend side by side in the same run: SQLite with
//! `synchronous=normal` (the standalone default) and `=full`, and
//! PostgreSQL with its durable defaults, a fresh writer for each step,
//! the variants visited in turn ROUNDS times. Prints one JSON line per
//! step and the medians per variant.
//!
//!   cargo bench -p palisade-audit-suite --bench durable_latency
//!   RATE=1000 SECONDS=10 ROUNDS=3 cargo bench -p palisade-audit-suite --bench durable_latency
//!
//! Uses only the writer's public API, so the same file measures an older
//! build of the writer (docs/benchmarks.md, "Answered means recorded").

#![allow(clippy::expect_used, missing_docs)]

use palisade_audit::store::{Migrations, Store};
use palisade_audit::{
    AuditDecision, AuditEvent, AuditMetrics, AuditWriter, EventKind, WriterConfig,
};
use palisade_audit_suite::TestPostgres;
use std::time::Duration;
use tokio::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Waits, in microseconds, of `rate` durable decisions a second for
/// `seconds` on a fresh writer to `url`.
async fn step(url: &str, spool: std::path::PathBuf, rate: u64, seconds: u64) -> Vec<u64> {
    let store = Store::open(url, Migrations::Apply)
        .await
        .expect("an audit store");
    let (writer, task) = AuditWriter::start(
        store,
        WriterConfig::new(spool),
        AuditMetrics::unregistered().expect("metrics"),
    )
    .expect("a writer");
    let start = Instant::now();
    let mut waits = Vec::new();
    for i in 0..rate * seconds {
        let due = start + Duration::from_micros(i * 1_000_000 / rate);
        tokio::time::sleep_until(due).await;
        let w = writer.clone();
        waits.push(tokio::spawn(async move {
            let mut e = AuditEvent::new(
                EventKind::ToolCall,
                &format!("r{i}"),
                "clinic",
                "agent",
                AuditDecision::Allow,
            );
            e.tool = Some("search_web".into());
            let submitted = Instant::now();
            w.record_durable(e).await.expect("durable");
            submitted.elapsed().as_micros() as u64
        }));
    }
    let mut out = Vec::with_capacity(waits.len());
    for w in waits {
        out.push(w.await.expect("the step's task"));
    }
    drop(writer);
    task.join().await;
    out.sort_unstable();
    out
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let (rate, seconds, rounds) = (env("RATE", 1000), env("SECONDS", 10), env("ROUNDS", 3));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let pg = TestPostgres::start();
    let variants = ["sqlite-normal", "sqlite-full", "postgres"];
    let mut results: Vec<Vec<[u64; 3]>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (v, variant) in variants.iter().enumerate() {
            let dir = temp_dir(&format!("durable-{variant}-{round}"));
            let url = match *variant {
                "sqlite-normal" => format!("sqlite://{}/audit.db", dir.display()),
                "sqlite-full" => format!("sqlite://{}/audit.db?synchronous=full", dir.display()),
                _ => pg.database(&format!("durable_{round}")),
            };
            let waits = rt.block_on(step(&url, dir.join("spool"), rate, seconds));
            let q = [
                quantile(&waits, 0.5),
                quantile(&waits, 0.99),
                quantile(&waits, 0.999),
            ];
            println!(
                "{{\"round\":{round},\"variant\":\"{variant}\",\"rate\":{rate},\"decisions\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
                waits.len(),
                q[0],
                q[1],
                q[2],
                waits[waits.len() - 1]
            );
            results[v].push(q);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("medians over {rounds} rounds of {seconds} s at {rate} decisions/s:");
    println!("| variant | p50 | p99 | p99.9 |");
    println!("|---|---|---|---|");
    for (v, variant) in variants.iter().enumerate() {
        let col = |i: usize| median(results[v].iter().map(|q| q[i]).collect()) as f64 / 1000.0;
        println!(
            "| {variant} | {:.3} ms | {:.3} ms | {:.3} ms |",
            col(0),
            col(1),
            col(2)
        );
    }
}
