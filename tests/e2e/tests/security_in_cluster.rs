//! Security alerts in a cluster (issue 27): a gateway replica, with the
//! chart's RBAC, announces an alert as a Warning Event `SecurityAlert` on
//! the AIPolicy that decided, which `kubectl get events` shows, and the
//! other replica lists it to the auditor over HTTP; never the argument
//! that raised it. With `spec.security.quarantineOn`, the alert
//! quarantines the agent: an annotation the chart's guard lets the gateway
//! add and nothing else, enforced by every replica, shown in status,
//! lifted by a human.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{AUDITOR_TOKEN, Harness, SYSTEM_NS};
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

/// The served revision of gateway `i`.
async fn revision(h: &Harness, i: usize) -> String {
    let (_, ready) = h.get(i, AUDITOR_TOKEN, "/readyz").await;
    ready["revision"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quarantine_is_an_annotation_every_replica_enforces_until_a_human_removes_it() {
    let h = Harness::start("quarantine").await;
    let before = revision(&h, 1).await;
    h.patch_policy(
        "merge",
        r#"{"spec":{"security":{"alerts":{"cooldown":"1s"},"quarantineOn":["sql_injection"]}}}"#,
    );
    for i in 0..2 {
        h.until("quarantineOn served", Duration::from_secs(15), async || {
            (revision(&h, i).await != before).then_some(())
        })
        .await;
    }
    let calendar = json!({"tool": "calendar_read", "arguments": {}});
    assert_eq!(h.tool_call(1, &h.intake, &calendar).await.0, 200);

    // The attack on replica a; replica b refuses the agent soon after.
    let injection = json!({"tool": "sql_query", "arguments": {"query": "SELECT 1 UNION SELECT secret_column FROM vault"}});
    h.tool_call(0, &h.intake, &injection).await;
    let raised = std::time::Instant::now();
    let refused = h
        .until(
            "replica b refuses the agent",
            Duration::from_secs(15),
            async || {
                let (status, body) = h.tool_call(1, &h.intake, &calendar).await;
                (status == 403).then_some(body)
            },
        )
        .await;
    println!(
        "replica b refused the agent {:?} after the alert",
        raised.elapsed()
    );
    assert_eq!(
        refused["error"]["code"], "kill_switch.quarantine",
        "{refused}"
    );
    assert_eq!(
        h.tool_call(1, &h.scheduler, &calendar).await.0,
        200,
        "only that agent"
    );
    let annotation = h.policy_field("{.metadata.annotations.palisade\\.dev/quarantine\\.intake}");
    let recorded: serde_json::Value = serde_json::from_str(&annotation).unwrap();
    assert_eq!(
        (&recorded["kind"], &recorded["by"]),
        (&json!("sql_injection"), &json!("gateway-a")),
        "{annotation}"
    );
    assert!(!annotation.contains("secret_column"), "{annotation}");
    let status = h.policy_field("{.status.quarantined[0].agent} {.status.quarantined[0].reason}");
    assert!(
        status.starts_with("intake alert.sql_injection at "),
        "{status}"
    );

    // The gateway may add that annotation and nothing else (a PATCH as
    // it sends one: it has no `get` for kubectl's read-before-patch).
    let token = h.cp.token(SYSTEM_NS, "palisade-gateway");
    let url = format!(
        "{}/apis/palisade.dev/v1alpha1/namespaces/clinic/aipolicies/clinic-assistant",
        h.cp.url()
    );
    for (what, patch) in [
        ("the spec", json!({"spec": {"enforcement": "Audit"}})),
        (
            "another annotation",
            json!({"metadata": {"annotations": {"team": "x"}}}),
        ),
        (
            "lifting the quarantine",
            json!({"metadata": {"annotations": {"palisade.dev/quarantine.intake": null}}}),
        ),
    ] {
        let resp = h
            .api
            .patch(&url)
            .bearer_auth(&token)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let why = resp.text().await.unwrap();
        assert_eq!(status, 403, "the gateway changed {what}: {why}");
        assert!(why.contains("quarantine-guard"), "{what}: {why}");
    }
    // Adding another agent's quarantine is what it may do.
    let resp = h
        .api
        .patch(&url)
        .bearer_auth(&token)
        .header("content-type", "application/merge-patch+json")
        .body(
            json!({"metadata": {"annotations": {"palisade.dev/quarantine.scheduler": "test"}}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    h.until(
        "the scheduler quarantined by hand-written reason",
        Duration::from_secs(15),
        async || {
            let (status, body) = h.tool_call(1, &h.scheduler, &calendar).await;
            (status == 403 && body.to_string().contains("quarantine: test")).then_some(())
        },
    )
    .await;

    // A human lifts it: the agent is decided again.
    h.kubectl_ok(&[
        "annotate",
        "aipolicy",
        "clinic-assistant",
        "-n",
        "clinic",
        "palisade.dev/quarantine.intake-",
        "palisade.dev/quarantine.scheduler-",
    ]);
    h.until("lifted", Duration::from_secs(15), async || {
        (h.tool_call(1, &h.intake, &calendar).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(h.policy_field("{.status.quarantined}"), "");

    // The same attack again, on the same replica, after the lift (and the
    // alert's cooldown): quarantined again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.tool_call(0, &h.intake, &injection).await;
    h.until("quarantined again", Duration::from_secs(15), async || {
        (h.tool_call(1, &h.intake, &calendar).await.0 == 403).then_some(())
    })
    .await;
}
