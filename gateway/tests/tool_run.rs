//! Tools Palisade runs itself, through `POST /v1/tool-calls` with
//! `"execute": true`: allowed calls run and answer their (sanitized)
//! result, refused paths and queries say why, denied and held calls never
//! run, an approved call runs once exactly as approved, every run is
//! audited after its decision, and canary secrets in a tool's answer reach
//! neither the client, the audit nor the metrics — while the tool got the
//! policy's credential, which the agent never saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use palisade_audit::{Filter, Store};
use palisade_fake_upstreams::{FakeOpenAi, Script};
use palisade_gateway::metrics::GatewayMetrics;
use palisade_gateway::state::AppState;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

use common::tools::{Clinic, KEY, OPERATOR, TOOL_KEY};

struct Gateway {
    state: AppState,
    store: Store,
    root: PathBuf,
    tool_calls: common::tools::Calls,
    provider: FakeOpenAi,
}

async fn gateway(name: &str) -> Gateway {
    let clinic = Clinic::open(name).await;
    let served = clinic.serve(Script::Text("noted".into())).await;
    Gateway {
        state: served.state,
        store: served.store,
        root: clinic.root,
        tool_calls: clinic.tool_calls,
        provider: served.model,
    }
}

async fn call(g: &Gateway, body: Value) -> (u16, Value) {
    let (status, _, body) = common::post_json(&g.state, "/v1/tool-calls", KEY, &body).await;
    (status, body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .or(body["execution"]["reasonCode"].as_str())
        .unwrap_or("")
}

/// The audit rows of `request_id`: (kind, decision, reason codes).
async fn rows(g: &Gateway, request_id: &str) -> Vec<(String, String, Vec<String>)> {
    g.state.audit.caught_up().await;
    g.store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.request_id == request_id)
        .map(|r| {
            (
                r.event.kind.as_str().to_owned(),
                r.event.decision.clone(),
                r.event.reason_codes.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn allowed_calls_run_and_answer_their_result_and_each_run_is_audited_after_its_decision() {
    let g = gateway("allowed").await;
    let (status, body) = call(
        &g,
        json!({"tool": "read_file", "arguments": {"root": "notes", "path": "visit.md"}, "execute": true, "requestId": "r-read"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "Allow");
    assert_eq!(body["result"]["content"], "Ann: blood pressure 120/80");
    assert_eq!(body["execution"]["reasonCode"], "tool.executed");
    assert_eq!(
        rows(&g, "r-read").await,
        [
            (
                "tool_call".into(),
                "Allow".into(),
                vec!["tool.allowed_by_rule".into()]
            ),
            (
                "tool_result".into(),
                "Executed".into(),
                vec!["tool.executed".into()]
            ),
        ]
    );
    g.state.audit.caught_up().await;
    let result_row = g
        .store
        .query(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.event.request_id == "r-read" && r.event.kind.as_str() == "tool_result")
        .unwrap();
    assert_eq!(result_row.event.result_bytes, Some(26));
    assert_eq!(
        result_row.event.result_sha256.as_deref().map(str::len),
        Some(64)
    );
    assert!(result_row.event.latency_us.is_some());

    let (status, body) = call(
        &g,
        json!({"tool": "sql_query", "arguments": {"database": "clinic", "query": "SELECT id, name FROM patients"}, "execute": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["rows"], json!([[1, "Ann"]]));

    // Without "execute" nothing runs: the decision only, as before.
    let (status, body) = call(
        &g,
        json!({"tool": "read_file", "arguments": {"root": "notes", "path": "visit.md"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.get("result").is_none(), "{body}");
}

#[tokio::test]
async fn refused_paths_and_queries_and_bad_arguments_say_why_and_are_audited() {
    let g = gateway("refused").await;
    for (arguments, status, reason) in [
        (
            json!({"root": "notes", "path": "../outside.txt"}),
            403,
            "tool.path_refused",
        ),
        (
            json!({"root": "notes", "path": "/etc/passwd"}),
            403,
            "tool.path_refused",
        ),
        (
            json!({"root": "nope", "path": "visit.md"}),
            400,
            "tool.input_invalid",
        ),
        (json!({"root": "notes"}), 400, "tool.input_invalid"),
        (
            json!({"root": "notes", "path": "missing.md"}),
            502,
            "tool.execution_failed",
        ),
    ] {
        let (got, body) = call(
            &g,
            json!({"tool": "read_file", "arguments": arguments, "execute": true, "requestId": "r-bad"}),
        )
        .await;
        assert_eq!((got, code(&body)), (status, reason), "{arguments}: {body}");
        assert_eq!(body["palisade"]["decision"], "Allow", "{body}");
        assert!(!body.to_string().contains("outside\""), "{body}");
    }
    let (got, body) = call(
        &g,
        json!({"tool": "sql_query", "arguments": {"database": "clinic", "query": "DELETE FROM patients"}, "execute": true}),
    )
    .await;
    assert_eq!((got, code(&body)), (403, "tool.query_refused"), "{body}");
    let failed: Vec<_> = rows(&g, "r-bad")
        .await
        .into_iter()
        .filter(|r| r.0 == "tool_result")
        .map(|r| (r.1, r.2[0].clone()))
        .collect();
    assert_eq!(failed.len(), 5, "{failed:?}");
    assert!(failed.iter().all(|(d, _)| d == "Failed"), "{failed:?}");

    // Allowed, but not a tool Palisade runs: the caller is told how to
    // go on, and nothing runs.
    let (got, body) = call(
        &g,
        json!({"tool": "search_web", "arguments": {}, "execute": true}),
    )
    .await;
    assert_eq!(got, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the policy runs sql_query, read_file, write_file, lookup, delete_record"),
        "{body}"
    );
}

#[tokio::test]
async fn denied_and_held_calls_never_run_and_an_approved_call_runs_once_as_approved() {
    let g = gateway("held").await;
    let write = json!({"root": "notes", "path": "plan.md", "content": "rest for a week"});
    // A denied tool: refused, nothing runs.
    let (status, body) = call(
        &g,
        json!({"tool": "delete_everything", "arguments": {}, "execute": true, "requestId": "r-deny"}),
    )
    .await;
    assert_eq!((status, code(&body)), (403, "tool.default_deny"), "{body}");
    assert_eq!(rows(&g, "r-deny").await.len(), 1);

    // Held: 202, and the file is not written.
    let (status, body) = call(
        &g,
        json!({"tool": "write_file", "arguments": write, "execute": true}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(!g.root.join("plan.md").exists());
    let name = body["approval"]["name"].as_str().unwrap().to_owned();
    let approve = axum::http::Request::post(format!("/v1/approvals/{name}/approve"))
        .header("authorization", format!("Bearer {OPERATOR}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let approved =
        tower::ServiceExt::oneshot(palisade_gateway::router::app(g.state.clone()), approve)
            .await
            .unwrap();
    assert_eq!(approved.status(), 200);

    // Other arguments do not use the approval.
    let (status, body) = call(
        &g,
        json!({"tool": "write_file", "arguments": {"root": "notes", "path": "plan.md", "content": "discharge now"}, "execute": true, "approval": name}),
    )
    .await;
    assert_eq!((status, code(&body)), (403, "approval.mismatch"), "{body}");
    assert!(!g.root.join("plan.md").exists());

    // The approved call runs, once.
    let (status, body) = call(
        &g,
        json!({"tool": "write_file", "arguments": write, "execute": true, "approval": name, "requestId": "r-write"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reasonCode"], "tool.allowed_by_approval");
    assert_eq!(body["result"]["bytesWritten"], 15);
    assert_eq!(
        std::fs::read_to_string(g.root.join("plan.md")).unwrap(),
        "rest for a week"
    );
    std::fs::remove_file(g.root.join("plan.md")).unwrap();
    let (status, body) = call(
        &g,
        json!({"tool": "write_file", "arguments": write, "execute": true, "approval": name}),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (403, "approval.replay_refused"),
        "{body}"
    );
    assert!(!g.root.join("plan.md").exists(), "the approval ran twice");
}

#[tokio::test]
async fn a_registered_http_tool_gets_the_policy_credential_and_its_secrets_reach_no_one() {
    let g = gateway("http").await;
    let (status, body) = call(
        &g,
        json!({"tool": "lookup", "arguments": {"id": 4}, "execute": true, "requestId": "r-http"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The tool got the arguments and the policy's key ...
    let calls = g.tool_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1, json!({"id": 4}));
    assert_eq!(
        calls[0].0["authorization"].to_str().unwrap(),
        format!("Bearer {TOOL_KEY}")
    );
    // ... and what it answered was sanitized before the client saw it.
    let result = &body["result"]["body"];
    assert_eq!(result["patient"], 4);
    let note = result["note"].as_str().unwrap();
    assert!(
        note.contains("[REDACTED:api_key]") && note.contains("password=[REDACTED:secret]"),
        "{note}"
    );
    assert!(
        result["blob"]
            .as_str()
            .unwrap()
            .starts_with("[blob: 480 bytes"),
        "{result}"
    );
    assert!(!body.to_string().contains("CANARY"), "{body}");

    // Neither the audit nor the metrics hold a canary; the redactions
    // are counted.
    g.state.audit.caught_up().await;
    let audit = serde_json::to_string(
        &g.store
            .query(&Filter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| serde_json::to_value(&r.event).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(audit.contains("tool_result"), "{audit}");
    assert!(!audit.contains("CANARY"), "{audit}");
    let metrics = g.state.metrics.render();
    assert!(!metrics.contains("CANARY"));
    for kind in ["api_key", "secret_assignment", "blob"] {
        assert!(
            metrics.contains(&format!(
                "palisade_tool_result_redactions_total{{kind=\"{kind}\"}} 1"
            )),
            "{kind}: {metrics}"
        );
    }
    assert!(metrics.contains(
        "palisade_tool_runs_total{namespace=\"default\",reason=\"tool.executed\",tool=\"lookup\"} 1"
    ));
}

#[tokio::test]
async fn tool_results_agents_send_back_are_sanitized_before_any_provider_sees_them() {
    let g = gateway("chat").await;
    let leaked = "here is the row: api_key=CANARYsecret42 and Authorization: Bearer CANARYtok3n99";
    let chat = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "look up Ann"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": leaked},
        ]
    });
    let (status, _, body) = common::post_json(&g.state, "/v1/chat/completions", KEY, &chat).await;
    assert_eq!(status, 200, "{body}");
    let messages = json!({
        "model": "gpt-4o",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "look up Ann"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "lookup", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": leaked}]},
        ]
    });
    let (status, _, body) = common::post_json(&g.state, "/v1/messages", KEY, &messages).await;
    assert_eq!(status, 200, "{body}");
    let received = g.provider.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        let sent = r.body.to_string();
        assert!(!sent.contains("CANARY"), "{sent}");
        assert!(sent.contains("[REDACTED:secret]"), "{sent}");
    }
}

#[tokio::test]
async fn postgres_queries_run_in_a_read_only_transaction_bounded_by_rows_and_time() {
    let pg = palisade_audit_suite::TestPostgres::start();
    let url = pg.database("clinic_tools");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE patients (id int, name text); INSERT INTO patients VALUES (1, 'Ann'), (2, 'Bo');
         CREATE SEQUENCE s;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let dir = palisade_testkit::temp_dir("tool-run-pg");
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: clinic}}
spec:
  agents: [{{name: a, apiKeySecretRef: {{name: keys, key: a}}}}]
  providers: [{{name: local, type: ollama, baseUrl: "http://127.0.0.1:9"}}]
  routing: {{defaultProvider: local}}
  tools:
    rules: [{{tools: [sql_query], action: Allow}}]
    run:
      sqlQuery:
        databases: [{{name: warehouse, postgresSecretRef: {{name: keys, key: pg}}}}]
        maxRows: 20
        timeout: 500ms
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{a: {KEY}, pg: "{url}"}}
"#
        ),
    )
    .unwrap();
    let metrics = Arc::new(GatewayMetrics::new().unwrap());
    let current = palisade_gateway::snapshot::empty();
    palisade_gateway::config::reload::load_into(&[path], &current, &metrics).unwrap();
    let (state, _store) = common::standalone_built(&dir, current, metrics, OPERATOR, |b| b).await;
    let query = |q: &str| {
        let state = state.clone();
        let body = json!({"tool": "sql_query", "arguments": {"database": "warehouse", "query": q}, "execute": true});
        async move {
            let (status, _, body) = common::post_json(&state, "/v1/tool-calls", KEY, &body).await;
            (status, body)
        }
    };
    for q in [
        "SELECT id, name FROM patients ORDER BY id;",
        "SELECT id, name FROM patients ORDER BY id -- the two of them",
    ] {
        let (status, body) = query(q).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["columns"], json!(["id", "name"]));
        assert_eq!(body["result"]["rows"], json!([[1, "Ann"], [2, "Bo"]]));
    }

    for hostile in [
        "DELETE FROM patients",
        "INSERT INTO patients VALUES (3, 'Eve')",
        "UPDATE patients SET name = 'Eve'",
        "DROP TABLE patients",
        "SELECT 1; DELETE FROM patients",
        "COMMIT",
        "SELECT set_config('transaction_read_only', 'off', false)",
        "WITH d AS (DELETE FROM patients RETURNING *) SELECT * FROM d",
        "SELECT nextval('s')",
        "COPY patients TO '/tmp/palisade-copy.csv'",
        "CREATE TABLE t AS SELECT 1",
    ] {
        let (status, body) = query(hostile).await;
        assert!([403, 502].contains(&status), "{hostile:?}: {status} {body}");
        assert_ne!(body["execution"]["reasonCode"], "tool.executed");
    }
    let (status, body) =
        query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c")
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["rowCount"], 20);
    assert_eq!(body["result"]["truncated"], true);
    let (status, body) = query("SELECT pg_sleep(10)").await;
    assert_eq!((status, code(&body)), (504, "tool.timeout"), "{body}");
    // Nothing was written, and the password-less URL never showed.
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM patients")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 2);
    let (next,): (i64,) = sqlx::query_as("SELECT nextval('s')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(next, 1, "the sequence moved");
    assert!(!std::path::Path::new("/tmp/palisade-copy.csv").exists());
}
