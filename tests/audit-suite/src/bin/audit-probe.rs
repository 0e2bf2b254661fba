//! `audit-probe URL SPOOL_DIR COUNT`: a writer process for the crash tests.
//! It records COUNT events one at a time, waiting until each is durable,
//! and prints `ack <id>` for each. The tests `kill -9` it mid-way, start it
//! again (COUNT 0 only drains the spool) and check that every acknowledged
//! event is in the database exactly once. With `AUDIT_PROBE_CONCURRENT=N`
//! it submits N events at a time (so that they share batches) and prints
//! `ack <id>` or `refused <id>` for each once all N are told.

use palisade_audit::{
    AuditDecision, AuditEvent, AuditMetrics, AuditWriter, EventKind, Migrations, Store,
    WriterConfig,
};
use std::io::Write;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, spool, count] = args.as_slice() else {
        eprintln!("usage: audit-probe URL SPOOL_DIR COUNT");
        return ExitCode::FAILURE;
    };
    let count: usize = count.parse().unwrap_or(0);
    // The database may be down: connect lazily through the writer's retries.
    let store = loop {
        match Store::open(url, Migrations::Apply).await {
            Ok(s) => break s,
            Err(e) => {
                eprintln!("waiting for the database: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    let mut config = WriterConfig::new(spool);
    config.retry_interval = std::time::Duration::from_millis(100);
    let metrics = match AuditMetrics::unregistered() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (writer, task) = match AuditWriter::start(store, config, metrics) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let at_once: usize = std::env::var("AUDIT_PROBE_CONCURRENT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut i = 0;
    while i < count {
        let mut receipts = Vec::new();
        for _ in 0..at_once.min(count - i) {
            let e = AuditEvent::new(
                EventKind::ToolCall,
                &format!("probe-{i}"),
                "probe",
                "agent",
                AuditDecision::Allow,
            );
            i += 1;
            let id = e.id.clone();
            receipts.push((id, writer.submit(e)));
        }
        for (id, receipt) in receipts {
            let answer = match receipt {
                Ok(durable) => durable.wait().await.is_ok(),
                Err(_) => false,
            };
            let _ = writeln!(out, "{} {id}", if answer { "ack" } else { "refused" });
        }
        let _ = out.flush();
    }
    let _ = writeln!(out, "done");
    let _ = out.flush();
    // Stay until the spool is drained (or forever, until killed).
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if !writer.database_down() && count == 0 {
            break;
        }
        if !writer.database_down() && std::env::var("AUDIT_PROBE_EXIT").is_ok() {
            break;
        }
    }
    drop(writer);
    task.join().await;
    ExitCode::SUCCESS
}
