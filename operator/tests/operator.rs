//! The operator against a real API server (etcd + kube-apiserver,
//! `tests/control-plane/`): the example becomes the compiled Secret, an
//! invalid edit keeps the last good generation and says why, a kill switch
//! reaches the bundle, a grant leaves the bundle when it expires, a cluster
//! without the CRDs gets a clear error, one leader works (and hands over on
//! death or shutdown), and `--watch-namespaces` reads only those namespaces
//! with RoleBindings there and nothing cluster-wide.
//!
//! Each test starts a control plane of its own: the operator runs
//! cluster-wide (and writes one Secret and one Lease per installation), so
//! two tests sharing a server would see each other's policies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use palisade_control_plane::ControlPlane;
use palisade_crds::{AIPolicy, ToolGrant};
use palisade_operator::bundle_secret;
use palisade_operator::leader::{LeaseConfig, run_while_leader, run_while_leader_until};
use palisade_policy::PolicyBundle;
use palisade_testkit::{cluster, cluster_with_crds, install_crds};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Runs blocking kit calls (kubectl) without stalling the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn create_namespace(client: &kube::Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
}

/// The CRDs, the installation's namespace and the example in `clinic`.
async fn install(client: &kube::Client) {
    install_crds(client).await;
    create_namespace(client, "palisade-system").await;
    example(client, "clinic").await;
}

