//! `spec.security`: the thresholds of the security alerts the gateways
//! raise over each agent's decisions. Every field has a default; an
//! AIPolicy without `spec.security` gets all of them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.security`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// Alerts over the agents' decisions: each one an audit row
    /// (decision `Alert`, reason `alert.<kind>`), a count in
    /// `palisade_security_alerts_total{kind}`, an Event on this policy,
    /// and a line of `GET /v1/security/alerts`.
    #[serde(default)]
    pub alerts: AlertsSpec,
    /// Alerts that quarantine the agent: the gateway that raises one
    /// suspends it (reason code `kill_switch.quarantine`) by annotating
    /// this policy `palisade.dev/quarantine.<agent>`, shown in
    /// `status.quarantined`; a human lifts it by removing the annotation.
    /// Default: none (alerts only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6))]
    pub quarantine_on: Vec<AlertKindName>,
}

/// A security alert's kind.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKindName {
    PathTraversal,
    SqlInjection,
    DenialBurst,
    RepeatedHeldCall,
    NewTool,
    TokenJump,
}

/// `spec.security.alerts`: each left out takes its default.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertsSpec {
    /// Raise alerts at all (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Look for path traversal and SQL-injection shapes in tool arguments
    /// (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argument_shapes: Option<bool>,
    /// Denials of one agent within `window` (default 10 in 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_burst: Option<BurstSpec>,
    /// The same held call (tool and arguments) within `window` (default 3
    /// in 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated_held_call: Option<BurstSpec>,
    /// How many decisions an agent makes before a tool it has not called
    /// yet raises `new_tool` (default 50; 0: never). Each gateway replica
    /// learns from the decisions it makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100000))]
    pub new_tool_after: Option<u32>,
    /// A request with `factor` times the agent's average tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_jump: Option<TokenJumpSpec>,
    /// The same alert for the same agent at most once in this long
    /// (default 1m); the others are counted only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub cooldown: Option<String>,
}

/// `count` within `window`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BurstSpec {
    #[schemars(range(min = 1, max = 100000))]
    pub count: u32,
    /// e.g. `1m`.
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub window: String,
}

/// `spec.security.alerts.tokenJump`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenJumpSpec {
    /// How many times the agent's average (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 1000))]
    pub factor: Option<u32>,
    /// Requests the agent makes before its average counts (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
    /// Tokens below which no request is a jump (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u64>,
}
