//! The loop: watch AIPolicies and ToolGrants (all namespaces), and on every
//! change — or when the next grant expires, or every `resync` to pick up
//! rotated Secrets — compile everything, write the bundle Secret if its
//! revision changed, and write the status of every object whose status
//! changed. Compilation errors never stop the loop; API errors are retried
//! with backoff.

use crate::bundle_secret::{self, BundleSecretError};
use crate::status::{Served, grant_status, policy_status};
use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use palisade_crds::{
    AIPolicy, CompileInput, GrantState, PolicyReport, SecretKeyRef, Secrets, ToolGrant, compile,
};
use palisade_policy::PolicyBundle;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The field manager of every write.
pub const MANAGER: &str = "palisade-operator";

#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Namespace of the compiled Secret (the installation's namespace).
    pub namespace: String,
    /// Name of the compiled Secret.
    pub secret_name: String,
    /// Recompile at least this often (picks up rotated credentials).
    pub resync: Duration,
    /// Quiet time after a change before compiling (batches bursts).
    pub debounce: Duration,
    /// Reported in Events.
    pub instance: String,
    /// Where to count passes, errors and sizes.
    pub metrics: Arc<crate::metrics::OperatorMetrics>,
    /// Where approval outcomes are audited.
    pub audit: Option<palisade_audit::AuditWriter>,
    /// How long decided, expired and consumed Approvals are kept.
    pub approval_retention: Duration,
}

impl OperatorConfig {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            secret_name: "palisade-config".into(),
            resync: Duration::from_secs(60),
            debounce: Duration::from_millis(20),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| "palisade-operator".into()),
            metrics: Arc::new(
                crate::metrics::OperatorMetrics::new().unwrap_or_else(|_| unreachable_metrics()),
            ),
            audit: None,
            approval_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// The metric names are constants: building them cannot fail.