/// `examples/clinic-assistant.yaml` (its AIPolicy and ToolGrant) and the
/// credentials Secret it references, in namespace `ns`.
async fn example(client: &kube::Client, ns: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "openai-credentials", "labels": {"palisade.dev/credentials": "true"}}, "stringData": {"apiKey": "sk-test"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/clinic-assistant.yaml"
    ))
    .unwrap();
    for doc in serde_yaml::Deserializer::from_str(&example) {
        let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
        v["metadata"]["namespace"] = json!(ns);
        match v["kind"].as_str() {
            Some("AIPolicy") => {
                Api::<AIPolicy>::namespaced(client.clone(), ns)
                    .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap();
            }
            Some("ToolGrant") => {
                Api::<ToolGrant>::namespaced(client.clone(), ns)
                    .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }
}

fn operator(
    client: &kube::Client,
) -> tokio::task::JoinHandle<Result<(), palisade_operator::Error>> {
    let mut config = palisade_operator::OperatorConfig::new("palisade-system");
    config.resync = Duration::from_secs(2);
    tokio::spawn(palisade_operator::run(client.clone(), config))
}

/// Stops an operator task and waits until it has stopped, so its watches
/// are closed before the control plane stops (an API server with a watch
/// open takes seconds longer to shut down).
async fn stop<T>(task: tokio::task::JoinHandle<T>) {
    task.abort();
    let _ = task.await;
}

async fn bundle(client: &kube::Client) -> Option<PolicyBundle> {
    let s = Api::<Secret>::namespaced(client.clone(), "palisade-system")
        .get_opt("palisade-config")
        .await
        .unwrap()?;
    Some(bundle_secret::decode(&s).unwrap())
}

/// Polls `f` until it gives a value. 30 s: a real API server on a small
/// machine running other tests' servers too is slower than an in-memory one.
async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn condition(p: &AIPolicy, type_: &str) -> Option<(String, String, String)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn events(client: &kube::Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_is_compiled_into_the_secret_and_the_status_says_ready() {
    let (_cp, client) = cluster("op-example").await;
    install(&client).await;
    let op = operator(&client);
    let b = until("the compiled Secret exists", async || bundle(&client).await).await;
    let p = b.policy("clinic", "clinic-assistant").unwrap();
    assert_eq!(
        p.provider("cloud")
            .unwrap()
            .api_key
            .as_ref()
            .unwrap()
            .expose(),
        "sk-test"
    );
    assert_eq!(b.grants().len(), 1);
    let policies: Api<AIPolicy> = Api::namespaced(client.clone(), "clinic");
    let ready = until("the policy is Ready", async || {
        let p = policies.get("clinic-assistant").await.unwrap();
        (condition(&p, "Ready")?.0 == "True").then_some(p)
    })
    .await;
    let status = ready.status.unwrap();
    assert_eq!(
        (
            status.observed_generation,
            status.served_generation,
            status.agents
        ),
        (Some(1), Some(1), Some(2))
    );
    assert_eq!(status.served_revision.as_deref(), Some(b.revision()));
    // The grant's status is its own write, after or before the policy's.
    let grants = Api::<ToolGrant>::namespaced(client.clone(), "clinic");
    let state = until("the grant has a status", async || {
        grants.get("lab-migration").await.unwrap().status?.state
    })
    .await;
    assert_eq!(state, palisade_crds::GrantState::Active);
    stop(op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_keeps_the_last_good_generation_and_says_why_in_status_and_an_event() {
    let (_cp, client) = cluster("op-invalid").await;
    install(&client).await;
    let op = operator(&client);
    until("the first bundle", async || bundle(&client).await).await;
    let policies: Api<AIPolicy> = Api::namespaced(client.clone(), "clinic");
    // The CRD's CEL rules refuse an unknown provider; a bad regex passes the API server.
    let patch = json!({"spec": {"routing": {"rules": [{"name": "bad", "patterns": ["(unclosed"], "provider": "local"}], "defaultProvider": "cloud"}}});
    policies
        .patch(
            "clinic-assistant",
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .unwrap();
    let (status, reason, message) = until("Accepted=False", async || {
        let p = policies.get("clinic-assistant").await.unwrap();
        condition(&p, "Accepted").filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(
        message.starts_with("spec.routing.rules[0].patterns[0]: invalid regular expression"),
        "{message}"
    );
    assert!(
        message.ends_with("generation 1 is still served"),
        "{message}"
    );
    let b = bundle(&client).await.unwrap();
    assert_eq!(
        b.policy("clinic", "clinic-assistant").unwrap().generation,
        1
    );
    let reasons = until("an Invalid event", async || {
        let reasons: Vec<String> = events(&client, "clinic")
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        reasons.contains(&"Invalid".to_string()).then_some(reasons)
    })
    .await;
    assert!(reasons.contains(&"Compiled".to_string()), "{reasons:?}");
    stop(op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_reaches_the_bundle_within_one_reconcile() {
    let (_cp, client) = cluster("op-suspend").await;
    install(&client).await;
    let op = operator(&client);
    until("the first bundle", async || bundle(&client).await).await;
    let policies: Api<AIPolicy> = Api::namespaced(client.clone(), "clinic");
    policies
        .patch(
            "clinic-assistant",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    let b = until("the bundle says suspended", async || {
        bundle(&client).await.filter(|b| {
            b.policy("clinic", "clinic-assistant")
                .is_some_and(|p| p.suspend)
        })
    })
    .await;
    assert_eq!(
        b.policy("clinic", "clinic-assistant").unwrap().generation,
        2
    );
    stop(op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_leaves_the_bundle_when_it_expires() {
    let (_cp, client) = cluster("op-grant-expiry").await;
    install(&client).await;
    let op = operator(&client);
    until("the first bundle", async || bundle(&client).await).await;
    // The wall clock is the real one (the operator's and the API server's):
    // a grant that expires in 3 s.
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3)).to_string();
    let grant: ToolGrant = serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "ToolGrant",
        "metadata": {"name": "short", "namespace": "clinic"},
        "spec": {"agents": ["intake"], "tools": ["export_csv"], "action": "Allow", "expiresAt": expires, "reason": "INC-1"}
    }))
    .unwrap();
    Api::<ToolGrant>::namespaced(client.clone(), "clinic")
        .create(&PostParams::default(), &grant)
        .await
        .unwrap();
    until("the grant is in the bundle", async || {
        bundle(&client)
            .await
            .filter(|b| b.grants().iter().any(|g| g.name == "short"))
    })
    .await;
    until("the grant left the bundle", async || {
        bundle(&client)
            .await
            .filter(|b| !b.grants().iter().any(|g| g.name == "short"))
    })
    .await;
    let state = until("the grant says Expired", async || {
        let g = Api::<ToolGrant>::namespaced(client.clone(), "clinic")
            .get("short")
            .await
            .unwrap();
        g.status
            .and_then(|s| s.state)
            .filter(|s| *s == palisade_crds::GrantState::Expired)
    })
    .await;
    assert_eq!(state, palisade_crds::GrantState::Expired);
    stop(op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crds_the_operator_stops_with_a_clear_message() {
    let (_cp, client) = cluster("op-no-crds").await;
    let err = palisade_operator::run(
        client,
        palisade_operator::OperatorConfig::new("palisade-system"),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("the Palisade CRDs are not installed"),
        "{err}"
    );
    assert!(err.to_string().contains("kubectl apply -f crds/"), "{err}");
}

/// The chart's operator roles (`charts/palisade/templates/rbac-operator.yaml`):
/// the ClusterRole (policies, grants, approvals, referenced Secrets,
/// Events) and the Role of the installation's namespace (the compiled
/// Secret, Leases).
const OPERATOR_ROLES: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: palisade-operator}
rules:
  - apiGroups: ["palisade.dev"]
    resources: ["aipolicies", "toolgrants", "approvals"]
    verbs: ["list", "watch"]
  - apiGroups: ["palisade.dev"]
    resources: ["aipolicies/status", "toolgrants/status", "approvals/status"]
    verbs: ["patch"]
  - apiGroups: ["palisade.dev"]
    resources: ["approvals"]
    verbs: ["delete"]
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get"]
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: palisade-operator, namespace: palisade-system}
rules:
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["create"]
  - apiGroups: [""]
    resources: ["secrets"]
    resourceNames: ["palisade-config"]
    verbs: ["get", "patch"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "list", "watch", "create", "update"]
"#;

/// The user the API server sees for ServiceAccount `palisade-system/sa`.
fn service_account_user(sa: &str) -> String {
    format!("system:serviceaccount:palisade-system:{sa}")
}

/// A client of ServiceAccount `palisade-system/sa` holding the chart's
/// operator rights, bound as the chart binds them: the ClusterRole by a
/// RoleBinding in each of `watch_namespaces` (`operator.watchNamespaces`),
/// or by a ClusterRoleBinding when there are none; the Role in
/// `palisade-system`.
async fn operator_identity(cp: &ControlPlane, sa: &str, watch_namespaces: &[&str]) -> kube::Client {
    let subject =
        format!("subjects: [{{kind: ServiceAccount, name: {sa}, namespace: palisade-system}}]");
    let cluster_role = "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: palisade-operator}";
    let mut bindings = format!(
        "{OPERATOR_ROLES}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {{name: {sa}, namespace: palisade-system}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: palisade-operator}}\n{subject}\n"
    );
    if watch_namespaces.is_empty() {
        bindings.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
             metadata: {{name: {sa}}}\n{cluster_role}\n{subject}\n"
        ));
    }
    for ns in watch_namespaces {
        bindings.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
             metadata: {{name: {sa}-watch, namespace: {ns}}}\n{cluster_role}\n{subject}\n"
        ));
    }
    let kubeconfig = blocking(|| {
        cp.apply(&bindings);
        cp.service_account_kubeconfig("palisade-system", sa)
    });
    cp.client_from(&kubeconfig).await
}

/// The watches ServiceAccount `palisade-system/sa` opened, and how many of
/// them are still open, by the API server's audit log (a watch logs
/// `ResponseStarted` when it starts and `ResponseComplete` when it ends).
fn watches_of(cp: &ControlPlane, sa: &str) -> (usize, usize) {
    let user = service_account_user(sa);
    let audit = blocking(|| cp.audit_log());
    let ids = |stage: &str| {
        audit
            .iter()
            .filter(|e| e["user"]["username"] == user.as_str() && e["verb"] == "watch")
            .filter(|e| e["stage"] == stage)
            .filter_map(|e| e["auditID"].as_str().map(str::to_owned))
            .collect::<std::collections::BTreeSet<String>>()
    };
    let started = ids("ResponseStarted");
    let ended = ids("ResponseComplete");
    (started.len(), started.difference(&ended).count())
}

/// A replica of the operator under leader election, as the binary runs it
/// (without `shutdown`: it runs until its task is aborted, as a process
/// that is killed).
fn replica(
    client: &kube::Client,
    identity: &str,
    lease: impl FnOnce(&mut LeaseConfig),
    shutdown: Option<tokio::sync::oneshot::Receiver<()>>,
) -> (
    tokio::task::JoinHandle<Result<(), palisade_operator::Error>>,
    tokio::sync::watch::Receiver<bool>,
) {
    let mut cfg = LeaseConfig::new("palisade-system", identity);
    lease(&mut cfg);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let work = {
        let client = client.clone();
        let identity = identity.to_string();
        move || {
            let mut config = palisade_operator::OperatorConfig::new("palisade-system");
            config.instance = identity.clone();
            palisade_operator::run(client.clone(), config)
        }
    };
    let client = client.clone();
    let task = match shutdown {
        None => tokio::spawn(run_while_leader(client, cfg, tx, work)),
        Some(stop) => tokio::spawn(run_while_leader_until(client, cfg, tx, work, async {
            let _ = stop.await;
        })),
    };
    (task, rx)
}

/// Suspends the example and waits until the bundle says so; returns the
/// `reportingInstance` of the Suspended Event (who compiled it).
async fn suspend_and_see_who_compiled_it(client: &kube::Client) -> String {
    Api::<AIPolicy>::namespaced(client.clone(), "clinic")
        .patch(
            "clinic-assistant",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    until("the leader compiles the change", async || {
        bundle(client).await.filter(|b| {
            b.policy("clinic", "clinic-assistant")
                .is_some_and(|p| p.suspend)
        })
    })
    .await;
    until("a Suspended event", async || {
        events(client, "clinic")
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Suspended"))
            .and_then(|e| e.reporting_instance)
    })
    .await
}

async fn lease_holder(client: &kube::Client) -> (Option<String>, Option<i32>) {
    let lease = Api::<Lease>::namespaced(client.clone(), "palisade-system")
        .get("palisade-operator")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    (spec.holder_identity, spec.lease_transitions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_operators_only_the_leader_works_and_the_other_takes_over_when_it_dies() {
    let (cp, client) = cluster("op-leader-dies").await;
    install(&client).await;
    // Each replica as a ServiceAccount of its own, so the API server's
    // audit log tells their requests apart.
    let client_a = operator_identity(&cp, "operator-a", &[]).await;
    let client_b = operator_identity(&cp, "operator-b", &[]).await;
    let short = |l: &mut LeaseConfig| {
        l.lease_duration = Duration::from_secs(1);
        l.renew_every = Duration::from_millis(100);
    };
    let (a, a_leads) = replica(&client_a, "operator-a", short, None);
    until("the first replica leads", async || {
        a_leads.borrow().then_some(())
    })
    .await;
    let (b, b_leads) = replica(&client_b, "operator-b", short, None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        *a_leads.borrow() && !*b_leads.borrow(),
        "exactly one leader, the first"
    );
    until("the leader wrote the configuration", async || {
        bundle(&client).await
    })
    .await;

    a.abort(); // the leader dies without releasing the Lease (its loop with it)
    let died = Instant::now();
    until("the other replica takes over", async || {
        b_leads.borrow().then_some(())
    })
    .await;
    // Only once the Lease has not changed for its duration (1 s) by the
    // standby's own clock.
    assert!(
        died.elapsed() >= Duration::from_millis(900),
        "took over {:?} after the leader died, before its Lease expired",
        died.elapsed()
    );
    // The dead one's loop stopped with it: the Suspended event comes from
    // the new leader, and none of its watches is left open.
    assert_eq!(suspend_and_see_who_compiled_it(&client).await, "operator-b");
    assert_eq!(
        lease_holder(&client).await,
        (Some("operator-b".into()), Some(1))
    );
    until("the dead replica's watches are all closed", async || {
        let (opened, open) = watches_of(&cp, "operator-a");
        (opened > 0 && open == 0).then_some(())
    })
    .await;
    stop(b).await;
}

/// A leader shut down (SIGTERM in the binary) stops its work, then gives
/// its Lease up, so the standby takes over at its next round instead of
/// after the lease duration (15 s here, the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_shuts_down_releases_its_lease_and_the_standby_takes_over_at_once() {
    let (cp, client) = cluster("op-leader-release").await;
    install(&client).await;
    let client_a = operator_identity(&cp, "operator-a", &[]).await;
    let client_b = operator_identity(&cp, "operator-b", &[]).await;
    let long = |l: &mut LeaseConfig| {
        l.lease_duration = Duration::from_secs(15);
        l.renew_every = Duration::from_millis(500);
    };
    let (stop_a, a_shutdown) = tokio::sync::oneshot::channel();
    let (a, a_leads) = replica(&client_a, "operator-a", long, Some(a_shutdown));
    until("the first replica leads", async || {
        a_leads.borrow().then_some(())
    })
    .await;
    let (b, b_leads) = replica(&client_b, "operator-b", long, None);
    until("the leader wrote the configuration", async || {
        bundle(&client).await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        *a_leads.borrow() && !*b_leads.borrow(),
        "exactly one leader, the first"
    );

    stop_a.send(()).unwrap();
    let stopping = Instant::now();
    // The leader returns once its work has stopped and the Lease is released.
    a.await.unwrap().unwrap();
    assert!(
        !*a_leads.borrow(),
        "the stopped replica says it leads no more"
    );
    let (holder, _) = lease_holder(&client).await;
    assert!(
        holder.is_none() || holder.as_deref() == Some("operator-b"),
        "the Lease still names {holder:?} after its holder stopped"
    );
    until("the standby takes over", async || {
        b_leads.borrow().then_some(())
    })
    .await;
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the standby took {took:?} to take over a released Lease (lease duration 15 s)"
    );
    assert_eq!(
        lease_holder(&client).await,
        (Some("operator-b".into()), Some(1))
    );
    assert_eq!(suspend_and_see_who_compiled_it(&client).await, "operator-b");
    // The stopped replica keeps nothing open on the API server.
    until("the stopped replica's watches are all closed", async || {
        let (opened, open) = watches_of(&cp, "operator-a");
        (opened > 0 && open == 0).then_some(())
    })
    .await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_follow_the_reconcile() {
    let (_cp, client) = cluster("op-metrics").await;
    install(&client).await;
    let config = palisade_operator::OperatorConfig::new("palisade-system");
    let metrics = std::sync::Arc::clone(&config.metrics);
    assert!(
        !metrics.ready.load(std::sync::atomic::Ordering::Acquire),
        "not ready before the first reconcile"
    );
    let op = tokio::spawn(palisade_operator::run(client.clone(), config));
    until("ready", async || {
        metrics
            .ready
            .load(std::sync::atomic::Ordering::Acquire)
            .then_some(())
    })
    .await;
    let text = metrics.render();
    assert!(
        text.contains("palisade_operator_policies{state=\"accepted\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("palisade_operator_grants{state=\"active\"} 1"),
        "{text}"
    );
    assert!(metrics.bundle_bytes.get() > 100 && metrics.reconciles.get() >= 1);
    stop(op).await;
}

/// An SQLite audit store in a fresh directory, and a writer to it.
async fn audit_writer(
    name: &str,
) -> (
    palisade_audit::Store,
    palisade_audit::AuditWriter,
    palisade_audit::WriterTask,
) {
    let d = palisade_testkit::temp_dir(&format!("op-{name}"));
    let store = palisade_audit::Store::open(
        &format!("sqlite://{}", d.join("audit.db").display()),
        palisade_audit::Migrations::Apply,
    )
    .await
    .unwrap();
    let (audit, task) = palisade_audit::AuditWriter::start(
        store.clone(),
        palisade_audit::WriterConfig::new(d.join("spool")),
        palisade_audit::AuditMetrics::unregistered().unwrap(),
    )
    .unwrap();
    (store, audit, task)
}

/// Approvals decided while the operator was not running (a restart, an
/// upgrade): one approved and already used by a gateway, one approved and
/// left to expire. Each decision is audited with who made it, and the
/// expiry too, when the operator comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_made_while_the_operator_was_away_are_audited_when_it_returns() {
    let (_cp, client) = cluster("op-away").await;
    install(&client).await;
    let api: Api<palisade_crds::Approval> = Api::namespaced(client.clone(), "clinic");
    for (name, expires_in) in [("used", 60), ("lapsed", 1)] {
        api.create(
            &PostParams::default(),
            &held(name, Duration::from_secs(expires_in)),
        )
        .await
        .unwrap();
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decision": "Approved", "decidedBy": "bob"}})),
        )
        .await
        .unwrap();
    }
    // A gateway used one (it writes only the consumption).
    api.patch_status(
        "used",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "phase": "Consumed", "consumedAt": jiff::Timestamp::now().to_string(), "consumedBy": "gw-1"
        }})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let (store, audit, _task) = audit_writer("away").await;
    let mut config = palisade_operator::OperatorConfig::new("palisade-system");
    config.audit = Some(audit.clone());
    let op = tokio::spawn(palisade_operator::run(client.clone(), config));
    for name in ["used", "lapsed"] {
        until(&format!("{name}'s decision recorded"), async || {
            api.get(name).await.unwrap().status?.decided_at.map(|_| ())
        })
        .await;
    }
    let outcomes = async || {
        let mut o: Vec<(String, String, Option<String>)> = store
            .query(&palisade_audit::Filter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.event.approval.unwrap_or_default(),
                    r.event.reason_codes[0].clone(),
                    r.event.decided_by,
                )
            })
            .collect();
        o.sort();
        o
    };
    let bob = || Some("bob".to_owned());
    let want = vec![
        ("lapsed".into(), "approval.approved".into(), bob()),
        ("lapsed".into(), "approval.expired".into(), None),
        ("used".into(), "approval.approved".into(), bob()),
    ];
    // The status is written after the audit is durable: no flush needed.
    assert_eq!(outcomes().await, want);
    // And later passes (the watch brings the operator's own writes back)
    // audit nothing again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    audit.flush().await.unwrap();
    assert_eq!(outcomes().await, want, "each outcome once");
    stop(op).await;
}

/// An Approval as a gateway creates it.
fn held(name: &str, expires_in: Duration) -> palisade_crds::Approval {
    let now = jiff::Timestamp::now();
    serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name, "namespace": "clinic"},
        "spec": {
            "agent": "intake", "tool": "send_email", "arguments": {"to": "a@b.c"},
            "argumentsDigest": format!("sha256:{}", "a".repeat(64)),
            "requestId": format!("req-{name}"), "policy": "clinic", "policyGeneration": 1,
            "requestedAt": now.to_string(),
            "expiresAt": (now + jiff::SignedDuration::try_from(expires_in).unwrap()).to_string(),
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_recorded_expired_audited_and_collected() {
    let (_cp, client) = cluster("op-approvals").await;
    install(&client).await;
    let (store, audit, _task) = audit_writer("appr").await;
    let mut config = palisade_operator::OperatorConfig::new("palisade-system");
    config.audit = Some(audit.clone());
    config.approval_retention = Duration::from_secs(2);
    let metrics = std::sync::Arc::clone(&config.metrics);
    let op = tokio::spawn(palisade_operator::run(client.clone(), config));

    let api: Api<palisade_crds::Approval> = Api::namespaced(client.clone(), "clinic");
    api.create(
        &PostParams::default(),
        &held("decided", Duration::from_secs(60)),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &held("forgotten", Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let phase = |name: &'static str, want: &'static str| {
        let api = api.clone();
        async move {
            until(&format!("{name} {want}"), async || {
                let a = api.get_opt(name).await.unwrap()?;
                let s = a.status?;
                (s.phase.map(|p| p.as_str()) == Some(want)).then_some(s)
            })
            .await
        }
    };
    phase("decided", "Pending").await;

    // A human decides. The chart (and its MutatingAdmissionPolicy that
    // stamps spec.decidedBy from the authenticated user) is not installed
    // here — the e2e suites cover that — so the patch carries decidedBy.
    api.patch(
        "decided",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"decision": "Approved", "reason": "ok", "decidedBy": "alice"}}),
        ),
    )
    .await
    .unwrap();
    let s = phase("decided", "Approved").await;
    assert_eq!(s.decided_by.as_deref(), Some("alice"));
    assert!(s.decided_at.is_some());

    // A gateway consumes it; the operator keeps that and says Consumed.
    let current = api.get("decided").await.unwrap();
    api.patch_status(
        "decided",
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "status": {"consumedAt": jiff::Timestamp::now().to_string(), "consumedBy": "gw-1"}
        })),
    )
    .await
    .unwrap();
    let s = phase("decided", "Consumed").await;
    assert_eq!(s.decided_by.as_deref(), Some("alice"));

    // Nobody decides the other: it expires at its deadline.
    let s = phase("forgotten", "Expired").await;
    assert!(s.decided_by.is_none());

    // Both outcomes are audited with who decided (durably, before the
    // status above said so).
    let outcomes = until("both outcomes are audited", async || {
        let rows = store
            .query(&palisade_audit::Filter::default())
            .await
            .unwrap();
        let outcomes: Vec<(String, String, Option<String>)> = rows
            .iter()
            .map(|r| {
                (
                    r.event.approval.clone().unwrap(),
                    r.event.reason_codes[0].clone(),
                    r.event.decided_by.clone(),
                )
            })
            .collect();
        (outcomes.len() >= 2).then_some(outcomes)
    })
    .await;
    assert!(
        outcomes.contains(&(
            "decided".into(),
            "approval.approved".into(),
            Some("alice".into())
        )),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("forgotten".into(), "approval.expired".into(), None)),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.len(), 2, "each outcome once: {outcomes:?}");

    // Events say what happened.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "clinic");
    until("Approved and Expired events", async || {
        let reasons: Vec<String> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        (reasons.iter().any(|r| r == "Approved") && reasons.iter().any(|r| r == "Expired"))
            .then_some(())
    })
    .await;

    // After the retention both are collected.
    until("collected", async || {
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(
        metrics
            .render()
            .contains("palisade_operator_approval_outcomes_total{outcome=\"collected\"} 2"),
        "{}",
        metrics.render()
    );
    stop(op).await;
}

/// A malformed AIPolicy (stored under a looser schema, then the CRD
/// tightened) is skipped; the good ones are compiled and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_malformed_policy_never_stalls_the_others() {
    let (_cp, client) = cluster("op-malformed").await;
    install(&client).await;
    // Loosen the AIPolicy schema, store a policy whose `tools.default` is a
    // number, then restore the real schema (the API server does not
    // re-validate stored objects, and pruning keeps a field of the wrong
    // type).
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let real = crds.get("aipolicies.palisade.dev").await.unwrap();
    let mut loose = real.clone();
    loose.spec.versions[0].schema = Some(
        serde_json::from_value(json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}))
            .unwrap(),
    );
    loose.spec.versions[0].additional_printer_columns = None;
    let loose = crds
        .replace("aipolicies.palisade.dev", &PostParams::default(), &loose)
        .await
        .unwrap();
    let malformed: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
        "metadata": {"name": "broken", "namespace": "clinic"},
        "spec": {"agents": [{"name": "other"}], "tools": {"default": 42}}
    }))
    .unwrap();
    let ar = kube::api::ApiResource::erase::<AIPolicy>(&());
    let dynamic = Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), "clinic", &ar);
    // A real API server swaps a CRD's schema in asynchronously: until it
    // has, the old schema refuses the object (422).
    until(
        "the loose schema accepts the malformed policy",
        async || match dynamic.create(&PostParams::default(), &malformed).await {
            Ok(_) => Some(()),
            Err(kube::Error::Api(e)) if e.code == 422 => None,
            Err(e) => panic!("{e}"),
        },
    )
    .await;
    let mut restored = real.clone();
    restored.metadata.resource_version = loose.metadata.resource_version.clone();
    crds.replace("aipolicies.palisade.dev", &PostParams::default(), &restored)
        .await
        .unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut again = malformed.clone();
    again.metadata.name = Some("broken-again".into());
    until(
        "the real schema is enforced again",
        async || match dynamic.create(&dry_run, &again).await {
            Err(kube::Error::Api(e)) if e.code == 422 => Some(()),
            _ => None,
        },
    )
    .await;

    let mut config = palisade_operator::OperatorConfig::new("palisade-system");
    config.resync = Duration::from_secs(2);
    let metrics = std::sync::Arc::clone(&config.metrics);
    let op = tokio::spawn(palisade_operator::run(client.clone(), config));
    let b = until("the good policy is served", async || {
        bundle(&client).await.filter(|b| !b.policies().is_empty())
    })
    .await;
    let names: Vec<&str> = b.policies().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["clinic-assistant"]);
    assert!(
        metrics
            .render()
            .contains("palisade_operator_reconcile_errors_total{kind=\"malformed_object\"} 1"),
        "{}",
        metrics.render()
    );
    // And it keeps working: a change to the good policy still lands.
    Api::<AIPolicy>::namespaced(client.clone(), "clinic")
        .patch(
            "clinic-assistant",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    until("the change lands", async || {
        bundle(&client).await.filter(|b| b.policies()[0].suspend)
    })
    .await;
    stop(op).await;
}

