//! The standalone approvals table against PostgreSQL and SQLite: created
//! once per name, decided once before expiry, consumed by exactly one of
//! many concurrent callers, expiry reported once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::{SignedDuration, Timestamp};
use palisade_audit::approvals::{ApprovalRow, ApprovalStore, DecideRefused};
use palisade_audit::{Migrations, Store};
use palisade_audit_suite::Backends;
use palisade_policy::{ApprovalDecision, HeldCall};

fn row(name: &str, now: Timestamp, ttl_s: i64) -> ApprovalRow {
    ApprovalRow::held(
        "clinic".into(),
        name.into(),
        HeldCall {
            agent: "intake".into(),
            tool: "send_email".into(),
            arguments_preview: "{\n  \"ssn\": \"[REDACTED]\",\n  \"to\": \"a@b.c\"\n}".into(),
            arguments_truncated: false,
            arguments_digest: format!("sha256:{}", "a".repeat(64)),
            request_id: format!("req-{name}"),
            policy: "clinic-assistant".into(),
            policy_generation: 3,
            rule: Some("email-needs-a-human".into()),
            requested_by: None,
        },
        now,
        now + SignedDuration::from_secs(ttl_s),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decided_once_consumed_once_under_contention_on_both_backends() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("approvals") {
        let store = ApprovalStore::new(Store::open(&url, Migrations::Apply).await.unwrap());
        let now = Timestamp::now();
        let created = store.create(&row("a1", now, 600)).await.unwrap();
        assert!(
            created
                .call
                .arguments_preview
                .contains(r#""ssn": "[REDACTED]""#),
            "{backend}: {}",
            created.call.arguments_preview
        );
        // The same name again returns what is stored, unchanged.
        let mut again = row("a1", now, 999);
        again.call.agent = "someone-else".into();
        assert_eq!(
            store.create(&again).await.unwrap().call.agent,
            "intake",
            "{backend}"
        );

        assert!(
            !store.consume("clinic", "a1", "gw", now).await.unwrap(),
            "{backend}: undecided"
        );
        let decided = store
            .decide(
                "clinic",
                "a1",
                ApprovalDecision::Approved,
                Some("ok"),
                "operator:alice",
                now,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(decided.decided_by.as_deref(), Some("operator:alice"));
        assert_eq!(
            store
                .decide(
                    "clinic",
                    "a1",
                    ApprovalDecision::Denied,
                    None,
                    "operator:bob",
                    now
                )
                .await
                .unwrap(),
            Err(DecideRefused::AlreadyDecided(ApprovalDecision::Approved)),
            "{backend}: final"
        );

        // Twenty replicas race for one approval: exactly one wins.
        let mut racers = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            racers.push(tokio::spawn(async move {
                store
                    .consume("clinic", "a1", &format!("gw-{i}"), Timestamp::now())
                    .await
                    .unwrap()
            }));
        }
        let mut wins = 0;
        for r in racers {
            wins += usize::from(r.await.unwrap());
        }
        assert_eq!(wins, 1, "{backend}");
        assert!(
            store
                .get("clinic", "a1")
                .await
                .unwrap()
                .unwrap()
                .consumed_by
                .unwrap()
                .starts_with("gw-")
        );

        // Expiry: too late to decide or use; reported once.
        store
            .create(&row("late", now - SignedDuration::from_secs(60), 1))
            .await
            .unwrap();
        assert_eq!(
            store
                .decide(
                    "clinic",
                    "late",
                    ApprovalDecision::Approved,
                    None,
                    "operator:alice",
                    now
                )
                .await
                .unwrap(),
            Err(DecideRefused::Expired),
            "{backend}"
        );
        let expired = store.take_expired(now).await.unwrap();
        assert_eq!(
            expired.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["late"],
            "{backend}"
        );
        assert!(
            store.take_expired(now).await.unwrap().is_empty(),
            "{backend}: reported once"
        );
        assert_eq!(
            store
                .decide(
                    "clinic",
                    "missing",
                    ApprovalDecision::Approved,
                    None,
                    "x",
                    now
                )
                .await
                .unwrap(),
            Err(DecideRefused::NotFound)
        );
        let pending = store.list(Some("clinic"), true, now, 10).await.unwrap();
        assert!(pending.is_empty(), "{backend}: {pending:?}");
        assert_eq!(store.list(None, false, now, 10).await.unwrap().len(), 2);
    }
}

/// A database of the previous schema (its approvals carried the whole
/// arguments) with one small and one large approval in it.
async fn before_the_preview(backend: &str, url: &str) {
    let dir = std::env::temp_dir().join(format!("palisade-0002-{}-{backend}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/../../audit/migrations");
    for file in ["0001_audit_events.sql", "0002_approvals.sql"] {
        std::fs::copy(format!("{migrations}/{file}"), dir.join(file)).unwrap();
    }
    sqlx::any::install_default_drivers();
    let url = if backend == "sqlite" {
        format!("{url}?mode=rwc")
    } else {
        url.to_owned()
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(dir.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let big = serde_json::json!({"body": "x".repeat(100_000), "ssn": "[REDACTED]"});
    for (name, arguments) in [
        ("old-small", r#"{"to":"a@b.c"}"#.to_owned()),
        ("old-big", big.to_string()),
    ] {
        sqlx::query("INSERT INTO approvals (namespace, name, agent, tool, arguments, arguments_digest, request_id, policy, policy_generation, requested_at_ms, expires_at_ms) VALUES ('clinic', $1, 'intake', 'send_email', $2, 'sha256:0', 'r', 'p', 1, 0, 1)")
            .bind(name)
            .bind(arguments)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
    }
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_held_before_the_preview_keep_the_start_of_their_arguments() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("preview-migration") {
        before_the_preview(backend, &url).await;
        let store = ApprovalStore::new(Store::open(&url, Migrations::Apply).await.unwrap());
        let small = store.get("clinic", "old-small").await.unwrap().unwrap();
        assert_eq!(
            small.call.arguments_preview, r#"{"to":"a@b.c"}"#,
            "{backend}"
        );
        assert!(!small.call.arguments_truncated, "{backend}");
        let big = store.get("clinic", "old-big").await.unwrap().unwrap();
        assert!(big.call.arguments_truncated, "{backend}");
        let preview = &big.call.arguments_preview;
        assert!(preview.len() <= 4096, "{backend}: {}", preview.len());
        assert!(
            preview.starts_with(r#"{"body":"xxx"#),
            "{backend}: {preview}"
        );
        assert!(preview.ends_with("… [truncated]"), "{backend}: {preview}");
    }
}
