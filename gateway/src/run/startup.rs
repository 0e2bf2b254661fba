//! Why `palisade-gateway run` did not start, and the parsers of its
//! numeric and duration flags.

use crate::config::ConfigError;
use crate::kubernetes::NotANamespace;
use palisade_audit::AuditError;
use std::time::Duration;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("--{flag}: {message}")]
    Duration { flag: &'static str, message: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{0}")]
    Telemetry(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("--watch-namespaces: {0}")]
    WatchNamespaces(#[from] NotANamespace),
    #[error("--allowed-provider-urls: {0}")]
    AllowedProviderUrls(#[from] palisade_policy::EgressPatternError),
    #[error(
        "--watch-namespaces (PALISADE_WATCH_NAMESPACES) applies only with --kubernetes; standalone, approvals live in the audit database"
    )]
    WatchNamespacesStandalone,
    #[error("cannot reach the Kubernetes API: {0}")]
    Kubernetes(#[source] kube::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "--kubernetes needs --audit-url (or PALISADE_AUDIT_URL), e.g. postgres://palisade@postgres/palisade"
    )]
    AuditUrlRequired,
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(
        "GatewaySettings spec.audit.readTokenEnv names {0}, which is not set; export it or remove readTokenEnv"
    )]
    ReadTokenUnset(String),
    #[error(
        "the console (--console, GatewaySettings spec.console.enabled) needs the auditor token its viewers log in with: set GatewaySettings spec.audit.readTokenEnv (or --audit-read-token-env) to an environment variable holding it"
    )]
    ConsoleWithoutAuditor,
    #[error(
        "GatewaySettings spec.approvals.operators[{operator}].tokenEnv names {var}, which is not set; export it or remove the operator"
    )]
    OperatorTokenUnset { operator: String, var: String },
    #[error(
        "{field} names {var}, which holds a token of {chars} characters; use at least {MIN_TOKEN_CHARS} random ones, e.g. `export {var}=$(openssl rand -hex 32)`: it opens the audit, the console or approvals, and a short one can be guessed"
    )]
    WeakToken {
        field: String,
        var: String,
        chars: usize,
    },
    #[error(transparent)]
    Tls(#[from] crate::listener::TlsError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

pub(super) fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}: a whole number")),
    }
}

pub(super) fn body_budget(text: &str) -> Result<usize, String> {
    let bytes: usize = text
        .parse()
        .map_err(|e| format!("{e}: a number of bytes"))?;
    if bytes < crate::limits::BODY_LIMIT {
        return Err(format!(
            "{bytes} is too small: at least {} (the largest request body)",
            crate::limits::BODY_LIMIT
        ));
    }
    Ok(bytes)
}

pub(super) fn duration(flag: &'static str, text: &str) -> Result<Duration, StartupError> {
    palisade_crds::duration::parse_duration(text)
        .map_err(|message| StartupError::Duration { flag, message })
}

/// The fewest characters a bearer token for people (the auditor's, an
/// operator's) may have.
pub const MIN_TOKEN_CHARS: usize = 16;

/// `token`, read from `var` for `field`, unless it is too short to resist
/// guessing.
pub(super) fn strong_token(token: String, field: &str, var: &str) -> Result<String, StartupError> {
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(StartupError::WeakToken {
            field: field.to_owned(),
            var: var.to_owned(),
            chars,
        });
    }
    Ok(token)
}
