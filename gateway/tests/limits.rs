//! `spec.limits` over HTTP: a request over a limit is answered `429` with
//! the limit's reason code and `Retry-After`, audited as a refusal and
//! counted; an agent stopped at its daily token budget resumes the next
//! day (the gateway's clock is injected); streams hold their place until
//! they end. Against a fake OpenAI provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use palisade_audit::{Filter, Migrations, Store};
use palisade_fake_upstreams::{FakeOpenAi, Script};
use palisade_gateway::router::app;
use palisade_gateway::state::AppState;
use palisade_policy::Egress;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// A policy with agents `a` and `b` (keys `key-a`, `key-b`) and `limits`,
/// routing to `fake`; the gateway's clock reads `now` (Unix seconds).
async fn gateway(name: &str, fake: &FakeOpenAi, limits: &str, now: Arc<Mutex<i64>>) -> AppState {
    let yaml = format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {{name: p, namespace: ns}}
spec:
  agents:
    - {{name: a, apiKeySecretRef: {{name: k, key: a}}}}
    - {{name: b, apiKeySecretRef: {{name: k, key: b}}}}
  providers: [{{name: cloud, type: openai, baseUrl: "{}"}}]
  routing: {{defaultProvider: cloud}}
  limits: {limits}
---
apiVersion: v1
kind: Secret
metadata: {{name: k, namespace: ns}}
stringData: {{a: key-a, b: key-b}}
"#,
        fake.base_url()
    );
    let clock = Arc::new(move || jiff::Timestamp::from_second(*now.lock().unwrap()).unwrap());
    common::standalone_config_built(&format!("limits-{name}"), &yaml, |b| {
        b.egress(Egress::any_url(true)).clock(clock)
    })
    .await
}

/// A chat request of the agent holding `key`: status, `Retry-After`, body.
async fn chat(state: &AppState, key: &str, stream: bool) -> (u16, Option<String>, Value) {
    let body = json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, body) =
        common::post_json(state, "/v1/chat/completions", key, &body).await;
    let retry = headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, body)
}

