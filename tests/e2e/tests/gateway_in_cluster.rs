//! The gateway in a cluster (the real API server, `tests/control-plane`),
//! in-process beside the operator (also in-process): configuration from the
//! operator's Secret, watched through the API; real ServiceAccount tokens
//! (`kubectl create token`) via TokenReview; a kill switch applied with a
//! patch reaches the gateway in well under a second; the applied revision
//! is reported in the gateway's Lease. (Moved here from the gateway's own
//! tests so that the gateway does not depend on the operator.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::Request;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use palisade_audit::{AuditMetrics, AuditWriter, Migrations, Store, WriterConfig};
use palisade_control_plane::ControlPlane;
use palisade_gateway::approvals::Approvals;
use palisade_gateway::kubernetes::token_review::ReviewRate;
use palisade_gateway::kubernetes::{ClusterSource, TokenReviewer, watch};
use palisade_gateway::metrics::GatewayMetrics;
use palisade_gateway::router::app;
use palisade_gateway::snapshot;
use palisade_gateway::state::AppState;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

async fn apply_example(client: &kube::Client) {
    palisade_testkit::install_crds(client).await;
    // `clinic` comes with the control plane.
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "palisade-system"}})).unwrap(),
        )
        .await
        .unwrap();
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "openai-credentials", "labels": {"palisade.dev/credentials": "true"}}, "stringData": {"apiKey": "sk-test"}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "clinic")
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/clinic-assistant.yaml"
    ))
    .unwrap();
    let policy: palisade_crds::AIPolicy =
        serde_yaml::from_str(example.split("\n---\n").next().unwrap()).unwrap();
    // A new CRD is served a moment after it is created.
    let policies = Api::<palisade_crds::AIPolicy>::namespaced(client.clone(), "clinic");
    let started = Instant::now();
    while let Err(e) = policies.create(&PostParams::default(), &policy).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the AIPolicy CRD was never served: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An SQLite audit store in `dir` and a writer spooling next to it.
async fn audit_in(dir: &std::path::Path) -> (Store, AuditWriter) {
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let (audit, _task) = AuditWriter::start(
        store.clone(),
        WriterConfig::new(dir.join("spool")),
        AuditMetrics::unregistered().unwrap(),
    )
    .unwrap();
    (store, audit)
}

async fn call(state: &AppState, token: &str, tool: &str) -> (u16, Value) {
    let (status, _, body) = call_with_headers(state, token, tool).await;
    (status, body)
}