/// Restarting the operator changes nothing that was already correct: no
/// Secret write, no status write (resourceVersions stay), no new Events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_writes_nothing_that_was_already_correct() {
    let (_cp, client) = cluster("op-restart").await;
    install(&client).await;
    let op = operator(&client);
    let policies: Api<AIPolicy> = Api::namespaced(client.clone(), "clinic");
    until("the policy is Ready", async || {
        let p = policies.get("clinic-assistant").await.unwrap();
        (condition(&p, "Ready")?.0 == "True").then_some(())
    })
    .await;
    // Let it settle (a resync pass), then stop it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(op).await;
    let versions = async || {
        let secret = Api::<Secret>::namespaced(client.clone(), "palisade-system")
            .get("palisade-config")
            .await
            .unwrap();
        let policy = policies.get("clinic-assistant").await.unwrap();
        let grant = Api::<ToolGrant>::namespaced(client.clone(), "clinic")
            .get("lab-migration")
            .await
            .unwrap();
        let events =
            Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "clinic")
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .len();
        (
            secret.metadata.resource_version,
            policy.metadata.resource_version,
            grant.metadata.resource_version,
            events,
        )
    };
    let before = versions().await;
    let again = operator(&client);
    // Two resync periods (2 s each in these tests) of the new operator.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        versions().await,
        before,
        "the restarted operator rewrote something"
    );
    stop(again).await;
}

