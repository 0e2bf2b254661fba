//! Approvals nobody misses (issue 27), on the real control plane: the
//! `Requested` Event, the conditions `kubectl wait` reads, the policy's
//! webhook notifications (on creation, retried, and again before the
//! deadline; never the arguments), and `kubectl palisade show`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use palisade_e2e::{Harness, User};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A webhook that refuses its first POST (503) and keeps the others.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let tries = Arc::new(Mutex::new(0u32));
    let app = axum::Router::new().route(
        "/hook",
        post({
            let seen = Arc::clone(&seen);
            move |Json(body): Json<Value>| async move {
                let mut n = tries.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                seen.lock().unwrap().push(body);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// Holds a `send_email` call (with an SSN the policy redacts) once the
/// 20 s TTL is served; the Approval's name.
async fn hold(h: &Harness, to: &str) -> String {
    h.until(
        "the 20 s TTL is served",
        Duration::from_secs(15),
        async || {
            let body = json!({"tool": "send_email", "arguments": {"to": to, "ssn": "123-45-6789"},
                          "requestId": format!("r-{}", jiff::Timestamp::now().as_millisecond())});
            let (status, body) = h.tool_call(0, &h.intake, &body).await;
            assert_eq!(status, 202, "{body}");
            let requested: jiff::Timestamp =
                body["approval"]["requestedAt"].as_str()?.parse().ok()?;
            let expires: jiff::Timestamp = body["approval"]["expiresAt"].as_str()?.parse().ok()?;
            (expires.duration_since(requested) == jiff::SignedDuration::from_secs(20))
                .then(|| body["approval"]["name"].as_str().unwrap().to_string())
        },
    )
    .await
}

/// The notifications received for approval `name`, by event.
fn received(seen: &Mutex<Vec<Value>>, name: &str) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|b| b["palisade"]["approval"] == name)
        .cloned()
        .collect()
}

/// `kubectl wait --for=condition=CONDITION approval/NAME`, started now.
fn wait_for(h: &Harness, name: &str, condition: &str) -> std::process::Child {
    Command::new(h.cp.kubectl_path())
        .args([
            "wait",
            &format!("--for=condition={condition}"),
            &format!("approval/{name}"),
            "-n",
            "clinic",
            "--timeout=40s",
        ])
        .env("KUBECONFIG", h.cp.kubeconfig(User::Admin))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_calls_are_announced_waited_for_and_shown() {
    let h = Harness::start("notices").await;
    let (url, seen) = webhook().await;
    h.apply_yaml(
        "webhook-secret",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: approval-webhook\n  namespace: clinic\n  labels: {{palisade.dev/credentials: \"true\"}}\nstringData:\n  url: {url}\n"
        ),
    );
    h.patch_policy(
        "merge",
        r#"{"spec":{"approvals":{"ttl":"20s","notify":{"webhookSecretRef":{"name":"approval-webhook","key":"url"},"beforeExpiry":"12s"}}}}"#,
    );

    // --- Approved: announced (after one refused try), shown, waited for.
    let first = hold(&h, "a@clinic.example").await;
    let approved = wait_for(&h, &first, "Approved");
    let requested = h
        .until(
            "the webhook hears of it",
            Duration::from_secs(15),
            async || received(&seen, &first).into_iter().next(),
        )
        .await;
    assert_eq!(requested["palisade"]["event"], "Requested", "{requested}");
    assert_eq!(requested["palisade"]["tool"], "send_email");
    let text = requested["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("kubectl palisade show {first} -n clinic")),
        "{text}"
    );
    let events = h.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "clinic",
        "--field-selector",
        &format!("involvedObject.name={first}"),
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("Requested"), "{events}");
    let notified = h.kubectl_ok(&[
        "get",
        "approval",
        &first,
        "-n",
        "clinic",
        "-o",
        "jsonpath={.status.notified}",
    ]);
    assert_eq!(notified, r#"["Requested"]"#);

    let show = h.kubectl_plugin(
        User::Approver,
        &["palisade", "show", &first, "-n", "clinic"],
    );
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    for expected in [
        "send_email",
        "Pending (decide before",
        "\"ssn\": \"[REDACTED]\"",
        "a@clinic.example",
    ] {
        assert!(shown.contains(expected), "{expected:?} missing:\n{shown}");
    }
    assert!(!shown.contains("123-45-6789"), "{shown}");

    let out = h.kubectl_plugin(
        User::Approver,
        &[
            "palisade", "approve", &first, "-n", "clinic", "--reason", "ok",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let waited = tokio::task::spawn_blocking(move || approved.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        waited.status.success(),
        "kubectl wait --for=condition=Approved: {}",
        String::from_utf8_lossy(&waited.stderr)
    );

    // --- Undecided: reminded before the deadline, then Expired.
    let second = hold(&h, "b@clinic.example").await;
    let expired = wait_for(&h, &second, "Expired");
    // Less than 5 minutes left: what the chart's PalisadeApprovalsNearExpiry
    // alert watches.
    h.until(
        "the operator counts it as expiring",
        Duration::from_secs(10),
        async || {
            let text = reqwest::get(format!("http://{}/metrics", h.operator_metrics))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(r#"palisade_operator_approvals_expiring{namespace="clinic"} 1"#)
                .then_some(())
        },
    )
    .await;
    let reminder = h
        .until("the reminder comes", Duration::from_secs(20), async || {
            received(&seen, &second)
                .into_iter()
                .find(|b| b["palisade"]["event"] == "Expiring")
        })
        .await;
    assert!(
        reminder["text"]
            .as_str()
            .unwrap()
            .contains("still undecided"),
        "{reminder}"
    );
    let waited = tokio::task::spawn_blocking(move || expired.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        waited.status.success(),
        "kubectl wait --for=condition=Expired: {}",
        String::from_utf8_lossy(&waited.stderr)
    );
    // Each once, and never the arguments (not even redacted).
    assert_eq!(received(&seen, &first).len(), 1);
    assert_eq!(received(&seen, &second).len(), 2);
    let all = serde_json::to_string(&*seen.lock().unwrap()).unwrap();
    for secret in ["123-45-6789", "@clinic.example", "REDACTED"] {
        assert!(!all.contains(secret), "{secret} sent: {all}");
    }
}
