//! `GET /v1/audit/events`, the audit query the gateway serves, against
//! both audit backends (a throwaway PostgreSQL and SQLite): it needs the
//! auditor's token and takes the CLI's filters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::{
    AuditDecision, AuditEvent, AuditMetrics, AuditWriter, EventKind, Migrations, Store,
    WriterConfig,
};
use palisade_audit_suite::{Backends, temp_dir};
use palisade_gateway::approvals::Approvals;
use palisade_gateway::metrics::GatewayMetrics;
use palisade_gateway::router::app;
use palisade_gateway::state::AppState;
use std::sync::Arc;
use tower::ServiceExt;

fn event(
    request: &str,
    agent: &str,
    decision: AuditDecision,
    reason: &str,
    tool: Option<&str>,
) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::ToolCall, request, "clinic", agent, decision);
    e.reason_codes = vec![reason.to_owned()];
    e.tool = tool.map(String::from);
    e
}

async fn writer(store: Store) -> (AuditWriter, palisade_audit::WriterTask, std::path::PathBuf) {
    let spool = temp_dir("spool");
    let (w, t) = AuditWriter::start(
        store,
        WriterConfig::new(&spool),
        AuditMetrics::unregistered().unwrap(),
    )
    .unwrap();
    (w, t, spool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_query_needs_a_token_and_takes_the_cli_filters() {
    let backends = Backends::start();
    for (backend, url) in backends.urls("http") {
        let store = Store::open(&url, Migrations::Apply).await.unwrap();
        let (w, _task, _) = writer(store.clone()).await;
        w.record(event(
            "req-a",
            "intake",
            AuditDecision::Allow,
            "tool.allowed_by_rule",
            Some("sql_query"),
        ))
        .unwrap();
        w.record(event(
            "req-b",
            "intake",
            AuditDecision::Deny,
            "tool.denied_by_rule",
            Some("bulk_export"),
        ))
        .unwrap();
        w.flush().await.unwrap();
        let state = AppState::builder(
            palisade_gateway::snapshot::empty(),
            w.clone(),
            Arc::new(GatewayMetrics::new().unwrap()),
            Approvals::local(store.clone(), "gateway-test"),
        )
        .audit_reader(store, "auditor-token".into())
        .build();
        let app = app(state);
        let get = |uri: &str, token: Option<&str>| {
            let mut req = axum::http::Request::get(uri);
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            req.body(axum::body::Body::empty()).unwrap()
        };
        let denied = app
            .clone()
            .oneshot(get("/v1/audit/events", None))
            .await
            .unwrap();
        assert_eq!(denied.status(), 401, "{backend}");
        let wrong = app
            .clone()
            .oneshot(get("/v1/audit/events", Some("agent-key")))
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{backend}");
        let ok = app
            .clone()
            .oneshot(get(
                "/v1/audit/events?decision=Deny&tool=bulk_export",
                Some("auditor-token"),
            ))
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{backend}");
        let body: serde_json::Value =
            serde_json::from_slice(&axum::body::to_bytes(ok.into_body(), 1 << 20).await.unwrap())
                .unwrap();
        let ids: Vec<&str> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["requestId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["req-b"], "{backend}");
        let bad = app
            .oneshot(get(
                "/v1/audit/events?since=yesterday",
                Some("auditor-token"),
            ))
            .await
            .unwrap();
        assert_eq!(bad.status(), 400, "{backend}");
    }
}
