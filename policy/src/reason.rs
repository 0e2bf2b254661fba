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
    /// The agent is quarantined: a security alert its policy's
    /// `spec.security.quarantineOn` names suspended it, until a human
    /// lifts it.
    #[serde(rename = "kill_switch.quarantine")]
    KillSwitchQuarantine,
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
    /// `spec.routing.cloud: AllowRulesOnly` and no rule sent the request
    /// to a cloud provider: it stays on the (local) default provider.
    #[serde(rename = "routing.cloud_not_allowed")]
    RoutingCloudNotAllowed,
    /// The chosen provider failed (connect error, 5xx, timeout) and the
    /// policy's fallback provider served the request.
    #[serde(rename = "routing.fallback")]
    RoutingFallback,
    /// A human approved exactly this call (same agent, tool and argument digest) and the approval was consumed by it: allowed once.
    #[serde(rename = "tool.allowed_by_approval")]
    ToolAllowedByApproval,
    /// The call needs a human's approval, which is still pending (or was just requested).
    #[serde(rename = "approval.pending")]
    ApprovalPending,
    /// A human approved the held call (audited when the decision is recorded).
    #[serde(rename = "approval.approved")]
    ApprovalApproved,
    /// A human denied the held call; retrying with that approval stays refused.
    #[serde(rename = "approval.denied")]
    ApprovalDenied,
    /// The approval's `expiresAt` passed before it was decided or used.
    #[serde(rename = "approval.expired")]
    ApprovalExpired,
    /// The approved call ran; the approval is now used up (audited once, when consumed).
    #[serde(rename = "approval.consumed")]
    ApprovalConsumed,
    /// The approval was already consumed; a second use is refused, on every gateway replica.
    #[serde(rename = "approval.replay_refused")]
    ApprovalReplayRefused,
    /// The approval was made for a different agent, tool or argument digest than the call naming it.
    #[serde(rename = "approval.mismatch")]
    ApprovalMismatch,
    /// The call names an approval that does not exist in the agent's namespace.
    #[serde(rename = "approval.not_found")]
    ApprovalNotFound,
    /// The tool call's arguments are not a JSON object (a string, an array, `null`, or text that is not JSON, such as `NaN`): never evaluated as `{}`, refused in every mode.
    #[serde(rename = "tool.arguments_invalid")]
    ToolArgumentsInvalid,
    /// The tool's name is longer than [`crate::MAX_TOOL_NAME_BYTES`]: refused in every mode.
    #[serde(rename = "tool.name_too_long")]
    ToolNameTooLong,
    /// The call needs approval, but its agent already has as many approvals pending as its policy allows (`spec.approvals.maxPendingPerAgent`): no new one is recorded (HTTP 429).
    #[serde(rename = "limit.pending_approvals")]
    LimitPendingApprovals,
    /// The request would exceed its requests-per-minute limit (`spec.limits`, for the agent or the whole policy): refused with HTTP 429 and `Retry-After` until the next minute.
    #[serde(rename = "limit.requests_per_minute")]
    LimitRequestsPerMinute,
    /// The tokens used this minute have reached the tokens-per-minute limit (`spec.limits`): refused with HTTP 429 and `Retry-After` until the next minute.
    #[serde(rename = "limit.tokens_per_minute")]
    LimitTokensPerMinute,
    /// The tokens used today (UTC) have reached the tokens-per-day limit (`spec.limits`): refused with HTTP 429 and `Retry-After` until midnight UTC.
    #[serde(rename = "limit.tokens_per_day")]
    LimitTokensPerDay,
    /// The agent (or policy) already has as many streamed answers open as `spec.limits` allows: refused with HTTP 429 and `Retry-After: 1`.
    #[serde(rename = "limit.concurrent_streams")]
    LimitConcurrentStreams,
    /// Palisade ran the allowed call itself (`spec.tools.run`) and returned its result.
    #[serde(rename = "tool.executed")]
    ToolExecuted,
    /// Palisade ran the call and the tool failed: the HTTP tool answered an error status or could not be reached, the database or file system reported an error.
    #[serde(rename = "tool.execution_failed")]
    ToolExecutionFailed,
    /// The arguments do not fit the tool Palisade runs: a database or root it does not have, a missing `query`, `path` or `content`.
    #[serde(rename = "tool.input_invalid")]
    ToolInputInvalid,
    /// A file path was refused before anything was opened or while resolving it: absolute, `..`, a symbolic link, a file with several hard links, NUL, too long, or no glob of the root matches.
    #[serde(rename = "tool.path_refused")]
    ToolPathRefused,
    /// The database engine refused the query: a write, `ATTACH`, a `PRAGMA` change, loading an extension, or more than one statement.
    #[serde(rename = "tool.query_refused")]
    ToolQueryRefused,
    /// The tool ran longer than its timeout and was stopped.
    #[serde(rename = "tool.timeout")]
    ToolTimeout,
    /// The file, content or response is larger than the tool's size cap.
    #[serde(rename = "tool.too_large")]
    ToolTooLarge,
}

