//! What one agent can cost the cluster through approvals, end to end with
//! the operator and two gateway replicas against the real API server: the
//! long-polls of many waiting agents share one watch per gateway (the API
//! server's audit log shows it), and an agent has at most its policy's
//! `maxPendingPerAgent` approvals pending.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::Filter;
use palisade_e2e::{GATEWAY_USER, Harness, code};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// The distinct requests (audit IDs) with `verb` on Approvals that gateway
/// replica `pod` made, as the API server's audit log records them.
fn gateway_requests(h: &Harness, pod: &str, verb: &str) -> BTreeSet<String> {
    h.cp.audit_log()
        .iter()
        .filter(|e| {
            e["user"]["username"] == GATEWAY_USER
                && e["user"]["extra"]["authentication.kubernetes.io/pod-name"][0] == pod
                && e["verb"] == verb
                && e["objectRef"]["resource"] == "approvals"
        })
        .filter_map(|e| e["auditID"].as_str().map(String::from))
        .collect()
}

async fn hold(h: &Harness, to: &str) -> String {
    let (status, body) = h
        .tool_call(
            0,
            &h.intake,
            &json!({"tool": "send_email", "arguments": {"to": to}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["approval"]["name"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_long_polls_on_a_gateway_share_one_watch_of_the_api_server() {
    let h = Harness::start("shared-watch").await;
    let mut names = Vec::new();
    for i in 0..12 {
        names.push(hold(&h, &format!("patient-{i}@clinic.example")).await);
    }
    let watches_before = gateway_requests(&h, "gateway-a", "watch");

    // Twenty-four agents wait at once on replica A (two on each approval).
    let polls: Vec<_> = names
        .iter()
        .chain(names.iter())
        .map(|name| {
            let http = h.http.clone();
            let url = h.gateways[0].url(&format!("/v1/approvals/{name}?wait=30s"));
            let token = h.intake.clone();
            tokio::spawn(async move {
                let r = http.get(url).bearer_auth(token).send().await.unwrap();
                serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in &names {
        h.decide(name, "Approved", "ok");
    }
    for poll in polls {
        let answer = tokio::time::timeout(Duration::from_secs(20), poll)
            .await
            .expect("a long-poll did not answer once its approval was decided")
            .unwrap();
        assert_eq!(answer["phase"], "Approved", "{answer}");
    }

    let opened: Vec<String> = gateway_requests(&h, "gateway-a", "watch")
        .difference(&watches_before)
        .cloned()
        .collect();
    assert_eq!(
        opened.len(),
        1,
        "24 long-polls opened {} watches of the API server: {opened:?}",
        opened.len()
    );
}

/// A held call of `send_email` to `to`, as request `id` (a retry repeats
/// the id), on gateway `gw`.
async fn send_email(h: &Harness, gw: usize, to: &str, id: &str) -> (u16, Value) {
    h.tool_call(
        gw,
        &h.intake,
        &json!({"tool": "send_email", "arguments": {"to": to}, "requestId": id}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_gets_429_beyond_its_policys_pending_approvals_and_a_retry_still_finds_its_own() {
    let h = Harness::start("pending-cap").await;
    h.patch_policy(
        "merge",
        r#"{"spec":{"approvals":{"maxPendingPerAgent":3}}}"#,
    );
    let generation = h.policy_field("{.metadata.generation}");
    h.until(
        "both gateways serve the cap",
        Duration::from_secs(20),
        async || {
            let served = h.policy_field("{.status.servedGeneration} {.status.gatewaysApplied}");
            (served == format!("{generation} 2")).then_some(())
        },
    )
    .await;

    // Three wait, on either replica.
    let mut held = Vec::new();
    for i in 0..3 {
        let (status, body) = send_email(
            &h,
            i % 2,
            &format!("p{i}@clinic.example"),
            &format!("r-{i}"),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        held.push(body["approval"]["name"].as_str().unwrap().to_owned());
    }
    // A fourth is refused, on both, and recorded nowhere.
    for gw in [0, 1] {
        let (status, body) = send_email(&h, gw, "p3@clinic.example", "r-3").await;
        assert_eq!(
            (status, code(&body)),
            (429, "limit.pending_approvals"),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("already has 3 approvals pending"),
            "{message}"
        );
        assert_eq!(body["error"]["type"], "rate_limit_error");
    }
    let listed = h.kubectl_ok(&["get", "approvals", "-n", "clinic", "-o", "name"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    // A retry of a call already held finds its approval, cap or not.
    let (status, body) = send_email(&h, 1, "p0@clinic.example", "r-0").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["approval"]["name"], held[0]);

    // Once a human decides one, there is room again.
    h.decide(&held[1], "Denied", "no");
    let (status, body) = send_email(&h, 0, "p3@clinic.example", "r-3").await;
    assert_eq!(status, 202, "{body}");

    // The refusals are audited as decisions of their own.
    h.until(
        "the refusals are audited",
        Duration::from_secs(10),
        async || {
            let rows = h.audit_rows(Filter::default()).await;
            let refused = rows
                .iter()
                .filter(|r| {
                    r.event.reason_codes.first().map(String::as_str)
                        == Some("limit.pending_approvals")
                })
                .count();
            (refused == 2).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_megabyte_of_held_arguments_is_stored_as_a_4_kib_preview_and_the_approval_is_for_exactly_that_call()
 {
    let h = Harness::start("big-arguments").await;
    let call = json!({"tool": "send_email", "arguments": {"body": "x".repeat(1_000_000), "ssn": "123-45-6789", "to": "a@clinic.example"}});
    let (status, body) = h.tool_call(0, &h.intake, &call).await;
    assert_eq!(status, 202, "{body}");
    let name = body["approval"]["name"].as_str().unwrap().to_string();

    let obj: Value = serde_json::from_str(
        &h.kubectl_ok(&["get", "approval", &name, "-n", "clinic", "-o", "json"]),
    )
    .unwrap();
    let spec = &obj["spec"];
    let preview = spec["argumentsPreview"].as_str().unwrap();
    assert!(preview.len() <= 4096, "{}", preview.len());
    assert!(preview.starts_with("{\n  \"body\": \"xxx"), "{preview}");
    assert!(preview.contains("[truncated: the first"), "{preview}");
    assert_eq!(spec["argumentsTruncated"], true);
    assert!(spec.get("arguments").is_none());
    assert!(
        obj.to_string().len() < 8192,
        "the Approval is {} bytes",
        obj.to_string().len()
    );

    h.decide(&name, "Approved", "ok");
    // Arguments that differ only past the preview are another call.
    let mut other = call.clone();
    other["arguments"]["to"] = json!("someone@else.example");
    other["approval"] = json!(name);
    let (status, body) = h.tool_call(1, &h.intake, &other).await;
    assert_eq!((status, code(&body)), (403, "approval.mismatch"), "{body}");
    let mut exact = call;
    exact["approval"] = json!(name);
    let (status, body) = h.tool_call(1, &h.intake, &exact).await;
    assert_eq!(
        (status, code(&body)),
        (200, "tool.allowed_by_approval"),
        "{body}"
    );
}