/// `--watch-namespaces clinic`: the policy and grant of `clinic` are
/// compiled; those of `billing` are never read (not in the bundle, no
/// status, no Event). The operator runs as its ServiceAccount, under
/// leader election, with RoleBindings only in `clinic` and
/// `palisade-system`: the API server refuses it nothing, and it makes no
/// cluster-wide request — it could not, as the last check shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_namespaces_only_those_are_compiled_and_no_cluster_wide_permission_is_needed() {
    let (cp, admin) = cluster("op-watch-ns").await;
    install(&admin).await;
    create_namespace(&admin, "billing").await;
    example(&admin, "billing").await;
    let client = operator_identity(&cp, "palisade-operator", &["clinic"]).await;

    let mut lease = LeaseConfig::new("palisade-system", "operator-0");
    lease.renew_every = Duration::from_millis(500);
    let (tx, leads) = tokio::sync::watch::channel(false);
    let work = {
        let client = client.clone();
        move || {
            let mut config = palisade_operator::OperatorConfig::new("palisade-system");
            config.resync = Duration::from_secs(2);
            config.watch_namespaces = vec!["clinic".into()];
            config.instance = "operator-0".into();
            palisade_operator::run(client.clone(), config)
        }
    };
    let op = tokio::spawn(run_while_leader(client.clone(), lease, tx, work));

    let b = until("the clinic policy is served", async || {
        bundle(&admin).await.filter(|b| !b.policies().is_empty())
    })
    .await;
    let served: Vec<(&str, &str)> = b
        .policies()
        .iter()
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .collect();
    assert_eq!(served, [("clinic", "clinic-assistant")]);
    assert_eq!(b.grants().len(), 1);
    let clinic: Api<AIPolicy> = Api::namespaced(admin.clone(), "clinic");
    until("the clinic policy is Ready", async || {
        let p = clinic.get("clinic-assistant").await.unwrap();
        (condition(&p, "Ready")?.0 == "True").then_some(())
    })
    .await;
    assert!(*leads.borrow(), "it leads with the Role's Lease rights");

    // A change in billing wakes nothing; a resync (2 s) passes and billing
    // is still untouched.
    let billing: Api<AIPolicy> = Api::namespaced(admin.clone(), "billing");
    billing
        .patch(
            "clinic-assistant",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let b = bundle(&admin).await.unwrap();
    // Policies that never compiled are served too (their agents denied
    // `policy.invalid`); the bundle's JSON lists them under `invalid`.
    let never_compiled = serde_json::to_value(&b).unwrap()["invalid"].clone();
    assert!(
        b.policies().iter().all(|p| p.namespace == "clinic")
            && b.grants().iter().all(|g| g.namespace == "clinic")
            && never_compiled
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["namespace"] == "clinic"),
        "nothing of billing is served"
    );
    assert!(
        billing
            .get("clinic-assistant")
            .await
            .unwrap()
            .status
            .is_none(),
        "the billing policy got a status"
    );
    let grant = Api::<ToolGrant>::namespaced(admin.clone(), "billing")
        .get("lab-migration")
        .await
        .unwrap();
    assert!(grant.status.is_none(), "the billing grant got a status");
    assert!(events(&admin, "billing").await.is_empty());

    // What the API server saw from the operator's ServiceAccount: requests,
    // none refused, and none to the watched kinds outside clinic.
    let audit = blocking(|| cp.audit_log());
    let user = service_account_user("palisade-operator");
    let mine: Vec<&Value> = audit
        .iter()
        .filter(|e| e["user"]["username"] == user.as_str())
        .collect();
    assert!(mine.len() > 10, "{} requests as the operator", mine.len());
    let refused: Vec<String> = mine
        .iter()
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let outside: Vec<String> = mine
        .iter()
        .filter(|e| e["objectRef"]["apiGroup"] == "palisade.dev")
        .filter(|e| e["objectRef"]["namespace"] != "clinic")
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(outside.is_empty(), "outside clinic: {outside:?}");

    // And it holds no cluster-wide permission to make them with.
    match Api::<AIPolicy>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("a cluster-wide list as the operator: {other:?}"),
    }
    stop(op).await;
}

