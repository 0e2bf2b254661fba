//! The operator against kube-sim: the example becomes the compiled Secret,
//! an invalid edit keeps the last good generation and says why, a kill
//! switch reaches the bundle, a grant leaves the bundle when it expires,
//! and a cluster without the CRDs gets a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use palisade_crds::{AIPolicy, ToolGrant};
use palisade_kube_sim::KubeSim;
use palisade_operator::bundle_secret;
use palisade_policy::PolicyBundle;
use serde_json::{Value, json};
use std::time::Duration;

async fn cluster() -> (KubeSim, kube::Client) {
    let sim = KubeSim::start().await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    (sim, client)
}

async fn install(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, yaml) in palisade_crds::manifests::crd_manifests().unwrap() {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let ns: Api<Namespace> = Api::all(client.clone());
    for name in ["clinic", "palisade-system"] {
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "clinic");
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "openai-credentials"}, "stringData": {"apiKey": "sk-test"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/clinic-assistant.yaml"
    ))
    .unwrap();
    for doc in serde_yaml::Deserializer::from_str(&example) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        match v["kind"].as_str() {
            Some("AIPolicy") => {
                Api::<AIPolicy>::namespaced(client.clone(), "clinic")
                    .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                    .await
                    .unwrap();
            }
            Some("ToolGrant") => {
                Api::<ToolGrant>::namespaced(client.clone(), "clinic")
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

async fn bundle(client: &kube::Client) -> Option<PolicyBundle> {
    let s = Api::<Secret>::namespaced(client.clone(), "palisade-system")
        .get_opt("palisade-config")
        .await
        .unwrap()?;
    Some(bundle_secret::decode(&s).unwrap())
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_is_compiled_into_the_secret_and_the_status_says_ready() {
    let (_sim, client) = cluster().await;
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
    let grant = Api::<ToolGrant>::namespaced(client.clone(), "clinic")
        .get("lab-migration")
        .await
        .unwrap();
    assert_eq!(
        grant.status.unwrap().state,
        Some(palisade_crds::GrantState::Active)
    );
    op.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_keeps_the_last_good_generation_and_says_why_in_status_and_an_event() {
    let (_sim, client) = cluster().await;
    install(&client).await;
    let op = operator(&client);
    until("the first bundle", async || bundle(&client).await).await;
    let policies: Api<AIPolicy> = Api::namespaced(client.clone(), "clinic");
    // The CRD's CEL rules would refuse an unknown provider; a bad regex passes the API server.
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
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "clinic");
    let reasons = until("an Invalid event", async || {
        let list = events.list(&Default::default()).await.unwrap();
        let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
        reasons.contains(&"Invalid".to_string()).then_some(reasons)
    })
    .await;
    assert!(reasons.contains(&"Compiled".to_string()), "{reasons:?}");
    op.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_reaches_the_bundle_within_one_reconcile() {
    let (_sim, client) = cluster().await;
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
    op.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_leaves_the_bundle_when_it_expires() {
    let (_sim, client) = cluster().await;
    install(&client).await;
    let op = operator(&client);
    until("the first bundle", async || bundle(&client).await).await;
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2)).to_string();
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
    op.abort();
}

#[tokio::test]
async fn without_the_crds_the_operator_stops_with_a_clear_message() {
    let (_sim, client) = cluster().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_operators_only_the_leader_works_and_the_other_takes_over_when_it_dies() {
    use palisade_operator::leader::{LeaseConfig, run_while_leader};
    let (_sim, client) = cluster().await;
    install(&client).await;
    let start = |identity: &str| {
        let mut lease = LeaseConfig::new("palisade-system", identity);
        lease.lease_duration = Duration::from_secs(1);
        lease.renew_every = Duration::from_millis(100);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let client = client.clone();
        let work = {
            let client = client.clone();
            let identity = identity.to_string();
            move || {
                let mut config = palisade_operator::OperatorConfig::new("palisade-system");
                config.instance = identity.clone();
                palisade_operator::run(client.clone(), config)
            }
        };
        (tokio::spawn(run_while_leader(client, lease, tx, work)), rx)
    };
    let (a, a_leads) = start("operator-a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (b, b_leads) = start("operator-b");
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
    until("the other replica takes over", async || {
        b_leads.borrow().then_some(())
    })
    .await;
    let policies: Api<AIPolicy> = Api::namespaced(client.clone(), "clinic");
    policies
        .patch(
            "clinic-assistant",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    until("the new leader compiles the change", async || {
        bundle(&client).await.filter(|b| {
            b.policy("clinic", "clinic-assistant")
                .is_some_and(|p| p.suspend)
        })
    })
    .await;
    // The Suspended event comes from the new leader: the dead one's loop stopped with it.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "clinic");
    let reporter = until("a Suspended event", async || {
        let list = events.list(&Default::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Suspended"))
            .and_then(|e| e.reporting_instance)
    })
    .await;
    assert_eq!(reporter, "operator-b");
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        client.clone(),
        "palisade-system",
    )
    .get("palisade-operator")
    .await
    .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(
        (spec.holder_identity.as_deref(), spec.lease_transitions),
        (Some("operator-b"), Some(1))
    );
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_follow_the_reconcile() {
    let (_sim, client) = cluster().await;
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
    op.abort();
}

/// An SQLite audit store in a fresh directory, and a writer to it.
async fn audit_writer(
    name: &str,
) -> (
    palisade_audit::Store,
    palisade_audit::AuditWriter,
    palisade_audit::WriterTask,
) {
    let d = std::env::temp_dir().join(format!("palisade-op-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
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
    let (_sim, client) = cluster().await;
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
    let _op = tokio::spawn(palisade_operator::run(client.clone(), config));
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
    let (_sim, client) = cluster().await;
    install(&client).await;
    let (store, audit, _task) = audit_writer("appr").await;
    let mut config = palisade_operator::OperatorConfig::new("palisade-system");
    config.audit = Some(audit.clone());
    config.approval_retention = Duration::from_secs(2);
    let metrics = std::sync::Arc::clone(&config.metrics);
    let _op = tokio::spawn(palisade_operator::run(client.clone(), config));

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

    // A human decides (kube-sim runs no admission: the patch carries what
    // the chart's MutatingAdmissionPolicy would stamp).
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
}

/// A malformed AIPolicy (stored under a looser schema, then the CRD
/// tightened) is skipped; the good ones are compiled and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_malformed_policy_never_stalls_the_others() {
    let (_sim, client) = cluster().await;
    install(&client).await;
    // Loosen the AIPolicy schema, store a policy whose `tools.default` is a
    // number, then restore the real schema (the API server does not
    // re-validate stored objects).
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
    Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), "clinic", &ar)
        .create(&PostParams::default(), &malformed)
        .await
        .unwrap();
    let mut restored = real.clone();
    restored.metadata.resource_version = loose.metadata.resource_version.clone();
    crds.replace("aipolicies.palisade.dev", &PostParams::default(), &restored)
        .await
        .unwrap();

    let mut config = palisade_operator::OperatorConfig::new("palisade-system");
    config.resync = Duration::from_secs(2);
    let metrics = std::sync::Arc::clone(&config.metrics);
    let _op = tokio::spawn(palisade_operator::run(client.clone(), config));
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
}

/// Restarting the operator changes nothing that was already correct: no
/// Secret write, no status write (resourceVersions stay), no new Events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_writes_nothing_that_was_already_correct() {
    let (_sim, client) = cluster().await;
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
    op.abort();
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
    again.abort();
}
