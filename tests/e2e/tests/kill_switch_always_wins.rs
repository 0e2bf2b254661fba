//! A kill switch always wins (issue 23), end to end: the operator and two
//! gateway replicas as real processes against the real API server, driven
//! with kubectl and HTTP as users drive them.
//!
//! - An edit that does not compile keeps the last good generation serving,
//!   but the switches it turns on (`spec.suspend`, an agent's
//!   `suspended`) apply on top of it.
//! - One tenant's oversize policies are refused one by one; the bundle
//!   Secret keeps being written, so another tenant's kill switch still
//!   reaches the gateways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_e2e::{Harness, code};
use serde_json::{Value, json};
use std::time::Duration;

const ALLOWED: &str = r#"{"tool": "calendar_read", "arguments": {}}"#;

/// A routing rule whose pattern does not compile: the API server accepts
/// it (CRD rules cannot compile regexes), the operator refuses it.
const BROKEN_RULE: &str =
    r#"{"rules": [{"name": "bad", "patterns": ["(unclosed"], "provider": "local"}]}"#;

/// Waits until both replicas answer `token`'s allowed tool call with
/// `status` and `reason`.
async fn until_both(h: &Harness, token: &str, status: u16, reason: &str) {
    let allowed: Value = serde_json::from_str(ALLOWED).unwrap();
    for gw in 0..2 {
        h.until(
            &format!("replica {gw} answers {status} {reason}"),
            Duration::from_secs(10),
            async || {
                let (s, body) = h.tool_call(gw, token, &allowed).await;
                (s == status && (reason.is_empty() || code(&body) == reason)).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_switch_set_by_an_edit_that_does_not_compile_still_stops_the_agents() {
    let h = Harness::start("broken-switch").await;
    until_both(&h, &h.intake, 200, "").await;

    // One agent's switch, in an edit that does not compile.
    h.patch_policy(
        "merge",
        &format!(
            r#"{{"spec":{{"routing":{BROKEN_RULE},"agents":[{{"name":"intake","serviceAccount":"intake-agent","suspended":true}},{{"name":"scheduler","serviceAccount":"scheduler-agent"}}]}}}}"#
        ),
    );
    until_both(&h, &h.intake, 403, "kill_switch.agent").await;
    until_both(&h, &h.scheduler, 200, "").await;
    assert_eq!(
        h.policy_field("{.status.conditions[?(@.type==\"Accepted\")].reason}"),
        "Invalid"
    );
    assert_eq!(h.policy_field("{.status.servedGeneration}"), "1");

    // The policy's switch, in another edit that does not compile.
    h.patch_policy("merge", r#"{"spec":{"suspend":true}}"#);
    until_both(&h, &h.scheduler, 403, "kill_switch.policy").await;
    until_both(&h, &h.intake, 403, "kill_switch.policy").await;
    assert_eq!(h.policy_field("{.status.servedGeneration}"), "1");

    // An edit that compiles and lifts both switches restores traffic.
    h.patch_policy(
        "json",
        r#"[{"op":"replace","path":"/spec/suspend","value":false},
            {"op":"replace","path":"/spec/agents/0/suspended","value":false},
            {"op":"remove","path":"/spec/routing/rules/0"}]"#,
    );
    until_both(&h, &h.intake, 200, "").await;
    until_both(&h, &h.scheduler, 200, "").await;
}

/// Keywords no compressor shrinks much: `rules` routing rules of 1,000
/// keywords of 250 random letters and digits (about 250 kB each).
fn incompressible_rules(rules: usize, seed: u64) -> Value {
    let mut x = seed | 1;
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut next = move || {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        alphabet[(x % alphabet.len() as u64) as usize] as char
    };
    let rules: Vec<Value> = (0..rules)
        .map(|i| {
            let keywords: Vec<String> = (0..1000)
                .map(|_| (0..250).map(|_| next()).collect())
                .collect();
            json!({"name": format!("bulk-{i}"), "keywords": keywords, "provider": "local"})
        })
        .collect();
    json!(rules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversize_tenant_is_refused_alone_and_another_tenants_kill_switch_still_arrives() {
    let h = Harness::start("oversize").await;
    until_both(&h, &h.intake, 200, "").await;

    // Tenant radiology writes two policies of about 750 kB each: together
    // over what one Secret can hold, each over the per-policy budget.
    h.kubectl_ok(&["create", "namespace", "radiology"]);
    for (i, name) in ["scans", "reports"].into_iter().enumerate() {
        let policy = json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
            "metadata": {"name": name, "namespace": "radiology"},
            "spec": {
                "agents": [{"name": format!("{name}-agent"), "serviceAccount": name}],
                "providers": [{"name": "local", "type": "ollama", "baseUrl": "http://ollama.ollama:11434", "defaultModel": "llama3.1:8b"}],
                "routing": {"defaultProvider": "local", "rules": incompressible_rules(3, i as u64 + 1)},
            }
        });
        h.api_request(
            reqwest::Method::POST,
            "/apis/palisade.dev/v1alpha1/namespaces/radiology/aipolicies",
            "application/json",
            Some(&policy),
        )
        .await
        .unwrap();
    }

    // The clinic's kill switch still reaches both replicas.
    h.patch_policy("merge", r#"{"spec":{"suspend":true}}"#);
    until_both(&h, &h.intake, 403, "kill_switch.policy").await;

    // Each oversize policy says why, and what the limit is, in its status
    // and in an Event.
    for name in ["scans", "reports"] {
        let accepted = h
            .until(
                "the policy says it is too large",
                Duration::from_secs(10),
                async || {
                    let out = h.kubectl_ok(&[
                        "get",
                        "aipolicy",
                        name,
                        "-n",
                        "radiology",
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Accepted\")].reason}|{.status.conditions[?(@.type==\"Accepted\")].message}",
                    ]);
                    out.starts_with("TooLarge|").then_some(out)
                },
            )
            .await;
        assert!(accepted.contains("-byte budget"), "{accepted}");
        assert!(accepted.contains("--policy-size-budget"), "{accepted}");
    }
    let events = h.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "radiology",
        "-o",
        "jsonpath={range .items[*]}{.reason}|{.note}{\"\\n\"}{end}",
    ]);
    let too_large: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("TooLarge|"))
        .collect();
    assert_eq!(too_large.len(), 2, "{events}");
    assert!(
        too_large.iter().all(|l| l.contains("-byte budget")),
        "{events}"
    );
}
