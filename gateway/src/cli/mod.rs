//! The command line's commands other than `run` ([`crate::run`]):
//! [`audit`] (migrate, verify, query the audit database), [`approvals`]
//! (list, approve, deny held calls of a standalone gateway) and [`smoke`]
//! (check a running gateway from outside), and what they share: their
//! errors and their runtime.

pub mod approvals;
pub mod audit;
pub mod smoke;

use crate::approvals::ApprovalError;
use crate::config::ConfigError;
use crate::run::StartupError;

/// Why a command failed; printed as it reads, on one line or a few.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Audit(#[from] palisade_audit::AuditError),
    #[error(transparent)]
    Approvals(#[from] ApprovalError),
    #[error(transparent)]
    Smoke(#[from] smoke::SmokeError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(
        "say where the audit database is: --url postgres://... | sqlite://PATH, or --config FILE"
    )]
    NoAuditDatabase,
    #[error(
        "--{flag} {value:?}: write an RFC 3339 time (2026-11-22T10:00:00Z) or a duration back from now (15m, 2h)"
    )]
    NotATime { flag: &'static str, value: String },
    #[error("--{flag}: {source}")]
    TimeOutOfRange {
        flag: &'static str,
        #[source]
        source: jiff::Error,
    },
    #[error("--args is not valid JSON: {0}")]
    ArgsNotJson(#[source] serde_json::Error),
    #[error("--args must be a JSON object, e.g. '{{\"to\": \"a@b.c\"}}'")]
    ArgsNotAnObject,
    #[error("cannot print the result as JSON: {0}")]
    Print(#[source] serde_json::Error),
    #[error("no approval named {0:?}; list them with `palisade-gateway approvals list --pending`")]
    NoApprovalNamed(String),
    #[error("approvals named {0:?} exist in several namespaces; add --namespace")]
    AmbiguousApproval(String),
    #[error("--runtime-password-env names {0}, which is not set; export it or leave the flag out")]
    PasswordEnvUnset(String),
    #[error("no approval {0}")]
    NoApproval(String),
    #[error("approval {approval} was already decided ({}); a decision is final", .decision.as_str())]
    AlreadyDecided {
        approval: String,
        decision: palisade_crds::ApprovalDecision,
    },
    #[error("approval {0} expired before it was decided; the agent must ask again")]
    ExpiredUndecided(String),
}

/// The single-threaded runtime the commands run on.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}
