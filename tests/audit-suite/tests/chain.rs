//! The audit chain against someone with database access (issue 23 item
//! 7): deleting whole chains or their ends, rewriting rows and
//! recomputing their hashes, and the runtime role's privileges, on a
//! real PostgreSQL (and SQLite where it applies).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::event::chain_hash;
use palisade_audit::roles::grant_runtime_role;
use palisade_audit::{
    AuditEvent, AuditKey, AuditMetrics, AuditWriter, ChainedEvent, EventKind, Filter, Migrations,
    Store, WriterConfig,
};
use palisade_audit_suite::{Backends, TestPostgres, temp_dir};

fn event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(
        EventKind::ToolCall,
        &format!("req-{i}"),
        "clinic",
        "intake",
        palisade_audit::AuditDecision::Deny,
    );
    e.reason_codes = vec!["tool.denied_by_rule".into()];
    e.tool = Some("bulk_export".into());
    e
}

/// The key the writers hold (from a file or a Secret); never in the
/// database.
fn key() -> AuditKey {
    AuditKey::from_bytes(b"0123456789abcdef0123456789abcdef-test-key").unwrap()
}

/// One writer (one process start): records `n` events and shuts down.
async fn one_writer(store: &Store, n: usize) -> String {
    let mut config = WriterConfig::new(temp_dir("chain-spool"));
    config.key = Some(key());
    let (w, t) =
        AuditWriter::start(store.clone(), config, AuditMetrics::unregistered().unwrap()).unwrap();
    let id = w.writer_id().to_owned();
    for i in 0..n {
        w.record(event(i)).unwrap();
    }
    w.flush().await.unwrap();
    drop(w);
    t.join().await;
    id
}

async fn rows_of(store: &Store, writer: &str) -> Vec<ChainedEvent> {
    let mut rows: Vec<ChainedEvent> = store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.writer == writer)
        .collect();
    rows.sort_by_key(|r| r.seq);
    rows
}

async fn delete(store: &Store, writer: &str, from_seq: i64) {
    sqlx::query("DELETE FROM audit_events WHERE writer = $1 AND seq >= $2")
        .bind(writer)
        .bind(from_seq)
        .execute(store.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_end_or_the_whole_chain_of_an_earlier_writer_is_found() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("chain_links") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let first = one_writer(&store, 5).await;
        let second = one_writer(&store, 3).await;
        let report = store.verify(Some(&key())).await.unwrap();
        assert_eq!(
            (report.rows, report.writers, report.broken),
            (8, 2, None),
            "{backend}"
        );
        let kept = rows_of(&store, &first).await;

        // The last two rows of the first writer.
        delete(&store, &first, 4).await;
        let broken = store
            .verify(Some(&key()))
            .await
            .unwrap()
            .broken
            .unwrap_or_else(|| {
                panic!("{backend}: deleting the end of an earlier chain went unnoticed")
            });
        assert_eq!((broken.writer.as_str(), broken.seq), (second.as_str(), 1));
        assert!(
            broken.problem.contains(&format!("writer {first} seq 5"))
                && broken.problem.contains("ends at seq 3")
                && broken.problem.contains("deleted"),
            "{backend}: {}",
            broken.problem
        );

        // The whole chain of the first writer.
        delete(&store, &first, 1).await;
        let broken = store
            .verify(Some(&key()))
            .await
            .unwrap()
            .broken
            .unwrap_or_else(|| {
                panic!("{backend}: deleting an earlier writer's whole chain went unnoticed")
            });
        assert_eq!((broken.writer.as_str(), broken.seq), (second.as_str(), 1));
        assert!(
            broken
                .problem
                .contains(&format!("no row of writer {first} is left"))
                && broken.problem.contains("whole chain"),
            "{backend}: {}",
            broken.problem
        );

        // Put back, intact again.
        store.insert(&kept).await.unwrap();
        assert_eq!(
            store.verify(Some(&key())).await.unwrap().broken,
            None,
            "{backend}"
        );
    }
}

