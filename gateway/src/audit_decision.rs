//! The audit's `decision` column, written from an enum: a policy outcome,
//! an upstream failure of a routed chat request, or an approval outcome.

use palisade_audit::AuditEvent;
use palisade_crds::ApprovalDecision;
use palisade_policy::Outcome;

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
    /// An approval outcome: nobody decided in time.
    Expired,
    /// An approval outcome: the approved call ran.
    Consumed,
}

impl AuditDecision {
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

/// Sets an audit row's `decision`.
pub fn set_decision(event: &mut AuditEvent, decision: AuditDecision) {
    event.decision = decision.as_str().to_owned();
}
