//! The console (issue 27) over plain HTTP, as a browser without
//! JavaScript or `curl` sees it, against the real binary: off unless
//! configured, refused at start without the auditor token, every view
//! readable with no script, values escaped, no raw argument or prompt,
//! sessions that cannot be forged, decisions only by an operator with
//! this session's form, and the live stream's backfill and follow. The
//! browser itself is in `console_browser.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use palisade_fake_upstreams::{FakeOpenAi, Script};
use reqwest::header::{COOKIE, LOCATION};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use common::console::{AUDITOR, KEY, ON, OPERATOR, config};

const CANARY: &str = "canary-7f3a-do-not-show";

struct Gateway {
    url: String,
    http: reqwest::Client,
    _process: common::Stopped,
    _model: FakeOpenAi,
}

async fn start(settings: &str) -> Gateway {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let model = FakeOpenAi::start(Script::Text("fine".into()))
        .await
        .unwrap();
    let (process, url) = common::console::start("console", &model.base_url(), settings);
    Gateway {
        url,
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        _process: process,
        _model: model,
    }
}

impl Gateway {
    async fn page(&self, path: &str, auth: Auth<'_>) -> (u16, String, reqwest::header::HeaderMap) {
        let req = auth.apply(self.http.get(format!("{}{path}", self.url)));
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        (status, resp.text().await.unwrap(), headers)
    }

    async fn tool(&self, tool: &str, arguments: Value, request_id: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/tool-calls", self.url))
            .bearer_auth(KEY)
            .header("x-request-id", request_id)
            .header("content-type", "application/json")
            .body(json!({"tool": tool, "arguments": arguments}).to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
        )
    }