/// Issue 22's poisoned policy: 30 tool rules, each with one invalid glob of
/// `x`s, `[` and `é`s, padded so that byte 4,000 of its status message
/// (the diagnostics joined) falls inside an `é`. The padding is found by
/// compiling it here, as the operator will.
fn poisoned_policy(ns: &str, name: &str) -> AIPolicy {
    let build = |pad: usize| -> AIPolicy {
        let glob = |i: usize| format!("{}{i}[{}", "x".repeat(pad + 4), "é".repeat(60));
        let rules: Vec<Value> = (0..30)
            .map(|i| json!({"tools": [glob(i)], "action": "Allow"}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {
                "agents": [{"name": "mallory", "serviceAccount": "mallory"}],
                "providers": [{"name": "local", "type": "ollama", "baseUrl": "http://ollama.ollama.svc:11434"}],
                "routing": {"defaultProvider": "local"},
                "tools": {"rules": rules},
            }
        }))
        .unwrap()
    };
    let message = |p: &AIPolicy| {
        let compiled = palisade_crds::compile(palisade_crds::CompileInput {
            policies: std::slice::from_ref(p),
            grants: &[],
            secrets: &palisade_crds::Secrets::default(),
            egress: &palisade_policy::Egress::default(),
            previous: None,
            now: jiff::Timestamp::now(),
            policy_budget: None,
        })
        .unwrap();
        let shorts: Vec<String> = compiled.policies[0]
            .diagnostics
            .iter()
            .map(|d| d.short())
            .collect();
        shorts.join("; ")
    };
    let policy = (0..120)
        .map(build)
        .find(|p| {
            let m = message(p);
            m.len() > 4000 && !m.is_char_boundary(4000)
        })
        .expect("a padding puts byte 4000 inside an é");
    let mut clean = policy;
    clean.metadata.generation = None;
    clean
}

