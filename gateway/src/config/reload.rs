//! Configuration from files: load once at start, then reload whenever a
//! file changes. An edit that does not load is rejected with its
//! diagnostics and the previous configuration keeps serving.

use super::{ConfigError, load_files};
use crate::metrics::GatewayMetrics;
use crate::snapshot::{Current, Snapshot};
use palisade_crds::standalone::GatewaySettings;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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

/// Loads the files into `current`; returns the revision and the gateway
/// settings, or the diagnostics.
pub fn load_into(
    paths: &[PathBuf],
    current: &Current,
    metrics: &GatewayMetrics,
) -> Result<(String, GatewaySettings), ConfigError> {
    let loaded = load_files(paths)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let snapshot = Snapshot::new(loaded.compilation.bundle);
    let revision = snapshot.revision().to_owned();
    metrics.served(&revision, snapshot.loaded_at);
    current.store(Some(Arc::new(snapshot)));
    Ok((revision, loaded.config.settings))
}

/// Polls the files every `interval` and reloads on change, until the
/// task is aborted.
pub fn watch(
    paths: Vec<PathBuf>,
    current: Current,
    metrics: Arc<GatewayMetrics>,
    interval: Duration,
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
            match load_into(&paths, &current, &metrics) {
                Ok((revision, _)) => tracing::info!(revision, "configuration reloaded"),
                Err(diagnostics) => {
                    metrics.config_reload_errors.inc();
                    tracing::error!(
                        "configuration change rejected; the previous configuration keeps serving:\n{diagnostics}"
                    );
                }
            }
        }
    })
}
