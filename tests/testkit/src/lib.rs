//! The test kit the suites share, so a test reads as the story it checks:
//!
//! - [`cluster_with_crds`]: a real control plane with Palisade's CRDs
//!   installed and served ([`cluster`] without them, [`install_crds`] to
//!   add them later);
//! - [`Policy`]: a standalone configuration built in code —
//!   `Policy::quickstart().suspended()` — and rendered as the YAML
//!   documents the gateway and `palisade-crds` load, instead of YAML
//!   strings edited with `.replace()`;
//! - [`temp_dir`]: a fresh, unique directory per call.
//!
//! Test support: it panics on misuse instead of returning errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod policy;

pub use cluster::{cluster, cluster_with_crds, install_crds};
pub use policy::Policy;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty directory `palisade-PREFIX-...` under the system temp
/// directory, unique per process and call (left in place for whoever
/// wants to look at it after a failure).
pub fn temp_dir(prefix: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "palisade-{prefix}-{}-{n}-{nanos}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