/// Issue 22: the operator panicked (`String::truncate` inside an `é`) on
/// the status of the poisoned policy and exited, so a valid policy applied
/// afterwards was never compiled. Now the poisoned policy says why it is
/// invalid (its message cut on a character boundary), the operator keeps
/// running, and the next policy is compiled and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_message_cut_inside_a_character_stops_neither_the_operator_nor_the_next_policy() {
    let (_cp, client) = cluster_with_crds("op-multibyte").await;
    create_namespace(&client, "palisade-system").await;
    let op = operator(&client);
    let policies: Api<AIPolicy> = Api::namespaced(client.clone(), "clinic");
    policies
        .create(
            &PostParams::default(),
            &poisoned_policy("clinic", "poisoned"),
        )
        .await
        .unwrap();
    let (status, reason, message) = until("the poisoned policy says why", async || {
        assert!(!op.is_finished(), "the operator stopped: {:?}", op);
        let p = policies.get("poisoned").await.unwrap();
        condition(&p, "Accepted")
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(
        (3990..=4000).contains(&message.len()),
        "cut near 4,000 bytes: {} bytes",
        message.len()
    );
    assert!(
        message.starts_with("spec.tools.rules[0].tools[0]: \"xxxx"),
        "{message}"
    );

    // A valid policy applied afterwards is compiled and served.
    example(&client, "clinic").await;
    until("the valid policy is Ready", async || {
        assert!(!op.is_finished(), "the operator stopped: {:?}", op);
        let p = policies.get("clinic-assistant").await.unwrap();
        (condition(&p, "Ready")?.0 == "True").then_some(())
    })
    .await;
    let b = bundle(&client).await.unwrap();
    assert!(b.policy("clinic", "clinic-assistant").is_some());
    stop(op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_sends_only_opted_in_secrets_and_only_to_allowed_provider_urls() {
    let (_cp, client) = cluster_with_crds("op-egress").await;
    create_namespace(&client, "palisade-system").await;
    // A Secret of the namespace that was never meant for a model provider.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "clinic");
    let db: Secret = serde_json::from_value(
        json!({"metadata": {"name": "db-password"}, "stringData": {"password": "hunter2-db"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &db).await.unwrap();
    let policies: Api<AIPolicy> = Api::namespaced(client.clone(), "clinic");
    let policy: AIPolicy = serde_json::from_value(json!({
        "apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy",
        "metadata": {"name": "p", "namespace": "clinic"},
        "spec": {
            "agents": [{"name": "bot", "serviceAccount": "bot"}],
            "providers": [{"name": "cloud", "type": "openai", "baseUrl": "https://api.openai.com",
                           "credentialsSecretRef": {"name": "db-password", "key": "password"}}],
            "routing": {"defaultProvider": "cloud"}
        }
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let op = operator(&client);
    let accepted = async |want: &str| {
        until(&format!("Accepted={want}"), async || {
            let p = policies.get("p").await.unwrap();
            condition(&p, "Accepted").filter(|c| c.0 == want)
        })
        .await
    };
    let (_, reason, message) = accepted("False").await;
    assert_eq!(reason, "Invalid");
    assert!(
        message.starts_with("spec.providers[0].credentialsSecretRef: Secret clinic/db-password is not labelled palisade.dev/credentials: \"true\""),
        "{message}"
    );
    assert!(
        message
            .contains("kubectl label secret db-password -n clinic palisade.dev/credentials=true"),
        "{message}"
    );
    let raw = Api::<Secret>::namespaced(client.clone(), "palisade-system")
        .get("palisade-config")
        .await
        .unwrap();
    let b = bundle_secret::decode(&raw).unwrap();
    assert!(
        b.policy("clinic", "p").is_none(),
        "the refused policy is served"
    );
    assert!(
        !serde_json::to_string(&b).unwrap().contains("hunter2-db"),
        "the Secret's value reached the gateways' configuration"
    );

    // Its owner opts it in: the policy is accepted and served with it.
    secrets
        .patch(
            "db-password",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"palisade.dev/credentials": "true"}}})),
        )
        .await
        .unwrap();
    accepted("True").await;
    let b = until("the policy is served", async || {
        bundle(&client)
            .await
            .filter(|b| b.policy("clinic", "p").is_some())
    })
    .await;
    assert_eq!(
        b.policy("clinic", "p")
            .unwrap()
            .provider("cloud")
            .unwrap()
            .base_url,
        "https://api.openai.com"
    );

    // The author points the provider, and its key, at a host of their own.
    policies
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"providers": [{"name": "cloud", "type": "openai",
                "baseUrl": "https://collector.evil.example",
                "credentialsSecretRef": {"name": "db-password", "key": "password"}}]}}),
            ),
        )
        .await
        .unwrap();
    let (_, _, message) = accepted("False").await;
    assert!(
        message.starts_with("spec.providers[0].baseUrl: https://collector.evil.example is not on the platform's allow-list of provider URLs"),
        "{message}"
    );
    assert!(
        message.ends_with("generation 1 is still served"),
        "{message}"
    );
    let b = bundle(&client).await.unwrap();
    let served = b.policy("clinic", "p").unwrap();
    assert_eq!(
        (
            served.generation,
            served.provider("cloud").unwrap().base_url.as_str()
        ),
        (1, "https://api.openai.com")
    );
    stop(op).await;
}
