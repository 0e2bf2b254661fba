//! The bundle loop: watch AIPolicies and ToolGrants (all namespaces, or
//! those of `--watch-namespaces`: see [`crate::scope`]) and the gateways'
//! Leases, and on every change — or when the next grant expires, or every
//! `resync` to pick up rotated Secrets — run one pass, staged:
//!
//! 1. [`read`]: the objects in scope from the caches, the Secrets they
//!    reference, the gateways' reports;
//! 2. [`plan`]: compile everything and decide, purely, what to write —
//!    the bundle Secret if its revision changed, every status that
//!    changed and the Events that announce it;
//! 3. [`apply`]: write it (the loop runs only while this replica leads).
//!
//! Compilation errors never stop the loop; API errors are retried with
//! backoff; a panic on one object is caught for that object (see
//! [`crate::guard`]), and a panic anywhere else in a pass keeps the
//! served configuration and is retried like an API error.

pub mod apply;
pub mod plan;
pub mod read;

use crate::config::{Error, MANAGER, OperatorConfig};
use crate::gateways::{self, History};
use crate::guard::panic_message;
use crate::leader::AbortOnDrop;
use crate::scope::Stores;
use futures_util::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use palisade_crds::bundle_secret;
use palisade_crds::{AIPolicy, ToolGrant};
use palisade_policy::PolicyBundle;
use plan::Input;
use read::Snapshot;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// What the loop remembers between passes.
#[derive(Debug, Default)]
struct Memory {
    /// The bundle being served: the source of last known good policies.
    previous: Option<PolicyBundle>,
    /// The revision in the bundle Secret.
    written_revision: Option<String>,
    /// The revisions this loop wrote, to place the gateways' reports.
    history: History,
}

impl Memory {
    /// Starts from the bundle the Secret holds, if any.
    fn new(previous: Option<PolicyBundle>) -> Self {
        let mut history = History::default();
        if let Some(b) = &previous {
            history.push(b.revision());
        }
        Self {
            written_revision: previous.as_ref().map(|b| b.revision().to_owned()),
            previous,
            history,
        }
    }
}

struct Loop {
    client: Client,
    config: OperatorConfig,
    policies: Stores<AIPolicy>,
    grants: Stores<ToolGrant>,
    gateways: Store<Lease>,
    recorder: Recorder,
    memory: Memory,
}

/// Runs the bundle loop until the task is dropped.
pub async fn run(client: Client, config: OperatorConfig) -> Result<(), Error> {
    let changed = Arc::new(Notify::new());
    // Objects that do not deserialize are skipped one by one (logged and
    // counted); they never stall the watch. One watcher (and store) per
    // watched namespace, or one cluster-wide.
    let namespaces = &config.watch_namespaces;
    let wc = watcher::Config::default;
    let (policies, watch_policies) =
        crate::watch::reflect::<AIPolicy>(&client, namespaces, wc(), &config.metrics);
    let (grants, watch_grants) =
        crate::watch::reflect::<ToolGrant>(&client, namespaces, wc(), &config.metrics);
    // Gateways report the revision they applied in Leases of their own.
    let (gateways, gateway_writer) = reflector::store::<Lease>();
    let (lease_api, lease_watch) = gateways::watch(&client, &config.namespace);
    let watch_gateways = reflector::reflector(gateway_writer, watcher(lease_api, lease_watch))
        .default_backoff()
        .touched_objects();
    // The watch tasks stop with this loop (aborted when it is dropped: on
    // lost leadership or shutdown), so a stopped loop leaves no watch open.
    let mut watch_tasks = Vec::new();
    for stream in [
        watch_policies,
        watch_grants,
        watch_gateways.map(|r| r.map(|_| ())).boxed(),
    ] {
        let changed = Arc::clone(&changed);
        watch_tasks.push(AbortOnDrop(Some(tokio::spawn(async move {
            let mut stream = stream;
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watch error (retrying with backoff)");
                }
                changed.notify_one();
            }
        }))));
    }
    policies.wait_until_ready().await;
    grants.wait_until_ready().await;
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
        memory: Memory::new(previous),
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
        let result = match AssertUnwindSafe(state.pass()).catch_unwind().await {
            Ok(result) => result,
            Err(payload) => Err(Error::Panic(panic_message(&*payload))),
        };
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
                metrics.errors.with_label_values(&[e.metric_kind()]).inc();
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

impl Loop {
    /// One pass: read → plan → apply. Returns when the next active grant
    /// expires.
    async fn pass(&mut self) -> Result<Option<Timestamp>, Error> {
        let config = &self.config;
        let snapshot = Snapshot::read(
            &self.client,
            &self.policies,
            &self.grants,
            &self.gateways,
            &config.watch_namespaces,
        )
        .await?;
        let input = Input {
            policies: &snapshot.policies,
            grants: &snapshot.grants,
            secrets: &snapshot.secrets,
            egress: &config.egress,
            gateways: &snapshot.gateways,
            previous: self.memory.previous.as_ref(),
            written_revision: self.memory.written_revision.as_deref(),
            history: &self.memory.history,
            namespace: &config.namespace,
            secret_name: &config.secret_name,
            now: Timestamp::now(),
            policy_budget: config.policy_size_budget,
        };
        let plan = match plan::plan(&input) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(error = %e, "compiled policies are inconsistent; keeping the served configuration");
                return Ok(None);
            }
        };
        apply::record(&config.metrics, &plan);
        if let Some(write) = &plan.secret {
            apply::write_secret(
                &self.client,
                &config.namespace,
                &config.secret_name,
                &write.secret,
            )
            .await?;
            tracing::info!(
                revision = write.revision,
                policies = plan.bundle.as_ref().map_or(0, |b| b.policies().len()),
                grants = plan.bundle.as_ref().map_or(0, |b| b.grants().len()),
                "configuration written"
            );
            self.memory.written_revision = Some(write.revision.clone());
            self.memory.history.push(&write.revision);
        }
        if let Some(bundle) = plan.bundle {
            self.memory.previous = Some(bundle);
        }
        apply::write_statuses(&self.client, &self.recorder, &plan.statuses).await?;
        Ok(plan.next_expiry)
    }
}