#[allow(clippy::panic)]
fn unreachable_metrics() -> crate::metrics::OperatorMetrics {
    panic!("operator metrics have fixed, valid names")
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the Palisade CRDs are not installed ({0}); install them first: kubectl apply -f crds/ (or helm install palisade charts/palisade)"
    )]
    CrdsMissing(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

struct Loop {
    client: Client,
    config: OperatorConfig,
    policies: Store<AIPolicy>,
    grants: Store<ToolGrant>,
    gateways: Store<Lease>,
    recorder: Recorder,
    /// The bundle being served: the source of last known good policies.
    previous: Option<PolicyBundle>,
    written_revision: Option<String>,
    history: History,
}

async fn check_crds(client: &Client) -> Result<(), Error> {
    let lp = ListParams::default().limit(1);
    for result in [
        Api::<AIPolicy>::all(client.clone())
            .list_metadata(&lp)
            .await
            .map(|_| ()),
        Api::<ToolGrant>::all(client.clone())
            .list_metadata(&lp)
            .await
            .map(|_| ()),
        Api::<palisade_crds::Approval>::all(client.clone())
            .list_metadata(&lp)
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(kube::Error::Api(e)) if e.code == 404 => {
                return Err(Error::CrdsMissing(e.message.clone()));
            }
            Err(e) => return Err(Error::Kube(e)),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// Runs until the task is dropped. Fails only when the CRDs are missing.
/// Two loops: policies and grants into the bundle, and the Approval
/// lifecycle.
pub async fn run(client: Client, config: OperatorConfig) -> Result<(), Error> {
    check_crds(&client).await?;
    let lifecycle = crate::approvals::Lifecycle {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(config.instance.clone()),
            },
        ),
        audit: config.audit.clone(),
        retention: config.approval_retention,
        metrics: Arc::clone(&config.metrics),
        audited: Default::default(),
    };
    tokio::select! {
        result = run_bundle(client, config) => result,
        () = crate::approvals::run(lifecycle) => Ok(()),
    }
}

async fn run_bundle(client: Client, config: OperatorConfig) -> Result<(), Error> {
    let changed = Arc::new(Notify::new());
    let (policies, policy_writer) = reflector::store::<AIPolicy>();
    let (grants, grant_writer) = reflector::store::<ToolGrant>();
    // Objects that do not deserialize are skipped one by one (logged and
    // counted); they never stall the watch.
    let watch_policies = reflector::reflector(
        policy_writer,
        crate::watch::all::<AIPolicy>(
            client.clone(),
            watcher::Config::default(),
            Arc::clone(&config.metrics),
        ),
    )
    .default_backoff()
    .touched_objects();
    let watch_grants = reflector::reflector(
        grant_writer,
        crate::watch::all::<ToolGrant>(
            client.clone(),
            watcher::Config::default(),
            Arc::clone(&config.metrics),
        ),
    )
    .default_backoff()
    .touched_objects();
    // Gateways report the revision they applied in Leases of their own.
    let (gateways, gateway_writer) = reflector::store::<Lease>();
    let watch_gateways = reflector::reflector(
        gateway_writer,
        watcher(
            Api::<Lease>::namespaced(client.clone(), &config.namespace),
            watcher::Config::default().labels("app.kubernetes.io/component=gateway"),
        ),
    )
    .default_backoff()
    .touched_objects();
    for stream in [
        watch_policies.map(|r| r.map(|_| ())).boxed(),
        watch_grants.map(|r| r.map(|_| ())).boxed(),
        watch_gateways.map(|r| r.map(|_| ())).boxed(),
    ] {
        let changed = Arc::clone(&changed);
        tokio::spawn(async move {
            let mut stream = stream;
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watch error (retrying with backoff)");
                }
                changed.notify_one();
            }
        });
    }
    let _ = policies.wait_until_ready().await;
    let _ = grants.wait_until_ready().await;
    let _ = gateways.wait_until_ready().await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let previous = match secrets.get_opt(&config.secret_name).await {
        Ok(Some(s)) => bundle_secret::decode(&s).ok(),
        _ => None,
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: Some(config.instance.clone()),
        },
    );
    let mut state = Loop {
        client,
        written_revision: previous.as_ref().map(|b| b.revision().to_owned()),
        history: {
            let mut h = History::default();
            if let Some(b) = &previous {
                h.push(b.revision());
            }
            h
        },
        previous,
        config,
        policies,
        grants,
        gateways,
        recorder,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let metrics = Arc::clone(&state.config.metrics);
        let timer = metrics.duration.start_timer();
        let result = state.reconcile().await;
        timer.observe_duration();
        metrics.reconciles.inc();
        let wake_at = match result {
            Ok(next_expiry) => {
                backoff = Duration::from_millis(100);
                metrics
                    .ready
                    .store(true, std::sync::atomic::Ordering::Release);
                next_expiry
            }
            Err(e) => {
                metrics.errors.with_label_values(&["kubernetes_api"]).inc();
                tracing::warn!(error = %e, ?backoff, "reconcile failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let mut sleep_for = state.config.resync;
        if let Some(at) = wake_at {
            let until = at.duration_since(Timestamp::now());
            let until = Duration::try_from(until).unwrap_or_default() + Duration::from_millis(10);
            sleep_for = sleep_for.min(until);
        }
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(state.config.debounce).await,
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}

/// A gateway report older than this does not count (the pod is gone).
pub const GATEWAY_FRESHNESS: Duration = Duration::from_secs(90);

/// The revisions this operator wrote, oldest first (bounded), so that a
/// gateway's report can be placed in time: a gateway that applied revision
/// N has applied everything revision M ≤ N contained.
#[derive(Debug, Default)]
pub struct History {
    revisions: std::collections::VecDeque<String>,
    /// Index of `revisions[0]` since the operator started.
    base: usize,
}

impl History {
    const KEEP: usize = 4096;

    pub fn push(&mut self, revision: &str) {
        if self.revisions.back().map(String::as_str) == Some(revision) {
            return;
        }
        self.revisions.push_back(revision.to_owned());
        if self.revisions.len() > Self::KEEP {
            self.revisions.pop_front();
            self.base += 1;
        }
    }

    /// Position of `revision`, if this operator knows it.
    pub fn position(&self, revision: &str) -> Option<usize> {
        self.revisions
            .iter()
            .rposition(|r| r == revision)
            .map(|i| i + self.base)
    }
}

/// Positions of the revisions fresh gateways applied (unknown revisions
/// are left out: they cannot be placed).
fn gateway_positions(leases: &Store<Lease>, history: &History, now: Timestamp) -> Vec<usize> {
    let fresh_after = now - jiff::SignedDuration::try_from(GATEWAY_FRESHNESS).unwrap_or_default();
    leases
        .state()
        .iter()
        .filter(|l| {
            l.spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .is_some_and(|t| t.0 > fresh_after)
        })
        .filter_map(|l| history.position(l.annotations().get("palisade.dev/applied-revision")?))
        .collect()
}

/// Gateways that applied `revision` or a later one.
pub fn applied_since(gateways: &[usize], history: &History, revision: &str) -> i32 {
    // A revision older than the history (written before a restart) is
    // contained in every revision the history knows.
    let since = history.position(revision).unwrap_or(0);
    i32::try_from(gateways.iter().filter(|&&g| g >= since).count()).unwrap_or(i32::MAX)
}

fn referenced_secrets(policies: &[AIPolicy]) -> BTreeSet<(String, SecretKeyRef)> {
    let mut refs = BTreeSet::new();
    for p in policies {
        let ns = p.namespace().unwrap_or_default();
        for a in &p.spec.agents {
            if let Some(r) = &a.api_key_secret_ref {
                refs.insert((ns.clone(), r.clone()));
            }
        }
        for pr in &p.spec.providers {
            if let Some(r) = &pr.credentials_secret_ref {
                refs.insert((ns.clone(), r.clone()));
            }
        }
    }
    refs
}

impl Loop {
    /// One pass; returns when the next active grant expires.
    async fn reconcile(&mut self) -> Result<Option<Timestamp>, Error> {
        let policies: Vec<AIPolicy> = self
            .policies
            .state()
            .iter()
            .map(|p| (**p).clone())
            .collect();
        let grants: Vec<ToolGrant> = self.grants.state().iter().map(|g| (**g).clone()).collect();

        // Read only the Secrets policies reference, in their own namespaces.
        let mut secrets = Secrets::default();
        let mut fetched: BTreeMap<(String, String), Option<Secret>> = BTreeMap::new();
        for (ns, r) in referenced_secrets(&policies) {
            let key = (ns.clone(), r.name.clone());
            if !fetched.contains_key(&key) {
                let s = Api::<Secret>::namespaced(self.client.clone(), &ns)
                    .get_opt(&r.name)
                    .await?;
                fetched.insert(key.clone(), s);
            }
            if let Some(Some(secret)) = fetched.get(&key)
                && let Some(v) = secret.data.as_ref().and_then(|d| d.get(&r.key))
            {
                secrets.insert(
                    &ns,
                    &r.name,
                    &r.key,
                    String::from_utf8_lossy(&v.0).into_owned(),
                );
            }
        }
        let now = Timestamp::now();
        let compilation = match compile(CompileInput {
            policies: &policies,
            grants: &grants,
            secrets: &secrets,
            previous: self.previous.as_ref(),
            now,
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "compiled policies are inconsistent; keeping the served configuration");
                return Ok(None);
            }
        };

        let m = Arc::clone(&self.config.metrics);
        m.policies.reset();
        for r in &compilation.policies {
            let state = match (r.accepted(), r.served_generation) {
                (true, _) => "accepted",
                (false, Some(_)) => "serving_previous",
                (false, None) => "invalid",
            };
            m.policies.with_label_values(&[state]).inc();
        }
        m.grants.reset();
        for g in &compilation.grants {
            m.grants
                .with_label_values(&[format!("{:?}", g.state).to_lowercase().as_str()])
                .inc();
        }
        let served = match bundle_secret::encode(
            &compilation.bundle,
            &self.config.namespace,
            &self.config.secret_name,
        ) {
            Err(e @ BundleSecretError::TooLarge { .. }) => {
                m.errors.with_label_values(&["bundle_too_large"]).inc();
                Served::Failed(e.to_string())
            }
            Err(e) => Served::Failed(e.to_string()),
            Ok(secret) => {
                let size = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(bundle_secret::BUNDLE_KEY))
                    .map(|b| b.0.len())
                    .unwrap_or(0);
                m.bundle_bytes.set(i64::try_from(size).unwrap_or(i64::MAX));
                let revision = compilation.bundle.revision().to_owned();
                if self.written_revision.as_deref() != Some(revision.as_str()) {
                    Api::<Secret>::namespaced(self.client.clone(), &self.config.namespace)
                        .patch(
                            &self.config.secret_name,
                            &PatchParams::apply(MANAGER).force(),
                            &Patch::Apply(&secret),
                        )
                        .await?;
                    tracing::info!(
                        revision,
                        policies = compilation.bundle.policies().len(),
                        grants = compilation.bundle.grants().len(),
                        "configuration written"
                    );
                    self.written_revision = Some(revision.clone());
                    self.history.push(&revision);
                }
                self.previous = Some(compilation.bundle.clone());
                Served::Revision(revision)
            }
        };

        // Gateways that applied the served revision and reported within
        // GATEWAY_FRESHNESS (they renew their report periodically).
        let gateways = gateway_positions(&self.gateways, &self.history, now);
        let by_name: std::collections::HashMap<(String, String), &AIPolicy> = policies
            .iter()
            .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), p))
            .collect();
        for report in &compilation.policies {
            let key = (report.object.namespace.clone(), report.object.name.clone());
            let Some(object) = by_name.get(&key).copied() else {
                continue;
            };
            let mut status = policy_status(report, object.status.as_ref(), &served, now);
            status.gateways_applied = match (&served, &status.served_revision) {
                (Served::Revision(_), Some(r)) => Some(applied_since(&gateways, &self.history, r)),
                _ => None,
            };
            if object.status.as_ref() != Some(&status) {
                self.events_for_policy(object, report).await;
                Api::<AIPolicy>::namespaced(self.client.clone(), &report.object.namespace)
                    .patch_status(
                        &report.object.name,
                        &PatchParams::apply(MANAGER).force(),
                        &Patch::Apply(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "AIPolicy", "status": status})),
                    )
                    .await?;
            }
        }
        let grants_by_name: std::collections::HashMap<(String, String), &ToolGrant> = grants
            .iter()
            .map(|g| ((g.namespace().unwrap_or_default(), g.name_any()), g))
            .collect();
        for report in &compilation.grants {
            let key = (report.object.namespace.clone(), report.object.name.clone());
            let Some(object) = grants_by_name.get(&key).copied() else {
                continue;
            };
            let status = grant_status(report, object.status.as_ref(), now);
            if object.status.as_ref() != Some(&status) {
                if report.state == GrantState::Expired
                    && object.status.as_ref().and_then(|s| s.state) == Some(GrantState::Active)
                {
                    self.event(
                        object,
                        EventType::Normal,
                        "GrantExpired",
                        format!("expired at {}", object.spec.expires_at.0),
                    )
                    .await;
                }
                Api::<ToolGrant>::namespaced(self.client.clone(), &report.object.namespace)
                    .patch_status(
                        &report.object.name,
                        &PatchParams::apply(MANAGER).force(),
                        &Patch::Apply(json!({"apiVersion": "palisade.dev/v1alpha1", "kind": "ToolGrant", "status": status})),
                    )
                    .await?;
            }
        }
        Ok(compilation
            .bundle
            .grants()
            .iter()
            .map(|g| g.expires_at)
            .min())
    }

    async fn events_for_policy(&self, object: &AIPolicy, report: &PolicyReport) {
        let observed = object.status.as_ref().and_then(|s| s.observed_generation);
        if observed == Some(report.generation) {
            return;
        }
        if report.accepted() {
            self.event(
                object,
                EventType::Normal,
                "Compiled",
                format!("generation {} compiled", report.generation),
            )
            .await;
            if object.spec.suspend {
                self.event(
                    object,
                    EventType::Warning,
                    "Suspended",
                    "spec.suspend is true: every agent of this policy is stopped".into(),
                )
                .await;
            }
        } else {
            let first = report
                .diagnostics
                .first()
                .map(|d| d.short())
                .unwrap_or_default();
            self.event(object, EventType::Warning, "Invalid", first)
                .await;
        }
    }

    async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        publish(&self.recorder, object, type_, reason, note).await;
    }
}

/// Publishes an Event about `object` (failures are logged, never fatal).
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let mut note = note;
    note.truncate(1000);
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &object.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}
