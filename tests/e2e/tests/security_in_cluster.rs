//! Security alerts in a cluster (issue 27): a gateway replica, with the
//! chart's RBAC, announces an alert as a Warning Event `SecurityAlert` on
//! the AIPolicy that decided, which `kubectl get events` shows, without
//! the argument that raised it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::Harness;
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
}
