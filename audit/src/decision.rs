//! The audit's `decision` column, written from an enum by the gateway and
//! the operator alike: a policy outcome, an upstream failure of a routed
//! chat request, or an approval outcome.

use palisade_policy::{ApprovalDecision, Outcome};

/// What the audit's `decision` column says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditDecision {
    Allow,
    Deny,
    RequireApproval,
    /// A routed chat request whose provider (and fallback) failed.
    UpstreamError,
    /// An approval outcome: a human approved or denied.
    Approved,
    Denied,
    /// An approval outcome: nobody decided in time (or an approved call
    /// was not used in time).
    Expired,
    /// An approval outcome: the approved call ran.
    Consumed,
    /// A tool Palisade ran returned its result.
    Executed,
    /// A tool Palisade ran failed, or its input was refused.
    Failed,
    /// A security alert (rows of kind `security_alert`).
    Alert,
    /// A quarantine a human lifted (rows of kind `security_alert`, reason
    /// `kill_switch.quarantine`, who in `decided_by`).
    Lifted,
}

impl AuditDecision {
    /// Its name in the `decision` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
            Self::RequireApproval => "RequireApproval",
            Self::UpstreamError => "UpstreamError",
            Self::Approved => "Approved",
            Self::Denied => "Denied",
            Self::Expired => "Expired",
            Self::Consumed => "Consumed",
            Self::Executed => "Executed",
            Self::Failed => "Failed",
            Self::Alert => "Alert",
            Self::Lifted => "Lifted",
        }
    }
}

impl From<Outcome> for AuditDecision {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Allow => Self::Allow,
            Outcome::Deny => Self::Deny,
            Outcome::RequireApproval => Self::RequireApproval,
        }
    }
}

impl From<ApprovalDecision> for AuditDecision {
    fn from(decision: ApprovalDecision) -> Self {
        match decision {
            ApprovalDecision::Approved => Self::Approved,
            ApprovalDecision::Denied => Self::Denied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_outcomes_and_human_decisions_keep_their_names_in_the_audit() {
        for o in [Outcome::Allow, Outcome::Deny, Outcome::RequireApproval] {
            assert_eq!(AuditDecision::from(o).as_str(), o.as_str());
        }
        for d in [ApprovalDecision::Approved, ApprovalDecision::Denied] {
            assert_eq!(AuditDecision::from(d).as_str(), d.as_str());
        }
    }
}
