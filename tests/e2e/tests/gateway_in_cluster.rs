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
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use palisade_audit::{AuditMetrics, AuditWriter, Migrations, Store, WriterConfig};
use palisade_control_plane::ControlPlane;
use palisade_gateway::approvals::Approvals;
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
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, yaml) in palisade_crds::manifests::crd_manifests().unwrap() {
        crds.create(
            &PostParams::default(),
            &serde_yaml::from_str(&yaml).unwrap(),
        )
        .await
        .unwrap();
    }
    // `clinic` comes with the control plane.
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "palisade-system"}})).unwrap(),
        )
        .await
        .unwrap();
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "openai-credentials"}, "stringData": {"apiKey": "sk-test"}}),
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
    let req = Request::post("/v1/tool-calls")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(
            json!({"tool": tool, "arguments": {"query": "SELECT 1"}}).to_string(),
        ))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
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
        Approvals::Cluster {
            client: client.clone(),
            instance: "gateway-test".into(),
            namespaces: Default::default(),
        },
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