async fn fake() -> FakeOpenAi {
    FakeOpenAi::start(Script::Text("ok".into())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_minutes_limit_get_429_with_when_to_retry_and_are_audited() {
    let fake = fake().await;
    let now = Arc::new(Mutex::new(1_800_000_045)); // :45 past a minute
    let state = gateway("rpm", &fake, "{agent: {requestsPerMinute: 2}}", now.clone()).await;
    for _ in 0..2 {
        assert_eq!(chat(&state, "key-a", false).await.0, 200);
    }
    let (status, retry, body) = chat(&state, "key-a", false).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry.as_deref(), Some("15"), "seconds to the next minute");
    assert_eq!(body["error"]["code"], "limit.requests_per_minute");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(
        body["palisade"]["rule"],
        "spec.limits.agent.requestsPerMinute"
    );
    assert_eq!(fake.received().len(), 2, "the refused request went nowhere");
    // Another agent has its own budget; the next minute, so does `a`.
    assert_eq!(chat(&state, "key-b", false).await.0, 200);
    *now.lock().unwrap() += 15;
    assert_eq!(chat(&state, "key-a", false).await.0, 200);

    state.audit.flush().await.unwrap();
    let dir = std::env::temp_dir().join(format!("palisade-limits-rpm-{}", std::process::id()));
    let store = Store::open(
        &format!("sqlite://{}", dir.join("audit.db").display()),
        Migrations::VerifyOnly,
    )
    .await
    .unwrap();
    let refused = store
        .query(&Filter {
            reason: Some("limit.requests_per_minute".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].event.decision, "Deny");
    assert_eq!(refused[0].event.agent, "a");
    let metrics = state.metrics.render();
    assert!(
        metrics.contains(r#"palisade_decisions_total{agent="a",decision="Deny",kind="chat",namespace="ns",reason="limit.requests_per_minute",rule="spec.limits.agent.requestsPerMinute"} 1"#),
        "{metrics}"
    );
    // The refused request is counted once, as refused: not also as routed.
    assert!(
        metrics.contains(r#"palisade_decisions_total{agent="a",decision="Allow",kind="chat",namespace="ns",reason="routing.default",rule="none"} 3"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stopped_at_its_daily_token_budget_resumes_the_next_day() {
    let fake = fake().await; // every answer reports 5 + 7 tokens
    let midnight = 1_800_057_600;
    let now = Arc::new(Mutex::new(midnight - 600));
    let state = gateway("tpd", &fake, "{agent: {tokensPerDay: 30}}", now.clone()).await;
    // 12 tokens each: the third request is admitted (18 < 30) and takes the
    // day to 36, past the limit; the fourth is refused.
    for _ in 0..3 {
        assert_eq!(chat(&state, "key-a", false).await.0, 200);
    }
    let (status, retry, body) = chat(&state, "key-a", false).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "limit.tokens_per_day");
    assert_eq!(retry.as_deref(), Some("600"), "until midnight UTC");
    // Streamed answers count too (their usage, at the end of the stream).
    assert_eq!(chat(&state, "key-b", true).await.0, 200);
    assert_eq!(chat(&state, "key-b", true).await.0, 200);
    assert_eq!(chat(&state, "key-b", true).await.0, 200);
    assert_eq!(chat(&state, "key-b", true).await.0, 429);
    *now.lock().unwrap() = midnight;
    assert_eq!(chat(&state, "key-a", false).await.0, 200, "a new day");
    assert_eq!(chat(&state, "key-b", true).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_wide_stream_limit_counts_open_streams_until_they_end() {
    let fake = FakeOpenAi::start(Script::Bench {
        chunks: 20,
        interval: std::time::Duration::from_millis(50),
    })
    .await
    .unwrap();
    let now = Arc::new(Mutex::new(1_800_000_000));
    let state = gateway("streams", &fake, "{policy: {concurrentStreams: 1}}", now).await;
    // A stream of about a second, held open while the second arrives.
    let body =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer key-a")
        .body(Body::from(body.to_string()))
        .unwrap();
    let open = app(state.clone()).oneshot(req).await.unwrap();
    assert_eq!(open.status(), 200);
    let (status, retry, body) = chat(&state, "key-b", true).await;
    assert_eq!((status, retry.as_deref()), (429, Some("1")), "{body}");
    assert_eq!(body["error"]["code"], "limit.concurrent_streams");
    assert_eq!(
        body["palisade"]["rule"],
        "spec.limits.policy.concurrentStreams"
    );
    assert_eq!(
        chat(&state, "key-b", false).await.0,
        200,
        "a whole answer is no stream"
    );
    // Read to its end: the place frees.
    axum::body::to_bytes(open.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(chat(&state, "key-b", true).await.0, 200);
}

/// Two gateway replicas (the real binary, twice) auditing to one
/// PostgreSQL share an agent's tokens-per-minute budget: each leases
/// shares of it, and together they admit no more than the limit plus, per
/// replica, the tokens of the request under way when its share ran out
/// (docs/policy.md#limits). Counted alone, each would admit the whole
/// budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_token_budget_through_postgresql() {
    // The binaries read the system clock: the test runs inside one UTC
    // minute (it takes about a second), starting early in one.
    let second = jiff::Timestamp::now().as_second().rem_euclid(60);
    if second > 45 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let fake = fake().await; // every answer reports 5 + 7 tokens
    let pg = palisade_audit_suite::TestPostgres::start();
    let replicas = Replicas::start(&pg, &fake, "{agent: {tokensPerMinute: 100}}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let mut admitted = [0; 2];
    let mut refused = [false; 2];
    // Alternating between the replicas until both refuse.
    for i in 0..40 {
        let r = i % 2;
        if refused[0] && refused[1] {
            break;
        }
        let resp = http
            .post(format!("http://{}/v1/chat/completions", replicas.addr(r)))
            .bearer_auth("key-a")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => admitted[r] += 1,
            429 => {
                let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
                assert_eq!(v["error"]["code"], "limit.tokens_per_minute", "{v}");
                refused[r] = true;
            }
            other => panic!("replica {r} answered {other}"),
        }
    }
    drop(replicas);
    assert!(refused[0] && refused[1], "both replicas stop: {admitted:?}");
    let tokens = 12 * (admitted[0] + admitted[1]);
    assert!(
        (100..=100 + 2 * 12).contains(&tokens),
        "admitted {admitted:?} requests, {tokens} tokens, against a budget of 100"
    );
    assert!(
        admitted[0] > 0 && admitted[1] > 0,
        "both served: {admitted:?}"
    );
}

/// Two gateway replicas (the real binary) with one policy whose `limits`
/// are given, auditing to one PostgreSQL; stopped however the test ends.
struct Replicas(Vec<(std::process::Child, String)>);

impl Replicas {
    fn start(pg: &palisade_audit_suite::TestPostgres, fake: &FakeOpenAi, limits: &str) -> Self {
        let url = pg.database("limits");
        let dir = palisade_testkit::temp_dir("limits-replicas");
        let config = dir.join("p.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: palisade.dev/v1alpha1\nkind: AIPolicy\nmetadata: {{name: p}}\nspec:\n  agents: [{{name: a, apiKeySecretRef: {{name: k, key: a}}}}, {{name: b, apiKeySecretRef: {{name: k, key: b}}}}]\n  providers: [{{name: cloud, type: openai, baseUrl: \"{}\"}}]\n  routing: {{defaultProvider: cloud}}\n  limits: {limits}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: k}}\nstringData: {{a: key-a, b: key-b}}\n",
                fake.base_url()
            ),
        )
        .unwrap();
        let args = [
            "run",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--audit-url",
            &url,
        ];
        Self(vec![
            common::spawn_gateway(&args),
            common::spawn_gateway(&args),
        ])
    }

    fn addr(&self, replica: usize) -> &str {
        &self.0[replica].1
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Two replicas share a policy's open-stream places through PostgreSQL:
/// with `concurrentStreams: 1`, a stream open on one replica refuses a
/// stream on the other until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_policys_open_streams_through_postgresql() {
    let fake = FakeOpenAi::start(Script::Bench {
        chunks: 20,
        interval: std::time::Duration::from_millis(50),
    })
    .await
    .unwrap();
    let pg = palisade_audit_suite::TestPostgres::start();
    let replicas = Replicas::start(&pg, &fake, "{policy: {concurrentStreams: 1}}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let stream = |replica: usize, key: &'static str| {
        http.post(format!("http://{}/v1/chat/completions", replicas.addr(replica)))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string())
            .send()
    };
    // Open on replica 0 (its answer takes about a second)...
    let open = stream(0, "key-a").await.unwrap();
    assert_eq!(open.status(), 200);
    // ...so replica 1 refuses another agent's stream of the same policy.
    let refused = stream(1, "key-b").await.unwrap();
    assert_eq!(refused.status(), 429);
    let v: Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "limit.concurrent_streams", "{v}");
    // Once it ends (and its place is given back), replica 1 serves one.
    open.bytes().await.unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = stream(1, "key-b").await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the place came back");
}
