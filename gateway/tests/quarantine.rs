//! Quarantine on a standalone gateway (issue 27): a policy that lists
//! `path_traversal` in `spec.security.quarantineOn` suspends the agent
//! that tries it — every later request refused `kill_switch.quarantine`,
//! tool calls and chat alike — across a configuration reload and a
//! restart (the audit database keeps it), shown on the console with why,
//! until an operator lifts it; neither the agent nor the auditor can.
//! Every lift is in the audit, and one the audit cannot record does not
//! happen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::console::{AUDITOR, KEY, OPERATOR};
use palisade_fake_upstreams::{FakeOpenAi, Script};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const QUARANTINE: &str = "  console: {enabled: true}
  audit: {readTokenEnv: PALISADE_AUDITOR}
  approvals:
    operators: [{name: oncall, tokenEnv: PALISADE_ONCALL}]
";

fn config(model: &str, comment: &str) -> String {
    common::console::config(model, QUARANTINE).replace(
        "  tools:\n    default: Deny",
        &format!("  # {comment}\n  security: {{alerts: {{cooldown: 1s}}, quarantineOn: [path_traversal]}}\n  tools:\n    default: Deny"),
    )
}

struct Client {
    url: String,
    http: reqwest::Client,
}

impl Client {
    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn read(&self, path: &str) -> (u16, String) {
        let call = json!({"tool": "read_file", "arguments": {"path": path}});
        let (status, body) = self.post("/v1/tool-calls", KEY, call).await;
        (status, body.to_string())
    }

    async fn get(&self, path: &str, token: &str) -> String {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        resp.text().await.unwrap()
    }
}

fn start(path: &std::path::Path) -> (common::Stopped, Client) {
    let env = common::console::env();
    let (gateway, url) = common::run_config(path, &["--reload-interval", "100ms"], &env);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (gateway, Client { url, http })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_holds_across_reload_and_restart_until_an_operator_lifts_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let model = FakeOpenAi::start(Script::Text("fine".into()))
        .await
        .unwrap();
    let dir = palisade_testkit::temp_dir("quarantine");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, config(&model.base_url(), "first")).unwrap();
    let (mut gateway, c) = start(&path);

    assert_eq!(c.read("notes.md").await.0, 200);
    // The call that raises the alert is itself decided as the rules say.
    assert_eq!(c.read("../../etc/passwd").await.0, 200);
    let started = Instant::now();
    let refused = loop {
        let (status, body) = c.read("notes.md").await;
        if status == 403 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "never quarantined: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("quarantined {:?} after the alert", started.elapsed());
    assert!(refused.contains("kill_switch.quarantine"), "{refused}");
    assert!(
        refused.contains("alert.path_traversal"),
        "says why: {refused}"
    );
    // Chat too: a kill switch.
    let (status, chat) = c
        .post(
            "/v1/chat/completions",
            KEY,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 403, "{chat}");
    assert_eq!(chat["error"]["code"], "kill_switch.quarantine");
    let metrics = c.get("/metrics", KEY).await;
    assert!(
        metrics.contains("palisade_quarantines_total{result=\"applied\"} 1"),
        "{metrics}"
    );
    let overview = c.get("/console", AUDITOR).await;
    assert!(
        overview.contains("QUARANTINED") && overview.contains("alert.path_traversal"),
        "{overview}"
    );

    // A reload of the files keeps it, and so does a restart.
    std::fs::write(&path, config(&model.base_url(), "second")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.read("notes.md").await.0, 403, "after a reload");
    gateway.stop();
    let (_gateway, c) = start(&path);
    let (status, body) = c.read("notes.md").await;
    assert_eq!(status, 403, "after a restart: {body}");
    assert!(body.contains("kill_switch.quarantine"), "{body}");

    // An operator lifts it on the console (its session and form value).
    let cookie = common::console::login(&c.http, &c.url, OPERATOR).await;
    let page = c
        .http
        .get(format!("{}/console", c.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Lift the quarantine"), "{page}");
    let csrf = common::console::csrf_in(&page).unwrap();
    let lifted = c
        .http
        .post(format!("{}/console/quarantines/default/app/lift", c.url))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status().as_u16(), 303);
    assert_eq!(c.read("notes.md").await.0, 200, "decided again at once");

    // Quarantined again (past the alert's cooldown), lifted over HTTP:
    // only by an operator.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.read("../../etc/shadow").await.0, 200);
    let started = Instant::now();
    while c.read("notes.md").await.0 != 403 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "never quarantined again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lift = "/v1/security/quarantines/default/app/lift";
    assert_eq!(c.post(lift, KEY, json!({})).await.0, 403);
    assert_eq!(c.post(lift, AUDITOR, json!({})).await.0, 403);
    let (status, lifted) = c.post(lift, OPERATOR, json!({})).await;
    assert_eq!(
        (status, &lifted["liftedBy"]),
        (200, &json!("operator:oncall")),
        "{lifted}"
    );
    assert_eq!(c.read("notes.md").await.0, 200, "decided again at once");
    let (status, again) = c.post(lift, OPERATOR, json!({})).await;
    assert_eq!(status, 404, "{again}");

    // Both lifts are in the audit: who lifted which quarantine, tied to
    // the request that raised its alert.
    let alerts: Value = serde_json::from_str(
        &c.get("/v1/security/alerts?kind=path_traversal", AUDITOR)
            .await,
    )
    .unwrap();
    let raised: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["requestId"])
        .collect();
    let lifts: Value =
        serde_json::from_str(&c.get("/v1/audit/events?decision=Lifted", AUDITOR).await).unwrap();
    let lifts = lifts["events"].as_array().unwrap();
    assert_eq!(lifts.len(), 2, "{lifts:?}");
    for row in lifts {
        assert_eq!(row["kind"], "security_alert", "{row}");
        assert_eq!(row["agent"], "app", "{row}");
        assert_eq!(row["decidedBy"], "operator:oncall", "{row}");
        assert_eq!(
            row["reasonCodes"],
            json!(["kill_switch.quarantine"]),
            "{row}"
        );
        assert!(raised.contains(&&row["requestId"]), "{row} {raised:?}");
        assert!(
            row["detail"]
                .as_str()
                .unwrap()
                .contains("alert.path_traversal"),
            "{row}"
        );
    }
}

