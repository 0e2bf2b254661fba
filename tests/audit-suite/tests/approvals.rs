//! The standalone approvals table against PostgreSQL and SQLite: created
//! once per name, decided once before expiry, consumed by exactly one of
//! many concurrent callers, expiry reported once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::{SignedDuration, Timestamp};
use palisade_audit::approvals::{ApprovalRow, ApprovalStore, DecideRefused};
use palisade_audit::{Migrations, Store};
use palisade_audit_suite::Backends;
use palisade_policy::{ApprovalDecision, HeldCall};
use serde_json::json;

fn row(name: &str, now: Timestamp, ttl_s: i64) -> ApprovalRow {
    ApprovalRow::held(
        "clinic".into(),
        name.into(),
        HeldCall {
            agent: "intake".into(),
            tool: "send_email".into(),
            arguments: json!({"to": "a@b.c", "ssn": "[REDACTED]"}),
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
        assert_eq!(created.call.arguments["ssn"], "[REDACTED]", "{backend}");
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
