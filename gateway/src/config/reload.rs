//! Configuration from files: load once at start, then reload whenever a
//! file changes. An edit that does not load is rejected with its
//! diagnostics and the previous configuration keeps serving — with the
//! kill switches the edit sets turned on over it (a kill switch always
//! wins). So is one that gives an agent an operator's token as its key,
//! checked on every load, not only at start-up: an agent must never
//! decide approvals.

use super::{ConfigError, kill_switches_in, load_files};
use crate::credentials::sha256;
use crate::metrics::GatewayMetrics;
use crate::security::quarantine::Overlay;
use crate::snapshot::{Current, Snapshot};
use palisade_crds::standalone::GatewaySettings;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A standalone operator's token, as every load checks agent keys
/// against it: who holds it, the variable it came from, its SHA-256.
#[derive(Debug, Clone)]
pub struct OperatorKey {
    pub operator: String,
    pub var: String,
    sha256: [u8; 32],
}

impl OperatorKey {
    pub fn new(operator: &str, var: &str, token: &str) -> Self {
        Self {
            operator: operator.to_owned(),
            var: var.to_owned(),
            sha256: sha256(token),
        }
    }
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Compiles the files: the configuration to serve and the gateway
/// settings, or the diagnostics. Nothing is served yet ([`serve`]).
pub fn compile(paths: &[PathBuf]) -> Result<(Snapshot, GatewaySettings), ConfigError> {
    let loaded = load_files(paths)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok((
        Snapshot::new(loaded.compilation.bundle),
        loaded.config.settings,
    ))
}

/// Serves `snapshot` unless one of its agents' keys is an operator's
/// token, with the standalone quarantines (`overlay`) over it; returns
/// the revision served.
pub fn serve(
    snapshot: Snapshot,
    current: &Current,
    metrics: &GatewayMetrics,
    operators: &[OperatorKey],
    overlay: &Overlay,
) -> Result<String, ConfigError> {
    for op in operators {
        if let Some(agent) = snapshot.agent_keys.holder_of(&op.sha256) {
            return Err(ConfigError::OperatorTokenIsAgentKey {
                operator: op.operator.clone(),
                var: op.var.clone(),
                namespace: agent.namespace.clone(),
                agent: agent.agent.clone(),
            });
        }
    }
    overlay.serve(snapshot.bundle, current, metrics);
    Ok(current
        .load()
        .as_ref()
        .map(|s| s.revision().to_owned())
        .unwrap_or_default())
}

/// Loads the files into `current` (a gateway without operators); returns
/// the revision and the gateway settings, or the diagnostics.
pub fn load_into(
    paths: &[PathBuf],
    current: &Current,
    metrics: &GatewayMetrics,
) -> Result<(String, GatewaySettings), ConfigError> {
    let (snapshot, settings) = compile(paths)?;
    Ok((
        serve(snapshot, current, metrics, &[], &Overlay::default())?,
        settings,
    ))
}

/// Polls the files every `interval` and reloads on change, until the
/// task is aborted; each load is checked against `operators` and served
/// with `overlay`'s quarantines.
pub fn watch(
    paths: Vec<PathBuf>,
    current: Current,
    metrics: Arc<GatewayMetrics>,
    interval: Duration,
    (operators, overlay): (Vec<OperatorKey>, Overlay),
) -> tokio::task::JoinHandle<()> {
    // Taken now, not in the task: a change right after this call counts.
    let mut seen = stamps(&paths);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let now = stamps(&paths);
            if now == seen {
                continue;
            }
            seen = now;
            let loaded = compile(&paths).and_then(|(snapshot, _)| {
                serve(snapshot, &current, &metrics, &operators, &overlay)
            });
            match loaded {
                Ok(revision) => tracing::info!(revision, "configuration reloaded"),
                Err(diagnostics) => {
                    metrics.config_reload_errors.inc();
                    tracing::error!(
                        "configuration change rejected; the previous configuration keeps serving:\n{diagnostics}"
                    );
                    switch_on_rejected(&paths, &current, &metrics, (&operators, &overlay));
                }
            }
        }
    })
}

/// Turns the kill switches of a rejected edit on over the configuration
/// being served, and says so.
fn switch_on_rejected(
    paths: &[PathBuf],
    current: &Current,
    metrics: &GatewayMetrics,
    (operators, overlay): (&[OperatorKey], &Overlay),
) {
    let switches = kill_switches_in(paths);
    // Over the files' configuration being served (its quarantines are
    // laid over it again when it is served).
    let Some(base) = overlay.base() else {
        return;
    };
    if switches.is_empty() {
        return;
    }
    let switched = match base.with_switches_on(&switches) {
        Ok(bundle) if bundle.revision() != base.revision() => bundle,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(error = %e, "the rejected edit's kill switches could not be applied");
            return;
        }
    };
    let named: Vec<String> = switches
        .iter()
        .map(|s| {
            let what = if s.suspend {
                "suspend".to_owned()
            } else {
                format!("agents {} suspended", s.suspended_agents.join(", "))
            };
            format!("{}/{}: {what}", s.namespace, s.policy)
        })
        .collect();
    match serve(
        Snapshot::new(switched),
        current,
        metrics,
        operators,
        overlay,
    ) {
        Ok(revision) => tracing::warn!(
            revision,
            "the rejected edit's kill switches are on over the previous configuration: {}",
            named.join("; ")
        ),
        Err(e) => {
            tracing::error!(error = %e, "the rejected edit's kill switches could not be applied")
        }
    }
}
