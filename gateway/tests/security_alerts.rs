//! Security alerts (issue 27) end to end: the real binary (standalone,
//! SQLite audit) and a hostile agent script (`sdk/hostile_agent.py`, the
//! official `openai` SDK for chat, urllib for tool calls) against a fake model. Every heuristic
//! fires once, each alert is an audit row of its own, a count in
//! `palisade_security_alerts_total{kind}` and a line of
//! `GET /v1/security/alerts` (auditor token only), and none carries an
//! argument's value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use palisade_audit::{Filter, Migrations, Store};
use palisade_fake_upstreams::{FakeOpenAi, Script};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

const KEY: &str = "hostile-agent-key";
const AUDITOR: &str = "security-alerts-auditor-token";

fn config(model: &str) -> String {
    format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: clinic}}
spec:
  agents: [{{name: app, apiKeySecretRef: {{name: keys, key: a}}}}]
  providers: [{{name: local, type: openai, baseUrl: "{model}"}}]
  routing: {{defaultProvider: local}}
  tools:
    default: Deny
    rules:
      - {{name: reads, tools: [read_file], action: Allow}}
      - {{name: mail, tools: [send_email], action: RequireApproval}}
  security:
    alerts:
      denialBurst: {{count: 5, window: 1m}}
      newToolAfter: 3
      tokenJump: {{factor: 5, minRequests: 3, minTokens: 100}}
---
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{a: {KEY}}}
---
apiVersion: palisade.dev/v1alpha1
kind: GatewaySettings
metadata: {{name: local}}
spec:
  audit:
    readTokenEnv: PALISADE_AUDITOR
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_agent_raises_every_alert_once_without_leaking_its_arguments() {
    let python = common::openai_python().await;
    let model = FakeOpenAi::start(Script::Sequence(vec![
        Script::Text("ok".into()),
        Script::Text("ok".into()),
        Script::Text("ok".into()),
        Script::Verbose(5000),
    ]))
    .await
    .unwrap();
    let dir = palisade_testkit::temp_dir("security-alerts");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, config(&model.base_url())).unwrap();
    // Killed however the test ends.
    let (mut gateway, url) = common::run_config(&path, &[], &[("PALISADE_AUDITOR", AUDITOR)]);
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            Command::new(python)
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/sdk/hostile_agent.py"
                ))
                .env("PALISADE_URL", url)
                .env("PALISADE_KEY", KEY)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut req = http.get(format!("{url}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    // Only the auditor sees them; the agent's own key does not.
    assert_eq!(get("/v1/security/alerts", Some(KEY)).await.0, 401);
    assert_eq!(get("/v1/security/alerts", None).await.0, 401);
    // The rows are queued, not awaited: poll briefly.
    let mut alerts = Value::Null;
    for _ in 0..50 {
        let (status, body) = get("/v1/security/alerts", Some(AUDITOR)).await;
        assert_eq!(status, 200, "{body}");
        alerts = serde_json::from_str(&body).unwrap();
        if alerts["alerts"].as_array().unwrap().len() >= 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let list = alerts["alerts"].as_array().unwrap();
    let kinds: Vec<&str> = list.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "path_traversal",
            "sql_injection",
            "new_tool",
            "denial_burst",
            "repeated_held_call",
            "token_jump"
        ]),
        "{alerts:#}"
    );
    assert_eq!(kinds.len(), 6, "each once (cooldown): {alerts:#}");
    let by_kind = |k: &str| list.iter().find(|a| a["kind"] == k).unwrap();
    assert_eq!(
        by_kind("path_traversal")["detail"],
        "argument path looks like path traversal"
    );
    assert_eq!(by_kind("path_traversal")["tool"], "read_file");
    assert_eq!(by_kind("new_tool")["tool"], "lookup");
    assert_eq!(
        by_kind("denial_burst")["detail"],
        "5 denials in 60 s (threshold 5)"
    );
    assert_eq!(by_kind("repeated_held_call")["tool"], "send_email");
    assert!(
        by_kind("token_jump")["detail"]
            .as_str()
            .unwrap()
            .starts_with("5005 tokens"),
        "{alerts:#}"
    );
    assert!(
        list.iter()
            .all(|a| a["agent"] == "app" && a["policy"] == "clinic")
    );
    // Filtered by kind.
    let (_, one) = get("/v1/security/alerts?kind=denial_burst", Some(AUDITOR)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&one).unwrap()["alerts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Never what the agent sent.
    for secret in ["passwd", "OR 1=1", "wire the money", "ceo@"] {
        assert!(!alerts.to_string().contains(secret), "{secret}: {alerts:#}");
    }
    let (_, metrics) = get("/metrics", None).await;
    for kind in [
        "path_traversal",
        "sql_injection",
        "new_tool",
        "denial_burst",
        "repeated_held_call",
        "token_jump",
    ] {
        assert!(
            metrics.contains(&format!(
                "palisade_security_alerts_total{{kind=\"{kind}\"}} 1"
            )),
            "{kind}: {metrics}"
        );
    }
    // The later denials of the burst were held back by the cooldown.
    assert!(
        metrics.contains("palisade_security_alerts_held_back_total{kind=\"denial_burst\"} 2"),
        "{metrics}"
    );
    gateway.stop();

    // In the audit: rows of their own kind, each with its reason code.
    let store = Store::open(
        &format!("sqlite://{}", dir.join("palisade-audit.db").display()),
        Migrations::VerifyOnly,
    )
    .await
    .unwrap();
    let rows = store
        .query(&Filter {
            decision: Some("Alert".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        assert_eq!(row.event.kind.as_str(), "security_alert");
        assert!(
            row.event.reason_codes[0].starts_with("alert."),
            "{:?}",
            row.event
        );
        assert!(row.event.arguments.is_none());
    }
}