impl ReasonCode {
    /// Every code, in documentation order.
    pub const ALL: &'static [ReasonCode] = &[
        Self::PolicyNone,
        Self::PolicyInvalid,
        Self::KillSwitchPolicy,
        Self::KillSwitchAgent,
        Self::KillSwitchQuarantine,
        Self::ToolDeniedByRule,
        Self::ToolArgumentsInvalid,
        Self::ToolNameTooLong,
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
        Self::RoutingCloudNotAllowed,
        Self::RoutingFallback,
        Self::ToolAllowedByApproval,
        Self::ApprovalPending,
        Self::ApprovalApproved,
        Self::ApprovalDenied,
        Self::ApprovalExpired,
        Self::ApprovalConsumed,
        Self::ApprovalReplayRefused,
        Self::ApprovalMismatch,
        Self::ApprovalNotFound,
        Self::LimitPendingApprovals,
        Self::LimitRequestsPerMinute,
        Self::LimitTokensPerMinute,
        Self::LimitTokensPerDay,
        Self::LimitConcurrentStreams,
        Self::ToolExecuted,
        Self::ToolExecutionFailed,
        Self::ToolInputInvalid,
        Self::ToolPathRefused,
        Self::ToolQueryRefused,
        Self::ToolTimeout,
        Self::ToolTooLarge,
    ];

    /// The wire form, e.g. `kill_switch.policy`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PolicyNone => "policy.none",
            Self::PolicyInvalid => "policy.invalid",
            Self::KillSwitchPolicy => "kill_switch.policy",
            Self::KillSwitchAgent => "kill_switch.agent",
            Self::KillSwitchQuarantine => "kill_switch.quarantine",
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
            Self::RoutingCloudNotAllowed => "routing.cloud_not_allowed",
            Self::RoutingFallback => "routing.fallback",
            Self::ToolAllowedByApproval => "tool.allowed_by_approval",
            Self::ApprovalPending => "approval.pending",
            Self::ApprovalApproved => "approval.approved",
            Self::ApprovalDenied => "approval.denied",
            Self::ApprovalExpired => "approval.expired",
            Self::ApprovalConsumed => "approval.consumed",
            Self::ApprovalReplayRefused => "approval.replay_refused",
            Self::ApprovalMismatch => "approval.mismatch",
            Self::ApprovalNotFound => "approval.not_found",
            Self::ToolArgumentsInvalid => "tool.arguments_invalid",
            Self::ToolNameTooLong => "tool.name_too_long",
            Self::LimitPendingApprovals => "limit.pending_approvals",
            Self::LimitRequestsPerMinute => "limit.requests_per_minute",
            Self::LimitTokensPerMinute => "limit.tokens_per_minute",
            Self::LimitTokensPerDay => "limit.tokens_per_day",
            Self::LimitConcurrentStreams => "limit.concurrent_streams",
            Self::ToolExecuted => "tool.executed",
            Self::ToolExecutionFailed => "tool.execution_failed",
            Self::ToolInputInvalid => "tool.input_invalid",
            Self::ToolPathRefused => "tool.path_refused",
            Self::ToolQueryRefused => "tool.query_refused",
            Self::ToolTimeout => "tool.timeout",
            Self::ToolTooLarge => "tool.too_large",
        }
    }

    /// Parses the wire form.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// Kill switches, whatever their scope.
    pub const fn is_kill_switch(self) -> bool {
        matches!(
            self,
            Self::KillSwitchPolicy | Self::KillSwitchAgent | Self::KillSwitchQuarantine
        )
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
