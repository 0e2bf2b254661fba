//! The stable list of reason codes. Every decision carries exactly one
//! decisive code; routing decisions carry an ordered list. Codes are part of
//! the public contract (audit rows, metrics labels, HTTP bodies): never
//! rename one, only add. `docs/reason-codes.md` mirrors [`ReasonCode::ALL`]
//! and a test keeps the two in step.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a decision came out the way it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReasonCode {
    /// No policy in the agent's namespace names this agent: default deny.
    #[serde(rename = "policy.none")]
    PolicyNone,
    /// The only policy naming this agent has never compiled: deny until it does.
    #[serde(rename = "policy.invalid")]
    PolicyInvalid,
    /// The policy's `spec.suspend` kill switch is on.
    #[serde(rename = "kill_switch.policy")]
    KillSwitchPolicy,
    /// The agent's `suspended` kill switch is on.
    #[serde(rename = "kill_switch.agent")]
    KillSwitchAgent,
    /// A `Deny` rule matched the tool (explicit deny beats everything but kill switches).
    #[serde(rename = "tool.denied_by_rule")]
    ToolDeniedByRule,
    /// A CEL condition of a rule or grant that matched the tool failed to evaluate: fail closed.
    #[serde(rename = "tool.condition_error")]
    ToolConditionError,
    /// Only an expired ToolGrant would have permitted the call.
    #[serde(rename = "tool.grant_expired")]
    ToolGrantExpired,
    /// An active ToolGrant allows the call.
    #[serde(rename = "tool.allowed_by_grant")]
    ToolAllowedByGrant,
    /// An active ToolGrant permits the call after human approval.
    #[serde(rename = "tool.approval_required_by_grant")]
    ToolApprovalRequiredByGrant,
    /// An `Allow` rule of the policy matched.
    #[serde(rename = "tool.allowed_by_rule")]
    ToolAllowedByRule,
    /// A `RequireApproval` rule of the policy matched.
    #[serde(rename = "tool.approval_required_by_rule")]
    ToolApprovalRequiredByRule,
    /// No rule matched; the policy's default is `Deny`.
    #[serde(rename = "tool.default_deny")]
    ToolDefaultDeny,
    /// No rule matched; the policy's default is `Allow`.
    #[serde(rename = "tool.default_allow")]
    ToolDefaultAllow,
    /// No rule matched; the policy's default is `RequireApproval`.
    #[serde(rename = "tool.default_approval_required")]
    ToolDefaultApprovalRequired,
    /// The requested model matches none of the policy's `models.allow` globs.
    #[serde(rename = "model.not_allowed")]
    ModelNotAllowed,
    /// A routing rule matched one of its keywords in the prompt.
    #[serde(rename = "routing.keyword")]
    RoutingKeyword,
    /// A routing rule matched one of its regex patterns in the prompt.
    #[serde(rename = "routing.pattern")]
    RoutingPattern,
    /// A routing rule matched on prompt length.
    #[serde(rename = "routing.prompt_length")]
    RoutingPromptLength,
    /// A routing rule matched the requested model.
    #[serde(rename = "routing.model")]
    RoutingModel,
    /// A routing rule matched the calling agent.
    #[serde(rename = "routing.agent")]
    RoutingAgent,
    /// No routing rule matched: the policy's default provider.
    #[serde(rename = "routing.default")]
    RoutingDefault,
    /// The chosen provider failed (connect error, 5xx, timeout) and the
    /// policy's fallback provider served the request.
    #[serde(rename = "routing.fallback")]
    RoutingFallback,
}

impl ReasonCode {
    /// Every code, in documentation order.
    pub const ALL: &'static [ReasonCode] = &[
        Self::PolicyNone,
        Self::PolicyInvalid,
        Self::KillSwitchPolicy,
        Self::KillSwitchAgent,
        Self::ToolDeniedByRule,
        Self::ToolConditionError,
        Self::ToolGrantExpired,
        Self::ToolAllowedByGrant,
        Self::ToolApprovalRequiredByGrant,
        Self::ToolAllowedByRule,
        Self::ToolApprovalRequiredByRule,
        Self::ToolDefaultDeny,
        Self::ToolDefaultAllow,
        Self::ToolDefaultApprovalRequired,
        Self::ModelNotAllowed,
        Self::RoutingKeyword,
        Self::RoutingPattern,
        Self::RoutingPromptLength,
        Self::RoutingModel,
        Self::RoutingAgent,
        Self::RoutingDefault,
        Self::RoutingFallback,
    ];

    /// The wire form, e.g. `kill_switch.policy`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PolicyNone => "policy.none",
            Self::PolicyInvalid => "policy.invalid",
            Self::KillSwitchPolicy => "kill_switch.policy",
            Self::KillSwitchAgent => "kill_switch.agent",
            Self::ToolDeniedByRule => "tool.denied_by_rule",
            Self::ToolConditionError => "tool.condition_error",
            Self::ToolGrantExpired => "tool.grant_expired",
            Self::ToolAllowedByGrant => "tool.allowed_by_grant",
            Self::ToolApprovalRequiredByGrant => "tool.approval_required_by_grant",
            Self::ToolAllowedByRule => "tool.allowed_by_rule",
            Self::ToolApprovalRequiredByRule => "tool.approval_required_by_rule",
            Self::ToolDefaultDeny => "tool.default_deny",
            Self::ToolDefaultAllow => "tool.default_allow",
            Self::ToolDefaultApprovalRequired => "tool.default_approval_required",
            Self::ModelNotAllowed => "model.not_allowed",
            Self::RoutingKeyword => "routing.keyword",
            Self::RoutingPattern => "routing.pattern",
            Self::RoutingPromptLength => "routing.prompt_length",
            Self::RoutingModel => "routing.model",
            Self::RoutingAgent => "routing.agent",
            Self::RoutingDefault => "routing.default",
            Self::RoutingFallback => "routing.fallback",
        }
    }

    /// Parses the wire form.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// Kill switches, whatever their scope.
    pub const fn is_kill_switch(self) -> bool {
        matches!(self, Self::KillSwitchPolicy | Self::KillSwitchAgent)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_round_trips_through_serde_and_parse_for_every_code() {
        for code in ReasonCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ReasonCode>(&json).unwrap(), *code);
            assert_eq!(ReasonCode::parse(code.as_str()), Some(*code));
        }
    }

    #[test]
    fn codes_are_unique_and_documented() {
        let doc = include_str!("../../docs/reason-codes.md");
        let mut seen = std::collections::HashSet::new();
        for code in ReasonCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            assert!(
                doc.contains(&format!("`{}`", code.as_str())),
                "docs/reason-codes.md does not list `{code}`"
            );
        }
    }
}