/// A lift the audit cannot record does not happen: with `FailClosed`
/// auditing and the audit database down, the operator gets the error and
/// the agent stays quarantined (its row is put back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lift_the_audit_cannot_record_leaves_the_quarantine_in_place() {
    use palisade_audit::quarantines::{QuarantineRow, QuarantineStore};
    use palisade_audit::{
        AuditDecision, AuditEvent, AuditMetrics, AuditWriter, EventKind, FailureMode, Migrations,
        Store, WriterConfig,
    };
    use palisade_gateway::security::quarantine::{Overlay, Quarantines};
    use palisade_gateway::state::AppState;
    use std::sync::Arc;

    let dir = palisade_testkit::temp_dir("quarantine-lift-fail-closed");
    let local = Store::open(
        &format!("sqlite://{}", dir.join("quarantines.db").display()),
        Migrations::Apply,
    )
    .await
    .unwrap();
    let quarantines = QuarantineStore::new(local.clone());
    let row = QuarantineRow {
        namespace: "default".into(),
        agent: "app".into(),
        kind: "path_traversal".into(),
        detail: "argument path looks like path traversal".into(),
        request_id: "req-alert".into(),
        // Kept to the millisecond.
        since: jiff::Timestamp::from_millisecond(1_800_000_000_123).unwrap(),
    };
    assert!(quarantines.add(&row).await.unwrap());

    let pg = palisade_audit_suite::TestPostgres::start();
    let audit_store = Store::open(&pg.database("lift"), Migrations::Apply)
        .await
        .unwrap();
    let mut config = WriterConfig::new(dir.join("spool"));
    config.failure_mode = FailureMode::FailClosed;
    let (audit, _task) =
        AuditWriter::start(audit_store, config, AuditMetrics::unregistered().unwrap()).unwrap();
    let metrics = Arc::new(palisade_gateway::metrics::GatewayMetrics::new().unwrap());
    let state = AppState::builder(
        palisade_gateway::snapshot::empty(),
        audit.clone(),
        metrics,
        palisade_gateway::approvals::Approvals::local(local, "gateway-test"),
    )
    .quarantines(Quarantines::Local {
        store: quarantines.clone(),
        overlay: Overlay::default(),
    })
    .build();

    // The writer learns the database is down from the first event it
    // cannot write.
    pg.kill();
    let probe = AuditEvent::new(
        EventKind::Chat,
        "probe",
        "default",
        "app",
        AuditDecision::Allow,
    );
    let _ = audit.record_durable(probe).await;
    assert!(audit.database_down());

    let lifted =
        palisade_gateway::api::quarantines::lift_as(&state, "default", "app", "oncall").await;
    assert!(lifted.is_err(), "{lifted:?}");
    assert_eq!(
        quarantines.list().await.unwrap(),
        vec![row],
        "still quarantined"
    );
}
