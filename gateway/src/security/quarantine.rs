//! Quarantine (`spec.security.quarantineOn`, opt-in): a security alert of
//! a listed kind suspends the agent — a kill switch, reason code
//! `kill_switch.quarantine` — until a human lifts it. One enforcement
//! path: the quarantine is in the served bundle's agent
//! (`palisade_policy::Agent::quarantine`), checked with the other kill
//! switches.
//!
//! - In a cluster the gateway annotates the AIPolicy
//!   (`palisade.dev/quarantine.<agent>`, [`palisade_crds::quarantine`]);
//!   the operator compiles it into every replica's configuration and shows
//!   it in `status.quarantined`. The chart's admission policy lets the
//!   gateway add such annotations and change nothing else; a human lifts
//!   a quarantine by removing the annotation.
//! - Standalone it is a row of the audit database's `quarantines` table,
//!   laid over every configuration this process serves ([`Overlay`]); an
//!   operator lifts it over HTTP or on the console.

use super::Alert;
use crate::metrics::GatewayMetrics;
use crate::snapshot::{Current, Snapshot};
use crate::state::AppState;
use palisade_audit::quarantines::{QuarantineRow, QuarantineStore};
use palisade_audit::{AuditDecision, AuditEvent, EventKind};
use palisade_crds::AIPolicy;
use palisade_crds::quarantine::{Quarantine, annotation_key};
use palisade_policy::{PolicyBundle, ReasonCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where quarantines are kept.
#[derive(Clone)]
pub enum Quarantines {
    /// Annotations on the AIPolicy, written as replica `instance`.
    Cluster {
        client: kube::Client,
        instance: String,
        /// When the configuration this replica served as it last annotated
        /// each agent was loaded: it writes one once until a newer
        /// configuration arrives (the quarantine landed, and the served
        /// configuration says so; after a lift, a new alert quarantines
        /// again). Not the revision: a lift serves the earlier one again.
        written: Arc<Mutex<HashMap<(String, String), jiff::Timestamp>>>,
    },
    /// The audit database, laid over the served configuration.
    Local {
        store: QuarantineStore,
        overlay: Overlay,
    },
}

impl std::fmt::Debug for Quarantines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cluster { instance, .. } => write!(f, "Quarantines::Cluster({instance})"),
            Self::Local { .. } => f.write_str("Quarantines::Local"),
        }
    }
}

impl Quarantines {
    pub fn cluster(client: kube::Client, instance: String) -> Self {
        Self::Cluster {
            client,
            instance,
            written: Arc::default(),
        }
    }
}

/// The standalone quarantines over the configuration loaded from files:
/// every configuration served goes through [`Overlay::serve`], so a
/// reload cannot drop a quarantine, and lifting one serves the files'
/// configuration again with the others.
#[derive(Clone, Default)]
pub struct Overlay(Arc<Mutex<OverlayState>>);

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Overlay")
    }
}

#[derive(Default)]
struct OverlayState {
    /// The configuration as the files say (no quarantines).
    base: Option<PolicyBundle>,
    /// (namespace, agent, why).
    agents: Vec<(String, String, String)>,
}

impl Overlay {
    /// Serves `base` with the quarantines over it.
    pub fn serve(&self, base: PolicyBundle, current: &Current, metrics: &GatewayMetrics) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.base = Some(base);
        store(&state, current, metrics);
    }

    /// The configuration as the files say, without quarantines.
    pub fn base(&self) -> Option<PolicyBundle> {
        let state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.base.clone()
    }

    /// Sets the quarantined agents (at start, from the database) and
    /// serves them.
    pub fn set(&self, rows: &[QuarantineRow], current: &Current, metrics: &GatewayMetrics) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.agents = rows
            .iter()
            .map(|r| (r.namespace.clone(), r.agent.clone(), r.why()))
            .collect();
        store(&state, current, metrics);
    }
}

fn overlaid(agents: &[(String, String, String)], base: &PolicyBundle) -> PolicyBundle {
    let list = agents
        .iter()
        .map(|(n, a, w)| (n.as_str(), a.as_str(), w.as_str()));
    base.with_quarantines(list).unwrap_or_else(|e| {
        tracing::error!(error = %e, "quarantines could not be laid over the configuration");
        base.clone()
    })
}

/// Serves the state's base with its quarantines (the lock is held, so
/// a reload and a quarantine cannot interleave).
fn store(state: &OverlayState, current: &Current, metrics: &GatewayMetrics) {
    let Some(base) = &state.base else {
        return;
    };
    let snapshot = Snapshot::new(overlaid(&state.agents, base));
    metrics.served(snapshot.revision(), snapshot.loaded_at);
    current.store(Some(Arc::new(snapshot)));
}

