//! Approvals and kill switches end to end: the operator and two gateway
//! replicas as real processes against the real API server (the chart's
//! RBAC and admission policies enforced) and a real PostgreSQL, driven only
//! with kubectl as the test users and HTTP with ServiceAccount tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::Filter;
use palisade_e2e::{Harness, INTAKE_USER, User, code};
use serde_json::{Value, json};
use std::time::Duration;

/// The approver decides, the way the README tells people to.
fn decide(h: &Harness, name: &str, decision: &str, reason: &str) {
    let out = h.patch_approval(
        User::Approver,
        name,
        &json!({"spec": {"decision": decision, "reason": reason}}),
    );
    assert!(
        out.status.success(),
        "the approver's decision: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn refused(out: &std::process::Output, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted, expected refusal: {why}");
    assert!(
        stderr.contains(why),
        "refused, but not because {why:?}: {stderr}"
    );
}

async fn hold(h: &Harness, gateway: usize, to: &str) -> String {
    let (status, body) = h
        .tool_call(
            gateway,
            &h.intake,
            &json!({"tool": "send_email", "arguments": {"to": to, "ssn": "123-45-6789"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["approval"]["name"].as_str().unwrap().to_string()
}

fn using(name: &str, to: &str) -> Value {
    json!({"tool": "send_email", "arguments": {"to": to, "ssn": "123-45-6789"}, "approval": name})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approve_deny_expire_mismatch_and_restart_through_kubectl() {
    let mut h = Harness::start("approvals").await;

    // --- Approve: 202 → kubectl get → kubectl patch → once → replay refused.
    let name = hold(&h, 0, "a@clinic.example").await;
    let listed = h
        .until(
            "the operator marks it Pending",
            Duration::from_secs(10),
            async || {
                let out = h.kubectl_ok(&["get", "approvals", "-n", "clinic"]);
                out.lines()
                    .any(|l| l.starts_with(&name) && l.contains("Pending"))
                    .then_some(out)
            },
        )
        .await;
    assert!(
        listed.contains("intake") && listed.contains("send_email"),
        "{listed}"
    );
    // The arguments are redacted as the policy says; the digest is of the real ones.
    let obj: Value = serde_json::from_str(
        &h.kubectl_ok(&["get", "approval", &name, "-n", "clinic", "-o", "json"]),
    )
    .unwrap();
    let preview = obj["spec"]["argumentsPreview"].as_str().unwrap();
    assert!(preview.contains(r#""ssn": "[REDACTED]""#), "{obj}");
    assert!(!preview.contains("123-45-6789"), "{obj}");
    assert_eq!(obj["spec"]["argumentsTruncated"], false, "{obj}");
    assert!(obj["spec"].get("arguments").is_none(), "{obj}");
    assert_eq!(obj["spec"]["requestedBy"], INTAKE_USER);
    assert_eq!(obj["spec"]["policy"], "clinic-assistant");

    // The agent long-polls on the other replica while a human approves.
    let poll = {
        let http = h.http.clone();
        let url = h.gateways[1].url(&format!("/v1/approvals/{name}?wait=20s"));
        let token = h.intake.clone();
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            let started = std::time::Instant::now();
            let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            (body, started)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Real admission decides who may decide. The requesting agent has no
    // RBAC for it...
    let agent = h.cp.service_account_kubeconfig("clinic", "intake-agent");
    let decision = json!({"spec": {"decision": "Approved", "reason": "mine"}});
    let by_agent = h.cp.kubectl_as(
        &agent,
        &[
            "patch",
            "approval",
            &name,
            "-n",
            "clinic",
            "--type=merge",
            "-p",
            &decision.to_string(),
        ],
    );
    refused(&by_agent, "forbidden");
    // ...and even when someone wrongly binds it the approver role, the
    // admission policy refuses a decision by the agent that asked.
    h.kubectl_ok(&[
        "create",
        "rolebinding",
        "oops-agent-approves",
        "-n",
        "clinic",
        "--clusterrole=palisade-approver",
        "--serviceaccount=clinic:intake-agent",
    ]);
    let by_agent = h.cp.kubectl_as(
        &agent,
        &[
            "patch",
            "approval",
            &name,
            "-n",
            "clinic",
            "--type=merge",
            "-p",
            &decision.to_string(),
        ],
    );
    refused(&by_agent, "an agent may never decide its own request");
    h.kubectl_ok(&[
        "delete",
        "rolebinding",
        "oops-agent-approves",
        "-n",
        "clinic",
    ]);
    // A namespace editor may patch Approvals but holds no `approve`.
    let by_editor = h.patch_approval(User::Editor, &name, &decision);
    refused(&by_editor, "may not decide approvals");
    // The approver decides; whatever the client writes as the decider, the
    // API server records who sent the request.
    let out = h.patch_approval(User::Approver,
        &name,
        &json!({"spec": {"decision": "Approved", "reason": "the patient asked for it", "decidedBy": "mallory"}}),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        h.kubectl_ok(&[
            "get",
            "approval",
            &name,
            "-n",
            "clinic",
            "-o",
            "jsonpath={.spec.decidedBy}"
        ]),
        "approver"
    );
    let (polled, _) = poll.await.unwrap();
    assert_eq!(polled["phase"], "Approved", "{polled}");
    assert_eq!(polled["decidedBy"], "approver");
    // Another agent cannot see it, let alone use it.
    let (status, _) = h
        .get(0, &h.scheduler, &format!("/v1/approvals/{name}"))
        .await;
    assert_eq!(status, 404);
    // A decision is final, even for the approver.
    let changed = h.patch_approval(
        User::Approver,
        &name,
        &json!({"spec": {"decision": "Denied"}}),
    );
    refused(&changed, "final");

    // Different arguments: refused, approval not used up.
    let (status, body) = h
        .tool_call(0, &h.intake, &using(&name, "someone@else.example"))
        .await;
    assert_eq!((status, code(&body)), (403, "approval.mismatch"));
    // The approved call runs once, on replica A...
    let (status, body) = h
        .tool_call(0, &h.intake, &using(&name, "a@clinic.example"))
        .await;
    assert_eq!(
        (status, code(&body)),
        (200, "tool.allowed_by_approval"),
        "{body}"
    );
    // ...and never again, on either replica.
    for gw in [1, 0] {
        let (status, body) = h
            .tool_call(gw, &h.intake, &using(&name, "a@clinic.example"))
            .await;
        assert_eq!(
            (status, code(&body)),
            (403, "approval.replay_refused"),
            "replica {gw}: {body}"
        );
    }
    h.until(
        "the operator marks it Consumed",
        Duration::from_secs(10),
        async || {
            let out = h.kubectl_ok(&[
                "get",
                "approval",
                &name,
                "-n",
                "clinic",
                "-o",
                "jsonpath={.status.phase} {.status.consumedBy} {.status.decidedBy}",
            ]);
            (out == "Consumed gateway-a approver").then_some(())
        },
    )
    .await;

    // --- Deny.
    let denied = hold(&h, 1, "b@clinic.example").await;
    decide(&h, &denied, "Denied", "not today");
    let (status, body) = h
        .tool_call(1, &h.intake, &using(&denied, "b@clinic.example"))
        .await;
    assert_eq!((status, code(&body)), (403, "approval.denied"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approver: not today"),
        "{body}"
    );

    // --- A gateway restarts while an approval is pending: still works.
    let pending = hold(&h, 0, "c@clinic.example").await;
    let a = h.gateways.remove(0);
    a.stop();
    decide(&h, &pending, "Approved", "ok");
    let restarted = h.start_gateway("gateway-a");
    h.gateways.insert(0, restarted);
    h.wait_ready(0).await;
    let (status, body) = h
        .tool_call(0, &h.intake, &using(&pending, "c@clinic.example"))
        .await;
    assert_eq!(
        (status, code(&body)),
        (200, "tool.allowed_by_approval"),
        "{body}"
    );

    // --- Expiry: a short TTL, nobody decides.
    h.patch_policy("merge", r#"{"spec":{"approvals":{"ttl":"1s"}}}"#);
    let expiring = h
        .until("the short TTL is served", Duration::from_secs(10), async || {
            let (status, body) = h
                .tool_call(1, &h.intake, &json!({"tool": "send_email", "arguments": {"to": "d@clinic.example"}, "requestId": format!("r-{}", jiff::Timestamp::now().as_millisecond())}))
                .await;
            assert_eq!(status, 202);
            let requested: jiff::Timestamp = body["approval"]["requestedAt"].as_str()?.parse().ok()?;
            let expires: jiff::Timestamp = body["approval"]["expiresAt"].as_str()?.parse().ok()?;
            (expires.duration_since(requested) <= jiff::SignedDuration::from_secs(1))
                .then(|| body["approval"]["name"].as_str().unwrap().to_string())
        })
        .await;
    h.until(
        "the operator expires it",
        Duration::from_secs(10),
        async || {
            let out = h.kubectl_ok(&[
                "get",
                "approval",
                &expiring,
                "-n",
                "clinic",
                "-o",
                "jsonpath={.status.phase}",
            ]);
            (out == "Expired").then_some(())
        },
    )
    .await;
    let late = h.kubectl(&[
        "patch",
        "approval",
        &expiring,
        "-n",
        "clinic",
        "--type=merge",
        "-p",
        r#"{"spec":{"decision":"Approved","decidedBy":"alice"}}"#,
    ]);
    // The API server accepts a late decision (CRD rules cannot see the
    // clock), but the approval stays expired and cannot be used.
    let _ = late;
    let (status, body) = h.tool_call(1, &h.intake, &json!({"tool": "send_email", "arguments": {"to": "d@clinic.example"}, "approval": expiring})).await;
    assert_eq!((status, code(&body)), (403, "approval.expired"));

    // --- Every step is in the audit, in Postgres, with who and when.
    let outcomes = h
        .until(
            "the outcomes are in the audit",
            Duration::from_secs(10),
            async || {
                let rows = h.audit_rows(Filter::default()).await;
                let of = |approval: &str, code: &str| {
                    rows.iter()
                        .find(|r| {
                            r.event.approval.as_deref() == Some(approval)
                                && r.event.reason_codes.first().map(String::as_str) == Some(code)
                        })
                        .map(|r| r.event.decided_by.clone())
                };
                Some([
                    of(&name, "approval.pending")?,
                    of(&name, "approval.approved")?,
                    of(&name, "approval.consumed")?,
                    of(&name, "tool.allowed_by_approval")?,
                    of(&name, "approval.replay_refused")?,
                    of(&denied, "approval.denied")?,
                    of(&expiring, "approval.expired")?,
                ])
            },
        )
        .await;
    assert_eq!(outcomes[1].as_deref(), Some("approver"), "who approved");
    assert_eq!(
        outcomes[2].as_deref(),
        Some("gateway-a"),
        "which replica used it"
    );
    assert_eq!(outcomes[5].as_deref(), Some("approver"), "who denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_switches_stop_both_replicas_and_lifting_them_restores_traffic() {
    let h = Harness::start("kill").await;
    let allowed = json!({"tool": "calendar_read", "arguments": {}});
    for gw in 0..2 {
        let (status, body) = h.tool_call(gw, &h.intake, &allowed).await;
        assert_eq!(status, 200, "{body}");
    }
    let patched = std::time::Instant::now();
    h.patch_policy("merge", r#"{"spec":{"suspend":true}}"#);
    for gw in 0..2 {
        h.until(
            "the kill switch reaches the replica",
            Duration::from_secs(5),
            async || {
                let (status, body) = h.tool_call(gw, &h.intake, &allowed).await;
                (status == 403 && code(&body) == "kill_switch.policy").then_some(())
            },
        )
        .await;
    }
    let stopped_in = patched.elapsed();
    assert!(stopped_in < Duration::from_secs(5), "{stopped_in:?}");
    // Chat is stopped too, with the same reason.
    let chat = h
        .http
        .post(h.gateways[1].url("/v1/chat/completions"))
        .bearer_auth(&h.intake)
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 403);
    assert_eq!(chat.headers()["x-palisade-reason"], "kill_switch.policy");

    h.patch_policy("merge", r#"{"spec":{"suspend":false}}"#);
    for gw in 0..2 {
        h.until("traffic flows again", Duration::from_secs(5), async || {
            let (status, _) = h.tool_call(gw, &h.intake, &allowed).await;
            (status == 200).then_some(())
        })
        .await;
    }

    // The per-agent switch stops one agent, not the other.
    h.patch_policy(
        "json",
        r#"[{"op":"add","path":"/spec/agents/0/suspended","value":true}]"#,
    );
    for gw in 0..2 {
        h.until(
            "the agent switch reaches the replica",
            Duration::from_secs(5),
            async || {
                let (status, body) = h.tool_call(gw, &h.intake, &allowed).await;
                (status == 403 && code(&body) == "kill_switch.agent").then_some(())
            },
        )
        .await;
        let (status, _) = h.tool_call(gw, &h.scheduler, &allowed).await;
        assert_eq!(status, 200, "the scheduler agent is not suspended");
    }
    let rows = h
        .until(
            "kill-switch hits are audited",
            Duration::from_secs(10),
            async || {
                let rows = h
                    .audit_rows(Filter {
                        reason: Some("kill_switch.policy".into()),
                        ..Default::default()
                    })
                    .await;
                (!rows.is_empty()).then_some(rows)
            },
        )
        .await;
    assert!(
        rows.iter()
            .all(|r| r.event.agent == "intake" && r.event.decision == "Deny")
    );
    // Each replica reports what it applied on its Lease's next renewal,
    // and the operator counts it on its next pass: wait for both.
    h.until(
        "both replicas report the revision they applied",
        Duration::from_secs(60),
        async || (h.policy_field("{.status.gatewaysApplied}") == "2").then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_openai_sdk_chats_through_a_replica_routed_by_policy() {
    let h = Harness::start("sdk").await;
    let venv = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
    let python = tokio::task::spawn_blocking(move || {
        palisade_fake_upstreams::python::python_with_openai(&venv)
    })
    .await
    .unwrap();
    let url = h.gateways[1].url("");
    let run = |args: &'static [&'static str]| {
        let (python, url, token) = (python.clone(), url.clone(), h.intake.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(python)
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/chat.py"))
                .args(args)
                .env("PALISADE_URL", url)
                .env("PALISADE_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let out = run(&[]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{stdout}"
    );
    // The cloud provider got the key from the Secret the policy names, and
    // never saw the PHI prompt.
    let cloud = h.cloud.received();
    assert!(
        !cloud.is_empty()
            && cloud
                .iter()
                .all(|r| r.authorization.as_deref() == Some("Bearer sk-e2e")),
        "{cloud:?}"
    );
    assert!(
        cloud
            .iter()
            .all(|r| !r.body.to_string().contains("medication"))
    );
    assert_eq!(h.local.received().len(), 1);

    // A kill switch reaches the SDK as a typed error with the reason code.
    h.patch_policy("merge", r#"{"spec":{"suspend":true}}"#);
    let mut last = String::new();
    for _ in 0..10 {
        let out = run(&["suspended"]).await.unwrap();
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && last.contains("ok kill switch") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the SDK never saw the kill switch: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_kubectl_plugin_lists_and_decides_approvals() {
    let h = Harness::start("plugin").await;
    let name = hold(&h, 0, "e@clinic.example").await;
    let listed = h
        .until(
            "the plugin lists it as pending",
            Duration::from_secs(10),
            async || {
                let out = h.kubectl_plugin(
                    User::Approver,
                    &["palisade", "approvals", "-n", "clinic", "--pending"],
                );
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                (out.status.success() && text.contains(&name) && text.contains("Pending"))
                    .then_some(text)
            },
        )
        .await;
    assert!(listed.starts_with("NAME"), "{listed}");
    // A reason needs saying; quotes in it survive.
    let refused = h.kubectl_plugin(User::Approver, &["palisade", "deny", &name, "-n", "clinic"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--reason"));
    let out = h.kubectl_plugin(
        User::Approver,
        &[
            "palisade",
            "deny",
            &name,
            "-n",
            "clinic",
            "--reason",
            r#"not "now", sorry"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reason = h.kubectl_ok(&[
        "get",
        "approval",
        &name,
        "-n",
        "clinic",
        "-o",
        "jsonpath={.spec.decision}|{.spec.reason}",
    ]);
    assert_eq!(reason, r#"Denied|not "now", sorry"#);
    let (status, body) = h
        .tool_call(1, &h.intake, &using(&name, "e@clinic.example"))
        .await;
    assert_eq!((status, code(&body)), (403, "approval.denied"));
}
