//! What the operator is told (`OperatorConfig`, filled from the command
//! line in `main.rs`), the field manager of its writes, and the error
//! that stops it.

use palisade_crds::bundle_secret::{DEFAULT_POLICY_BUDGET, DEFAULT_SECRET_NAME};
use std::sync::Arc;
use std::time::Duration;

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
    /// Where AIPolicies, ToolGrants and Approvals are read: these
    /// namespaces only, or every namespace when empty (the default).
    pub watch_namespaces: Vec<String>,
    /// Which provider base URLs policies may use, and whether credentials
    /// may go over plain `http://` (`--allowed-provider-urls`,
    /// `--allow-plaintext-credentials`).
    pub egress: palisade_policy::Egress,
    /// The bytes one compiled policy may take in the bundle: a policy over
    /// it is refused on its own, and the rest of the bundle is written.
    pub policy_size_budget: usize,
}

impl OperatorConfig {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            secret_name: DEFAULT_SECRET_NAME.into(),
            resync: Duration::from_secs(60),
            debounce: Duration::from_millis(20),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER.into()),
            metrics: Arc::new(
                crate::metrics::OperatorMetrics::new().unwrap_or_else(|_| unreachable_metrics()),
            ),
            audit: None,
            approval_retention: Duration::from_secs(24 * 3600),
            watch_namespaces: Vec::new(),
            egress: palisade_policy::Egress::default(),
            policy_size_budget: DEFAULT_POLICY_BUDGET,
        }
    }
}

/// The metric names are constants: building them cannot fail.
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
    /// A pass panicked (a bug); it is retried, the process keeps running.
    #[error("the pass panicked: {0}")]
    Panic(String),
}

impl Error {
    /// The `kind` it is counted under in
    /// `palisade_operator_reconcile_errors_total`.
    pub fn metric_kind(&self) -> &'static str {
        match self {
            Self::Panic(_) => "panic",
            Self::CrdsMissing(_) | Self::Kube(_) => "kubernetes_api",
        }
    }
}