/// Someone with write access to the database edits a row and recomputes
/// the hashes of it and every later row of its chain, as the published
/// (unkeyed) algorithm says.
async fn rewrite_and_rehash(store: &Store, writer: &str, seq: i64) {
    let mut rows = rows_of(store, writer).await;
    let mut prev = rows[(seq - 2) as usize].hash.clone();
    for r in rows.iter_mut().filter(|r| r.seq >= seq) {
        if r.seq == seq {
            r.event.decision = "Allow".into();
            r.event.reason_codes = vec!["tool.allowed_by_rule".into()];
        }
        r.prev_hash = prev.clone();
        r.hash = chain_hash(&r.event, &r.writer, r.seq, &r.prev_hash);
        prev = r.hash.clone();
        sqlx::query(
            "UPDATE audit_events SET decision = $1, reason_codes = $2, prev_hash = $3, hash = $4 WHERE writer = $5 AND seq = $6",
        )
        .bind(&r.event.decision)
        .bind(format!(",{},", r.event.reason_codes.join(",")))
        .bind(&r.prev_hash)
        .bind(&r.hash)
        .bind(writer)
        .bind(r.seq)
        .execute(store.pool())
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_rewritten_with_recomputed_hashes_is_found_without_the_key_in_the_database() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("chain_keyed") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let writer = one_writer(&store, 6).await;
        rewrite_and_rehash(&store, &writer, 3).await;
        let broken = store
            .verify(Some(&key()))
            .await
            .unwrap()
            .broken
            .unwrap_or_else(|| {
                panic!("{backend}: a rewritten row with recomputed hashes went unnoticed")
            });
        assert_eq!(
            (broken.writer.as_str(), broken.seq),
            (writer.as_str(), 3),
            "{backend}"
        );
        assert!(
            broken.problem.contains("keyed hash"),
            "{backend}: {}",
            broken.problem
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_role_inserts_and_reads_but_cannot_update_or_delete_audit_rows() {
    let pg = TestPostgres::start();
    // The migration job: the owner applies the schema and grants the
    // runtime role what it needs.
    let owner_url = pg.database("privileges");
    let owner = Store::open(&owner_url, Migrations::Apply).await.unwrap();
    grant_runtime_role(&owner, "palisade_writer", Some("writer-secret"))
        .await
        .unwrap();
    let before = one_writer(&owner, 2).await;

    // The gateway and the operator: the runtime role, opening the store
    // as they do (migrations enabled), writing, and verify reading.
    let runtime_url = owner_url.replace("palisade@", "palisade_writer:writer-secret@");
    let runtime = Store::open(&runtime_url, Migrations::Apply)
        .await
        .unwrap_or_else(|e| panic!("the runtime role cannot open the migrated store: {e}"));
    let writer = one_writer(&runtime, 3).await;
    let report = runtime.verify(Some(&key())).await.unwrap();
    assert_eq!((report.rows, report.writers, report.broken), (5, 2, None));
    assert_eq!(rows_of(&runtime, &writer).await.len(), 3);

    for sql in [
        "UPDATE audit_events SET decision = 'Allow'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "DROP TABLE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    ] {
        let refused = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(runtime.pool())
            .await
            .expect_err(sql)
            .to_string();
        assert!(
            refused.contains("permission denied") || refused.contains("must be owner"),
            "{sql}: {refused}"
        );
    }
    assert_eq!(rows_of(&owner, &before).await.len(), 2);
    assert_eq!(owner.verify(Some(&key())).await.unwrap().broken, None);

    // The limits' shared counters are not history: the runtime role leases
    // shares of a budget, never past its limit.
    let lease = |want| runtime.lease_budget("clinic/p/a/DayTokens", 20_000, 86_400, want, 100);
    assert_eq!(lease(60).await.unwrap(), 60);
    assert_eq!(
        lease(60).await.unwrap(),
        40,
        "only what is left of the limit"
    );
    assert_eq!(lease(60).await.unwrap(), 0);
    // And takes and gives back shared open-stream places.
    let budget = "clinic/p/*/Streams";
    assert!(runtime.open_stream(budget, "r1", 1, 1_000).await.unwrap());
    assert!(
        !runtime.open_stream(budget, "r2", 1, 1_000).await.unwrap(),
        "the one place is taken"
    );
    runtime.close_stream(budget, "r1", 2_000).await.unwrap();
    assert!(runtime.open_stream(budget, "r2", 1, 2_000).await.unwrap());
    // A replica that stops renewing its places (it died) stops counting.
    assert!(
        runtime
            .open_stream(budget, "r1", 1, 2_000 + 61_000)
            .await
            .unwrap()
    );
}

/// A row's hash does not change when the event type grows: fields added
/// later (token counts) are left out of the hashed JSON when empty, so a
/// row written before them still verifies. The hash below was computed by
/// the build before token counts were kept (b6ccd9d).
#[test]
fn rows_written_before_token_counts_were_kept_hash_as_they_did() {
    let mut e = event(1);
    e.id = "0190f3a2-7b1c-7d4e-8f00-000000000001".into();
    e.time = "2026-12-06T12:00:00Z".parse().unwrap();
    e.provider = Some("cloud".into());
    assert_eq!(
        chain_hash(&e, "w-1", 7, "prev"),
        "6bce6212852d563c15a4a00f5bcaa620fe4f8f90adf885fd1f94db54cdee42aa"
    );
}
