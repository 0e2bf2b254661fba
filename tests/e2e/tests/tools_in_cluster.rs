//! Tools Palisade runs, in a cluster: the operator compiles an AIPolicy's
//! `spec.tools.run` (applied with kubectl) — an SQLite file on the
//! gateways' tool volume, a PostgreSQL database and an HTTP tool whose
//! credentials are in labelled Secrets — and both gateway replicas run
//! them for an agent with a real ServiceAccount token: the credentials
//! reach the database and the tool, never the agent, and every run is in
//! the audit database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::HeaderMap;
use palisade_audit::Filter;
use palisade_e2e::Harness;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTTP tool that records the Authorization header of each call.
async fn calendar() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/slots",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let record = record.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                record.lock().unwrap().push(auth);
                axum::Json(json!({"day": body.0["day"], "free": ["09:00", "14:30"]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slots", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn built_in_and_http_tools_run_in_both_gateways_with_credentials_from_labelled_secrets() {
    let h = Harness::start("tools").await;

    // The tool volume (the chart's gateway.toolVolumes, mounted at the
    // same path in every pod): an SQLite database.
    let volume = h.dir.join("tool-volume");
    std::fs::create_dir_all(&volume).unwrap();
    let sqlite = volume.join("visits.db");
    rusqlite::Connection::open(&sqlite)
        .unwrap()
        .execute_batch(
            "CREATE TABLE visits (patient TEXT, day TEXT); INSERT INTO visits VALUES ('Ann', 'Mon');",
        )
        .unwrap();
    // A PostgreSQL database, read through a read-only role.
    let records = h.pg.database("clinic_records");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&records)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE patients (id int, name text); INSERT INTO patients VALUES (1, 'Ann');
         CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; GRANT SELECT ON patients TO reader;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let reader_url = records.replacen("palisade@", "reader:reader-pw@", 1);
    let (calendar_url, calendar_calls) = calendar().await;

    // The team's Secrets, opted in as credentials, and the policy's
    // tools, applied with kubectl.
    h.cp.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: records-db, namespace: clinic, labels: {{palisade.dev/credentials: \"true\"}}}}\nstringData: {{url: \"{reader_url}\"}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: calendar-token, namespace: clinic, labels: {{palisade.dev/credentials: \"true\"}}}}\nstringData: {{token: cal-CANARY-e2e}}\n"
    ));
    let run = json!({"spec": {"tools": {"run": {
        "sqlQuery": {"databases": [
            {"name": "visits", "sqlitePath": sqlite.to_str().unwrap()},
            {"name": "records", "postgresSecretRef": {"name": "records-db", "key": "url"}}
        ]},
        "http": [{"name": "calendar_slots", "description": "Free slots on a day.", "url": calendar_url,
                  "credentialsSecretRef": {"name": "calendar-token", "key": "token"}}]
    }}}});
    h.patch_policy("merge", &run.to_string());
    let query = |database: &str, query: &str| json!({"tool": "sql_query", "arguments": {"database": database, "query": query}, "execute": true});

    // Both replicas run them once the operator's bundle reaches them.
    for gateway in 0..2 {
        let body = h
            .until(
                "the gateway runs sql_query",
                Duration::from_secs(20),
                async || {
                    let (status, body) = h
                        .tool_call(
                            gateway,
                            &h.intake,
                            &query("visits", "SELECT patient, day FROM visits"),
                        )
                        .await;
                    (status == 200).then_some(body)
                },
            )
            .await;
        assert_eq!(body["result"]["rows"], json!([["Ann", "Mon"]]), "{body}");
        let (status, body) = h
            .tool_call(
                gateway,
                &h.intake,
                &query("records", "SELECT name FROM patients WHERE id = 1"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["rows"], json!([["Ann"]]));
        let (status, body) = h
            .tool_call(
                gateway,
                &h.intake,
                &json!({"tool": "calendar_slots", "arguments": {"day": "Tue"}, "execute": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["result"]["body"]["free"],
            json!(["09:00", "14:30"]),
            "{body}"
        );
        assert!(!body.to_string().contains("CANARY"), "{body}");
    }
    // The tool got the Secret's credential; the agent never held it.
    assert_eq!(
        *calendar_calls.lock().unwrap(),
        ["Bearer cal-CANARY-e2e", "Bearer cal-CANARY-e2e"]
    );
    // The policy's own rule still decides: a write is refused by it before
    // anything runs (read-only-sql allows SELECT and WITH only).
    let (status, body) = h
        .tool_call(0, &h.intake, &query("records", "DELETE FROM patients"))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "tool.default_deny", "{body}");
    // Every run is in the audit database.
    let results = h
        .audit_rows(Filter::default())
        .await
        .into_iter()
        .filter(|r| r.event.kind.as_str() == "tool_result")
        .count();
    assert_eq!(results, 6);
}
