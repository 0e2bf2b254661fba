//! Security alerts in a cluster (issue 27): a gateway replica, with the
//! chart's RBAC, announces an alert as a Warning Event `SecurityAlert` on
//! the AIPolicy that decided, which `kubectl get events` shows, and the
//! other replica lists it to the auditor over HTTP; never the argument
//! that raised it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{AUDITOR_TOKEN, Harness};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alert_is_an_event_on_the_policy() {
    let h = Harness::start("security").await;
    let (status, body) = h
        .tool_call(
            0,
            &h.intake,
            &json!({"tool": "sql_query", "arguments": {"query": "SELECT name FROM patients UNION SELECT secret_column FROM vault"}}),
        )
        .await;
    assert!(status == 200 || status == 403, "{status} {body}");
    let notes = h
        .until("the alert's Event", Duration::from_secs(15), async || {
            let out = h.kubectl_ok(&[
                "get",
                "events",
                "-n",
                "clinic",
                "--field-selector",
                "involvedObject.name=clinic-assistant,reason=SecurityAlert",
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            (!out.is_empty()).then_some(out)
        })
        .await;
    assert!(
        notes.contains("agent intake: alert.sql_injection: argument query looks like SQL injection (tool sql_query, request "),
        "{notes}"
    );
    assert!(!notes.contains("secret_column"), "{notes}");
    let kind = h.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "clinic",
        "--field-selector",
        "reason=SecurityAlert",
        "-o",
        "jsonpath={.items[0].type} {.items[0].involvedObject.kind}",
    ]);
    assert_eq!(kind, "Warning AIPolicy");
    // And over HTTP, for the auditor, from the shared PostgreSQL audit:
    // the other replica lists what the first one raised.
    let (status, body) = h
        .get(1, AUDITOR_TOKEN, "/v1/security/alerts?kind=sql_injection")
        .await;
    assert_eq!(status, 200, "{body}");
    let alert = &body["alerts"][0];
    assert_eq!(
        (&alert["agent"], &alert["tool"]),
        (&json!("intake"), &json!("sql_query")),
        "{body}"
    );
    assert_eq!(alert["policy"], "clinic-assistant");
    assert!(!body.to_string().contains("secret_column"), "{body}");
    assert_eq!(h.get(1, &h.intake, "/v1/security/alerts").await.0, 401);
}
