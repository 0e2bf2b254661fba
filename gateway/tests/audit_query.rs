//! `GET /v1/audit/events` and `/v1/audit/usage`, the audit queries the gateway serves, against
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
        let mut chat = AuditEvent::new(
            EventKind::Chat,
            "req-c",
            "clinic",
            "intake",
            AuditDecision::Allow,
        );
        chat.provider = Some("cloud".into());
        chat.model = Some("gpt-4o".into());
        (chat.input_tokens, chat.output_tokens, chat.cached_tokens) =
            (Some(120), Some(30), Some(100));
        w.record(chat).unwrap();
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
            .clone()
            .oneshot(get(
                "/v1/audit/events?since=yesterday",
                Some("auditor-token"),
            ))
            .await
            .unwrap();
        assert_eq!(bad.status(), 400, "{backend}");

        // Tokens and requests per agent, provider and model (the last 24
        // hours unless `since` says otherwise), with the same token.
        let usage = |uri: &'static str, token: Option<&'static str>| {
            let app = app.clone();
            async move {
                let resp = app.oneshot(get(uri, token)).await.unwrap();
                let status = resp.status().as_u16();
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (
                    status,
                    serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default(),
                )
            }
        };
        assert_eq!(usage("/v1/audit/usage", None).await.0, 401, "{backend}");
        let (status, body) = usage("/v1/audit/usage?agent=intake", Some("auditor-token")).await;
        assert_eq!(status, 200, "{backend}: {body}");
        assert_eq!(
            body["usage"],
            serde_json::json!([{"namespace": "clinic", "agent": "intake", "provider": "cloud", "model": "gpt-4o",
                                "requests": 1, "inputTokens": 120, "outputTokens": 30, "cachedTokens": 100}]),
            "{backend}"
        );
        let (status, body) = usage(
            "/v1/audit/usage?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
            Some("auditor-token"),
        )
        .await;
        assert_eq!(
            (status, body["usage"].clone()),
            (200, serde_json::json!([])),
            "{backend}"
        );
        let (status, body) = usage("/v1/audit/usage?tool=x", Some("auditor-token")).await;
        assert_eq!(status, 400, "{backend}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("use namespace, agent, since, until")
        );
    }
}
