//! How fast changes reach the data plane, through the real operator and
//! two gateway replicas against the real API server (`tests/control-plane`):
//!
//! 1. policy propagation: an AIPolicy patch accepted → the compiled Secret
//!    carries the new revision (200 changes; target p99 ≤ 100 ms);
//! 2. kill switch: `suspend: true` accepted → the first refusal on *every*
//!    replica (100 flips; target p99 ≤ 500 ms);
//! 3. approvals: a held call's Approval patched `Approved` (accepted by the
//!    API server, through the real admission policies) → both replicas
//!    answer `Approved` when polled (100 approvals);
//! 4. reconcile time with 1,000 policies (one compile-and-apply pass, from
//!    the operator's own histogram, and patch → Secret at that size).
//!
//! Run (release binaries first; this bench starts them):
//!
//! ```text
//! cargo build --release --bins -p palisade-gateway -p palisade-operator
//! cargo bench -p palisade-e2e --bench propagation
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use palisade_e2e::{Harness, SYSTEM_NS, code};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const POLICY: &str = "/apis/palisade.dev/v1alpha1/namespaces/clinic/aipolicies/clinic-assistant";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "| {what} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

async fn secret_revision(h: &Harness) -> Option<String> {
    let v: Value = h
        .api_request(
            reqwest::Method::GET,
            &format!("/api/v1/namespaces/{SYSTEM_NS}/secrets/palisade-config"),
            "",
            None,
        )
        .await
        .ok()?;
    v["metadata"]["annotations"]["palisade.dev/revision"]
        .as_str()
        .map(String::from)
}

/// Patch → new revision in the Secret, `n` times.
async fn policy_propagation(h: &Harness, n: usize, path: &str) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let before = secret_revision(h).await;
        let started = Instant::now();
        h.merge_patch(
            path,
            &json!({"spec": {"approvals": {"ttl": format!("{}m", 100 + i)}}}),
        )
        .await;
        loop {
            if secret_revision(h).await != before {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no new revision"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        samples.push(started.elapsed());
    }
    samples
}

/// `suspend: true` → refused on every replica, `n` times.
async fn kill_switch(h: &Harness, n: usize) -> Vec<Duration> {
    let call = json!({"tool": "calendar_read", "arguments": {}});
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        h.merge_patch(POLICY, &json!({"spec": {"suspend": true}}))
            .await;
        for gw in 0..h.gateways.len() {
            loop {
                let (status, body) = h.tool_call(gw, &h.intake, &call).await;
                if status == 403 && code(&body) == "kill_switch.policy" {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "kill switch never arrived"
                );
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        samples.push(started.elapsed());
        h.merge_patch(POLICY, &json!({"spec": {"suspend": false}}))
            .await;
        for gw in 0..h.gateways.len() {
            loop {
                let (status, _) = h.tool_call(gw, &h.intake, &call).await;
                if status == 200 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    samples
}

/// Held call → approval patched → `Approved` seen on every replica, `n` times.
async fn approvals(h: &Harness, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let call =
            json!({"tool": "send_email", "arguments": {"to": format!("{i}@clinic.example")}});
        let (status, body) = h.tool_call(i % 2, &h.intake, &call).await;
        assert_eq!(status, 202, "{body}");
        let name = body["approval"]["name"].as_str().unwrap().to_owned();
        let path = format!("/apis/palisade.dev/v1alpha1/namespaces/clinic/approvals/{name}");
        let started = Instant::now();
        h.merge_patch(
            &path,
            &json!({"spec": {"decision": "Approved", "reason": "bench"}}),
        )
        .await;
        for gw in 0..h.gateways.len() {
            loop {
                let (_, polled) = h.get(gw, &h.intake, &format!("/v1/approvals/{name}")).await;
                if polled["phase"] == "Approved" {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the approval never reached replica {gw}: {polled}"
                );
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        samples.push(started.elapsed());
    }
    samples
}

/// The operator's histogram: (passes, seconds) so far.
async fn reconcile_totals(h: &Harness) -> (f64, f64) {
    let text = h
        .http
        .get(format!("http://{}/metrics", h.operator_metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("palisade_operator_reconcile_duration_seconds_count"),
        value("palisade_operator_reconcile_duration_seconds_sum"),
    )
}

async fn thousand_policies(h: &Harness) {
    for i in 0..1000 {
        let policy = json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
            "metadata": {"name": format!("bulk-{i}")},
            "spec": {
                "agents": [{"name": format!("agent-{i}"), "serviceAccount": format!("sa-{i}")}],
                "providers": [{"name": "local", "type": "ollama", "baseUrl": h.local.base_url()}],
                "routing": {"defaultProvider": "local", "rules": [{"keywords": ["patient", format!("k{i}")], "provider": "local"}]},
                "tools": {"default": "Deny", "rules": [{"tools": ["search_*"], "action": "Allow"}, {"tools": ["send_email"], "action": "RequireApproval"}]}
            }
        });
        if let Err(e) = h
            .api_request(
                reqwest::Method::POST,
                "/apis/palisade.dev/v1alpha1/namespaces/clinic/aipolicies",
                "application/json",
                Some(&policy),
            )
            .await
        {
            panic!("creating bulk-{i}: {e}");
        }
    }
    // Wait for the compiled Secret to hold all of them.
    let started = Instant::now();
    loop {
        let out = h.kubectl_ok(&[
            "get",
            "aipolicy",
            "bulk-999",
            "-n",
            "clinic",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        if out == "True" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "1,000 policies never became Ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (n0, s0) = reconcile_totals(h).await;
    let samples = policy_propagation(
        h,
        50,
        "/apis/palisade.dev/v1alpha1/namespaces/clinic/aipolicies/bulk-500",
    )
    .await;
    let (n1, s1) = reconcile_totals(h).await;
    report("policy patch → compiled Secret, 1,001 policies", samples);
    println!(
        "\nOne compile-and-apply pass with 1,001 policies (operator histogram, {} passes): mean {:.1} ms",
        n1 - n0,
        (s1 - s0) / (n1 - n0).max(1.0) * 1e3
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; nothing to filter here.
    let h = Harness::start("bench").await;
    println!("| measurement | samples | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    report(
        "policy patch → compiled Secret",
        policy_propagation(&h, 200, POLICY).await,
    );
    report(
        "suspend → refused on both replicas",
        kill_switch(&h, 100).await,
    );
    report(
        "approval patched → Approved on both replicas",
        approvals(&h, 100).await,
    );
    thousand_policies(&h).await;
}