    /// The session cookie a login with `token` sets.
    async fn login(&self, token: &str) -> String {
        common::console::login(&self.http, &self.url, token).await
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

impl Auth<'_> {
    fn apply(self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Cookie(c) => req.header(COOKIE, c),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_off_unless_configured_and_needs_the_auditor_token() {
    let off = start("  audit: {readTokenEnv: PALISADE_AUDITOR}\n").await;
    let (status, _, _) = off.page("/console", Auth::Bearer(AUDITOR)).await;
    assert_eq!(status, 404, "no console unless enabled");

    let dir = palisade_testkit::temp_dir("console-no-auditor");
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        config("http://127.0.0.1:9", "  console: {enabled: true}\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args([
            "run",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("spec.console.enabled") && stderr.contains("spec.audit.readTokenEnv"),
        "{stderr}"
    );

    // A token a login form could guess is refused at start, naming where
    // it comes from and how to make one: the auditor's and an operator's.
    std::fs::write(&path, config("http://127.0.0.1:9", ON)).unwrap();
    for (weak, field) in [
        (
            [
                ("PALISADE_AUDITOR", "letmein"),
                ("PALISADE_ONCALL", OPERATOR),
            ],
            "spec.audit.readTokenEnv",
        ),
        (
            [
                ("PALISADE_AUDITOR", AUDITOR),
                ("PALISADE_ONCALL", "oncall-123456"),
            ],
            "spec.approvals.operators[oncall].tokenEnv",
        ),
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
            .args(["run", "--config", path.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            .envs(weak)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !running && !out.status.success(),
            "{field}: started with a weak token: {stderr}"
        );
        assert!(
            stderr.contains(field)
                && stderr.contains("at least 16")
                && stderr.contains("openssl rand"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_reads_without_javascript_escaped_and_without_raw_arguments() {
    let g = start(ON).await;
    let hostile_id = "<script>alert(1)</script>";
    assert_eq!(
        g.tool(
            "read_file",
            json!({"path": "notes.md", "token": CANARY}),
            hostile_id
        )
        .await
        .0,
        200
    );
    assert_eq!(
        g.tool("rm", json!({"path": CANARY}), "req-deny").await.0,
        403
    );
    let (status, held) = g
        .tool("send_email", json!({"to": CANARY}), "req-held")
        .await;
    assert_eq!(status, 202);
    let approval = held["approval"]["name"].as_str().unwrap().to_owned();

    // Not logged in, or an agent's key: the login page.
    for auth in [
        Auth::None,
        Auth::Bearer(KEY),
        Auth::Cookie("palisade_console=auditor..9999999999.n.AAAA"),
    ] {
        let (status, _, headers) = g.page("/console", auth).await;
        assert_eq!(status, 303);
        assert_eq!(headers[LOCATION], "/console/login");
    }
    let (status, _, _) = g.page("/console/stream", Auth::Bearer(KEY)).await;
    assert_eq!(status, 401);

    let cookie = g.login(AUDITOR).await;
    let auditor = Auth::Cookie(&cookie);
    let (status, overview, headers) = g.page("/console", auditor).await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    // Kill switches, the pending approval, denials by reason.
    assert!(overview.contains("default/clinic"), "{overview}");
    assert!(overview.contains("other (suspended)"), "{overview}");
    assert!(overview.contains("1 pending"), "{overview}");
    assert!(overview.contains("tool.default_deny"), "{overview}");

    let (_, decisions, _) = g.page("/console/decisions", auditor).await;
    assert!(decisions.contains("read_file") && decisions.contains("send_email"));
    let (_, filtered, _) = g
        .page("/console/decisions?decision=Deny&agent=app", auditor)
        .await;
    assert!(
        filtered.contains(">rm<") && !filtered.contains("send_email"),
        "{filtered}"
    );

    // The detail of the call whose request id is markup.
    let (_, mine, _) = g
        .page(
            "/console/decisions?requestId=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            auditor,
        )
        .await;
    let id = mine
        .split("href=\"/console/decisions/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let (status, detail, _) = g.page(&format!("/console/decisions/{id}"), auditor).await;
    assert_eq!(status, 200);
    assert!(
        detail.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{detail}"
    );
    assert!(detail.contains("sha256:"), "the argument digest: {detail}");
    assert!(detail.contains("reads") && detail.contains("tool.allowed_by_rule"));
    let (status, _, _) = g.page("/console/decisions/no-such-row", auditor).await;
    assert_eq!(status, 404);

    let (_, approvals, _) = g.page("/console/approvals", auditor).await;
    assert!(approvals.contains(&approval), "{approvals}");
    assert!(
        approvals.contains("Log in with an operator token"),
        "{approvals}"
    );
    let (_, alerts, _) = g.page("/console/alerts", auditor).await;
    assert!(alerts.contains("No security alerts") || alerts.contains("<table"));

    // Nothing the agent sent shows anywhere, nor raw markup.
    for page in [
        &overview, &decisions, &filtered, &detail, &approvals, &alerts,
    ] {
        assert!(!page.contains(hostile_id), "unescaped markup");
        assert!(
            !page.contains(CANARY) || page == &approvals,
            "a raw argument: {page}"
        );
    }
    // The approvals page shows the held call's arguments as the policy
    // redacts them (this policy redacts nothing): what a human decides on.
    assert!(approvals.contains(CANARY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_operator_with_this_sessions_form_decides() {
    let g = start(ON).await;
    let (status, held) = g.tool("send_email", json!({"to": "cfo"}), "req-held").await;
    assert_eq!(status, 202);
    let name = held["approval"]["name"].as_str().unwrap().to_owned();
    let action = format!("{}/console/approvals/default/{name}/approve", g.url);
    let form = |cookie: &str, csrf: &str| {
        g.http
            .post(&action)
            .header(COOKIE, cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&reason=ok"))
    };
    let csrf_of = common::console::csrf_in;
    let auditor = g.login(AUDITOR).await;
    let (_, page, _) = g.page("/console/approvals", Auth::Cookie(&auditor)).await;
    assert_eq!(csrf_of(&page), None, "no buttons for the auditor");
    let resp = form(&auditor, "x").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    let operator = g.login(OPERATOR).await;
    let (_, page, _) = g.page("/console/approvals", Auth::Cookie(&operator)).await;
    let csrf = csrf_of(&page).unwrap();
    // Another session's value, or none: refused, still pending.
    let other = g.login(OPERATOR).await;
    let (_, other_page, _) = g.page("/console/approvals", Auth::Cookie(&other)).await;
    let other_csrf = csrf_of(&other_page).unwrap();
    assert_ne!(other, operator, "two logins, two sessions");
    assert_eq!(
        form(&operator, &other_csrf)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        form(&operator, "").send().await.unwrap().status().as_u16(),
        403
    );
    let poll = |token: &'static str| {
        let req = g
            .http
            .get(format!("{}/v1/approvals/{name}", g.url))
            .bearer_auth(token);
        async move {
            serde_json::from_str::<Value>(&req.send().await.unwrap().text().await.unwrap()).unwrap()
        }
    };
    assert_eq!(poll(OPERATOR).await["phase"], "Pending");

    let resp = form(&operator, &csrf).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let decided = poll(OPERATOR).await;
    assert_eq!(decided["phase"], "Approved", "{decided}");
    assert_eq!(decided["decidedBy"], "operator:oncall");
    assert_eq!(decided["reason"], "ok");
    // Decided once: a second press says so.
    let again = form(&operator, &csrf).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 409);
    assert!(again.text().await.unwrap().contains("Not decided"));
}

/// The next `event: decision` data of an SSE body, within `timeout`.
async fn next_decision(
    resp: &mut reqwest::Response,
    buffer: &mut String,
    timeout: Duration,
) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if event.contains("event: decision") {
                let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
                return serde_json::from_str(data).ok();
            }
            continue;
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .ok()?
            .ok()??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_backfills_from_the_audit_then_follows_it() {
    let g = start(ON).await;
    assert_eq!(
        g.tool("read_file", json!({"path": "a"}), "req-1").await.0,
        200
    );
    assert_eq!(g.tool("rm", json!({}), "req-2").await.0, 403);
    let mut resp = g
        .http
        .get(format!("{}/console/stream?agent=app", g.url))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let wait = Duration::from_secs(5);
    let first = next_decision(&mut resp, &mut buffer, wait).await.unwrap();
    let second = next_decision(&mut resp, &mut buffer, wait).await.unwrap();
    assert_eq!(
        (first["subject"].as_str(), second["subject"].as_str()),
        (Some("read_file"), Some("rm"))
    );
    assert_eq!(second["decision"], "Deny");
    assert_eq!(second["reasons"], "tool.default_deny");

    // A new decision arrives within a second of being answered.
    assert_eq!(
        g.tool("read_file", json!({"path": "b"}), "req-3").await.0,
        200
    );
    let answered = Instant::now();
    let live = next_decision(&mut resp, &mut buffer, wait).await.unwrap();
    assert!(
        answered.elapsed() < Duration::from_secs(1),
        "{:?}",
        answered.elapsed()
    );
    assert_eq!(live["subject"], "read_file");
    assert!(live.get("arguments").is_none());

    // Resuming after a cursor sends only what is newer; a filter holds.
    let cursor = second["cursor"].as_str().unwrap();
    let mut resumed = g
        .http
        .get(format!(
            "{}/console/stream?decision=Allow&after={cursor}",
            g.url
        ))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    let next = next_decision(&mut resumed, &mut buffer, wait)
        .await
        .unwrap();
    assert_eq!(next["id"], live["id"], "only the row after the cursor");
}