/// [`call`], with the answer's headers.
async fn call_with_headers(
    state: &AppState,
    token: &str,
    tool: &str,
) -> (u16, axum::http::HeaderMap, Value) {
    let req = Request::post("/v1/tool-calls")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(
            json!({"tool": tool, "arguments": {"query": "SELECT 1"}}).to_string(),
        ))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (
        status,
        headers,
        serde_json::from_slice(
            &axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap(),
        )
        .unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_in_a_cluster_serves_the_operators_configuration_to_service_accounts() {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start("gateway-k8s"))
        .await
        .unwrap();
    let client = cp.client().await;
    let intake = cp.token("clinic", "intake-agent");
    let stranger = cp.token("clinic", "someone-else");
    apply_example(&client).await;
    let mut operator_config = palisade_operator::OperatorConfig::new("palisade-system");
    operator_config.debounce = Duration::from_millis(5);
    let operator = tokio::spawn(palisade_operator::run(client.clone(), operator_config));

    let dir = std::env::temp_dir().join(format!("palisade-k8s-gw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = Arc::new(GatewayMetrics::new().unwrap());
    let current = snapshot::empty();
    let source = ClusterSource {
        namespace: "palisade-system".into(),
        secret_name: "palisade-config".into(),
        instance: "gw-0".into(),
    };
    let watcher = watch(
        client.clone(),
        source,
        current.clone(),
        Arc::clone(&metrics),
    );
    let (_store, audit) = audit_in(&dir).await;
    let state = AppState::builder(
        current.clone(),
        audit,
        metrics,
        Approvals::cluster(client.clone(), "gateway-test", Default::default()),
    )
    .service_accounts(TokenReviewer::new(client.clone(), vec![]))
    .build();

    // Not ready until the first configuration arrives; then serving.
    for _ in 0..200 {
        if current.load().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        current.load().is_some(),
        "the gateway applied the operator's configuration"
    );
    let (status, body) = call(&state, &intake, "sql_query").await;
    assert_eq!(
        (status, body["reasonCode"].as_str()),
        (200, Some("tool.allowed_by_rule")),
        "{body}"
    );
    let (status, _) = call(&state, &stranger, "sql_query").await;
    assert_eq!(
        status, 401,
        "a ServiceAccount no policy names is not an agent"
    );
    let (status, _) = call(&state, "forged-token", "sql_query").await;
    assert_eq!(status, 401);

    // The applied revision is reported in the gateway's Lease (written
    // just after the configuration is swapped in).
    let revision = current.load_full().unwrap().revision().to_owned();
    let leases = Api::<Lease>::namespaced(client.clone(), "palisade-system");
    let reported = async || {
        let lease = leases.get_opt("palisade-gateway-gw-0").await.unwrap()?;
        lease
            .metadata
            .annotations?
            .remove("palisade.dev/applied-revision")
    };
    let waiting = Instant::now();
    let mut applied = reported().await;
    while applied.as_deref() != Some(revision.as_str())
        && waiting.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        applied = reported().await;
    }
    assert_eq!(applied, Some(revision));

    // A kill switch is one patch away.
    let policies: Api<palisade_crds::AIPolicy> = Api::namespaced(client.clone(), "clinic");
    let started = Instant::now();
    policies
        .patch(
            "clinic-assistant",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    let mut stopped = None;
    while started.elapsed() < Duration::from_secs(5) {
        let (status, body) = call(&state, &intake, "sql_query").await;
        if status == 403 && body["error"]["code"] == "kill_switch.policy" {
            stopped = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = stopped.expect("the kill switch reached the gateway");
    assert!(
        took < Duration::from_secs(1),
        "the kill switch took {took:?}"
    );
    watcher.abort();
    operator.abort();
}

/// The policy the TokenReview tests serve (standalone YAML, loaded into
/// the gateway directly: no operator needed): agent `intake` is
/// ServiceAccount `clinic/intake-agent` and may run `sql_query`.
const INTAKE_POLICY: &str = "\
apiVersion: palisade.dev/v1alpha1
kind: AIPolicy
metadata: {name: clinic, namespace: clinic}
spec:
  agents:
    - name: intake
      serviceAccount: intake-agent
  providers:
    - name: local
      type: ollama
      baseUrl: http://127.0.0.1:11434
      defaultModel: llama3.2
  routing: {defaultProvider: local}
  tools:
    rules:
      - tools: [sql_query]
        action: Allow
";

/// A gateway state serving [`INTAKE_POLICY`] whose ServiceAccount tokens
/// `reviewer` checks, auditing into a fresh directory named `name`.
async fn reviewing_gateway(name: &str, reviewer: TokenReviewer) -> AppState {
    let dir = std::env::temp_dir().join(format!("palisade-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, INTAKE_POLICY).unwrap();
    let metrics = Arc::new(GatewayMetrics::new().unwrap());
    let current = snapshot::empty();
    palisade_gateway::config::reload::load_into(&[policy], &current, &metrics).unwrap();
    let (store, audit) = audit_in(&dir).await;
    AppState::builder(
        current,
        audit,
        metrics,
        Approvals::local(store, "gateway-test"),
    )
    .service_accounts(reviewer)
    .build()
}

/// How many TokenReviews the API server has answered (its audit log is
/// written before each answer: `--audit-log-mode` blocking).
fn reviews(cp: &ControlPlane) -> usize {
    std::fs::read_to_string(cp.dir().join("audit.log"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["objectRef"]["resource"] == "tokenreviews" && e["stage"] == "ResponseComplete"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_jwt_shaped_tokens_are_reviewed_and_a_review_that_fails_is_not_repeated_at_once() {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start("token-review"))
        .await
        .unwrap();
    let intake = cp.token("clinic", "intake-agent");
    let state = reviewing_gateway(
        "token-review",
        TokenReviewer::new(cp.client().await, vec![]),
    )
    .await;

    let (status, body) = call(&state, &intake, "sql_query").await;
    assert_eq!(
        (status, body["reasonCode"].as_str()),
        (200, Some("tool.allowed_by_rule")),
        "{body}"
    );
    let reviewed = reviews(&cp);
    assert_eq!(reviewed, 1);

    // Anything that is not a JWT is refused without asking the API server.
    for token in [
        "forged-token",
        "a.b",
        "a.b.c",
        "x".repeat(40_000).as_str(),
        "eyJhbGciOiJSUzI1NiJ9.e30.",
        "...",
    ] {
        for _ in 0..2 {
            let (status, body) = call(&state, token, "sql_query").await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("invalid_api_key")),
                "{token}"
            );
        }
    }
    assert_eq!(
        reviews(&cp),
        reviewed,
        "a token that is no JWT was sent for review"
    );

    // A gateway whose reviews fail (its identity may not create
    // TokenReviews) answers 503, retryable, and does not ask again for the
    // same token at once: one failed review for five calls.
    let unprivileged = cp
        .client_from(&cp.kubeconfig(palisade_control_plane::User::Agent))
        .await;
    let failing = reviewing_gateway(
        "token-review-failing",
        TokenReviewer::new(unprivileged, vec![]),
    )
    .await;
    let before = reviews(&cp);
    for _ in 0..5 {
        let (status, headers, body) = call_with_headers(&failing, &intake, "sql_query").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("auth.review_unavailable")),
            "{body}"
        );
        assert_eq!(headers["x-palisade-reason"], "auth.review_unavailable");
    }
    assert_eq!(
        reviews(&cp),
        before + 1,
        "a failed review was repeated at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_the_palisade_audience_are_accepted_where_the_gateway_asks_for_it() {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start("token-audience"))
        .await
        .unwrap();
    // The example agent Pod mounts a projected token for the `palisade`
    // audience; the API server admits it as written.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/agent-pod.yaml"
    ))
    .unwrap();
    assert!(example.contains("audience: palisade"), "{example}");
    cp.token("clinic", "intake-agent");
    cp.apply(&example);
    // What the kubelet writes into that volume: a token of the Pod's
    // ServiceAccount for audience `palisade`, bound to the Pod.
    let for_palisade = cp
        .kubectl_ok(
            palisade_control_plane::User::Admin,
            &[
                "create",
                "token",
                "intake-agent",
                "-n",
                "clinic",
                "--audience",
                "palisade",
                "--bound-object-kind",
                "Pod",
                "--bound-object-name",
                "intake-agent",
            ],
        )
        .trim()
        .to_owned();
    // A token for the API server (the default audience).
    let for_the_api_server = cp.token("clinic", "intake-agent");

    let strict = reviewing_gateway(
        "token-audience-strict",
        TokenReviewer::new(cp.client().await, vec!["palisade".into()]),
    )
    .await;
    let (status, body) = call(&strict, &for_palisade, "sql_query").await;
    assert_eq!(
        (status, body["reasonCode"].as_str()),
        (200, Some("tool.allowed_by_rule")),
        "{body}"
    );
    let (status, _) = call(&strict, &for_the_api_server, "sql_query").await;
    assert_eq!(
        status, 401,
        "a token for the API server was accepted where `palisade` is asked for"
    );

    // Without an audience the gateway accepts the API server's tokens
    // only (as before): a token for `palisade` is not one of them.
    let default = reviewing_gateway(
        "token-audience-default",
        TokenReviewer::new(cp.client().await, vec![]),
    )
    .await;
    let (status, _) = call(&default, &for_the_api_server, "sql_query").await;
    assert_eq!(status, 200);
    let (status, _) = call(&default, &for_palisade, "sql_query").await;
    assert_eq!(status, 401);
}

/// A JWT-shaped token the API server never issued (`n` makes it unique).
fn made_up_jwt(n: usize) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","kid":"made-up"}"#),
        b64(&format!(
            r#"{{"sub":"system:serviceaccount:clinic:intake-agent","n":{n}}}"#
        )),
        b64("not a signature")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reviews_are_rate_limited_per_process_and_agents_with_cached_answers_are_unaffected()
{
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start("token-review-rate"))
        .await
        .unwrap();
    let intake = cp.token("clinic", "intake-agent");
    let reviewer = TokenReviewer::new(cp.client().await, vec![]).rate(ReviewRate {
        per_second: 1,
        burst: 3,
    });
    let state = reviewing_gateway("token-review-rate", reviewer).await;
    let (status, _) = call(&state, &intake, "sql_query").await;
    assert_eq!(status, 200);
    let before = reviews(&cp);

    // Twenty made-up tokens at once: the two reviews left in the burst
    // (perhaps one more refilled) are made and refused; the rest are
    // answered 429 without a review.
    let calls: Vec<_> = (0..20)
        .map(|n| {
            let state = state.clone();
            tokio::spawn(
                async move { call_with_headers(&state, &made_up_jwt(n), "sql_query").await },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    let refused = answers.iter().filter(|(s, _, _)| *s == 401).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(refused + limited.len(), 20, "{answers:?}");
    assert!((2..=3).contains(&refused), "{refused} reviewed");
    for (_, headers, body) in &limited {
        assert_eq!(body["error"]["code"], "auth.review_rate_limited", "{body}");
        assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
        assert_eq!(headers["retry-after"], "1");
    }
    assert_eq!(
        reviews(&cp),
        before + refused,
        "only the reviews within the rate were made"
    );

    // The agent's cached answer still serves it, with no review.
    for _ in 0..5 {
        let (status, _) = call(&state, &intake, "sql_query").await;
        assert_eq!(status, 200);
    }
    // A refused token is answered from the cache too: 401, not 429.
    let n = answers.iter().position(|(s, _, _)| *s == 401).unwrap();
    let (status, _, _) = call_with_headers(&state, &made_up_jwt(n), "sql_query").await;
    assert_eq!(status, 401);
    assert_eq!(reviews(&cp), before + refused);
}
