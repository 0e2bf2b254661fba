//! The `GatewaySettings` document of a standalone configuration: how a
//! standalone gateway listens, audits, takes secrets from the environment
//! and lets operators decide approvals.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `GatewaySettings` document: how a standalone gateway runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySettings {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Namespace for documents that name none.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Where decisions are audited.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Secret values taken from the environment, so files hold no keys.
    #[serde(default)]
    pub secrets: Vec<EnvSecret>,
    /// Who may decide held tool calls over HTTP.
    #[serde(default)]
    pub approvals: ApprovalSettings,
    /// The web console at `/console`.
    #[serde(default)]
    pub console: ConsoleSettings,
}

/// The web console (`/console`): off unless enabled. Its viewers log in
/// with the auditor token (`spec.audit.readTokenEnv`, required) or an
/// operator token (`spec.approvals.operators`, who may also decide
/// approvals on it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsoleSettings {
    #[serde(default)]
    pub enabled: bool,
}

/// Approvals of a standalone gateway (kept in the audit database).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSettings {
    /// People who may list, approve and deny over HTTP
    /// (`/v1/approvals...`), each with a bearer token read from an
    /// environment variable. Empty: decide with the `approvals` CLI only.
    #[serde(default)]
    pub operators: Vec<OperatorToken>,
}

/// One person who may decide approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorToken {
    /// Recorded as `operator:NAME` in `decidedBy` and the audit.
    pub name: String,
    /// The environment variable holding this person's token.
    pub token_env: String,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_namespace() -> String {
    "default".into()
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            namespace: default_namespace(),
            audit: AuditSettings::default(),
            secrets: Vec::new(),
            approvals: ApprovalSettings::default(),
            console: ConsoleSettings::default(),
        }
    }
}

/// Audit destination of a standalone gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditSettings {
    /// `sqlite://PATH` or `postgres://...`; default: an SQLite file next to
    /// the first configuration file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `Spool` (default): keep events in a durable local spool while the
    /// database is unreachable. `FailClosed`: refuse requests instead.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Name of an environment variable holding the bearer token that may
    /// read the audit over HTTP (`GET /v1/audit/events`). Unset: the
    /// endpoint is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token_env: Option<String>,
}

/// What to do while the audit database is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureMode {
    #[default]
    Spool,
    FailClosed,
}

/// A Secret whose keys come from environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSecret {
    pub name: String,
    /// Defaults to `spec.namespace` of the settings.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Secret key → environment variable name.
    pub from_env: BTreeMap<String, String>,
}

/// A `GatewaySettings` document as written (only `spec` is used).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SettingsDocument {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<serde_yaml::Value>,
    #[serde(default)]
    pub(super) spec: GatewaySettings,
}