/// Quarantines the agent `alert` is about (its policy lists the alert's
/// kind), in the background: the decision that raised it is not held up.
pub fn impose(
    quarantines: &Quarantines,
    alert: &Alert,
    current: &Current,
    metrics: &Arc<GatewayMetrics>,
) {
    let quarantine = Quarantine {
        kind: alert.kind.as_str().to_owned(),
        since: jiff::Timestamp::now(),
        detail: alert.detail.clone(),
        request_id: alert.request_id.clone(),
        by: String::new(),
    };
    let (namespace, agent) = (alert.namespace.clone(), alert.agent.clone());
    let metrics = Arc::clone(metrics);
    match quarantines {
        Quarantines::Cluster {
            client,
            instance,
            written,
        } => {
            let Some(policy) = alert.policy.clone() else {
                return;
            };
            {
                let mut recent = written.lock().unwrap_or_else(|p| p.into_inner());
                let key = (namespace.clone(), agent.clone());
                let served = current
                    .load()
                    .as_ref()
                    .map_or(jiff::Timestamp::UNIX_EPOCH, |s| s.loaded_at);
                if recent.get(&key) == Some(&served) {
                    return;
                }
                recent.insert(key, served);
            }
            let quarantine = Quarantine {
                by: instance.clone(),
                ..quarantine
            };
            let api: kube::Api<AIPolicy> = kube::Api::namespaced(client.clone(), &namespace);
            let written = Arc::clone(written);
            tokio::spawn(async move {
                let value = serde_json::to_string(&quarantine).unwrap_or_default();
                let patch = serde_json::json!({"metadata": {"annotations": {annotation_key(&agent): value}}});
                let params = kube::api::PatchParams::default();
                match api
                    .patch(&policy, &params, &kube::api::Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => done(&metrics, &namespace, &agent, &quarantine, "applied"),
                    Err(e) => {
                        tracing::error!(error = %e, %namespace, %agent, policy, "the quarantine could not be written on the AIPolicy; the agent is NOT quarantined (see the chart's gateway RBAC and quarantine guard)");
                        metrics.quarantines.with_label_values(&["failed"]).inc();
                        written
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&(namespace, agent));
                    }
                }
            });
        }
        Quarantines::Local { store, overlay } => {
            let (store, overlay, current) = (store.clone(), overlay.clone(), current.clone());
            tokio::spawn(async move {
                let row = QuarantineRow {
                    namespace: namespace.clone(),
                    agent: agent.clone(),
                    kind: quarantine.kind.clone(),
                    detail: quarantine.detail.clone(),
                    request_id: quarantine.request_id.clone(),
                    since: quarantine.since,
                };
                match store.add(&row).await {
                    Ok(false) => {}
                    Ok(true) => {
                        reload(&store, &overlay, &current, &metrics).await;
                        done(&metrics, &namespace, &agent, &quarantine, "applied");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, %namespace, %agent, "the quarantine could not be recorded; the agent is NOT quarantined");
                        metrics.quarantines.with_label_values(&["failed"]).inc();
                    }
                }
            });
        }
    }
}

fn done(metrics: &GatewayMetrics, namespace: &str, agent: &str, q: &Quarantine, result: &str) {
    metrics.quarantines.with_label_values(&[result]).inc();
    tracing::warn!(namespace, agent, kind = %q.kind, request_id = %q.request_id, "agent quarantined: every request of it is refused (kill_switch.quarantine) until a human lifts it");
}

/// Serves the quarantines the database holds now.
pub async fn reload(
    store: &QuarantineStore,
    overlay: &Overlay,
    current: &Current,
    metrics: &GatewayMetrics,
) {
    match store.list().await {
        Ok(rows) => overlay.set(&rows, current, metrics),
        Err(e) => tracing::error!(error = %e, "quarantines could not be read"),
    }
}

/// Lifts a standalone quarantine as `by` (an operator's act); whether
/// there was one. The lift is recorded before it is answered: a row of
/// kind `security_alert`, decision `Lifted`, reason
/// `kill_switch.quarantine`, `decided_by` = `by`, under the id of the
/// request whose alert quarantined the agent. When that row cannot be
/// recorded the quarantine is put back (fail closed) and the error given.
pub async fn lift(
    state: &AppState,
    (namespace, agent): (&str, &str),
    by: &str,
) -> Result<bool, palisade_audit::AuditError> {
    let Some(Quarantines::Local { store, overlay }) = &state.quarantines else {
        return Ok(false);
    };
    let Some(lifted) = store.lift(namespace, agent).await? else {
        return Ok(false);
    };
    let recorded = state.audit.record_durable(lift_row(&lifted, by)).await;
    if let Err(e) = &recorded {
        tracing::error!(error = %e, namespace, agent, "the lift could not be recorded in the audit; the quarantine stays");
        if let Err(e) = store.add(&lifted).await {
            tracing::error!(error = %e, namespace, agent, "the quarantine could not be put back after a failed lift");
        }
    }
    reload(store, overlay, &state.config, &state.metrics).await;
    recorded?;
    state
        .metrics
        .quarantines
        .with_label_values(&["lifted"])
        .inc();
    Ok(true)
}

/// The audit row of a lift of `q` by `by`.
fn lift_row(q: &QuarantineRow, by: &str) -> AuditEvent {
    let mut e = AuditEvent::new(
        EventKind::SecurityAlert,
        &q.request_id,
        &q.namespace,
        &q.agent,
        AuditDecision::Lifted,
    );
    e.reason_codes = vec![ReasonCode::KillSwitchQuarantine.as_str().to_owned()];
    e.decided_by = Some(by.to_owned());
    e.detail = Some(format!("quarantine lifted; it was: {}", q.why()));
    e
}
