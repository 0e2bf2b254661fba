//! A held tool call, defined once: the fields that describe what an
//! approval is for ([`HeldCall`]) and a human's [`ApprovalDecision`]. The
//! `Approval` resource's spec (`palisade-crds`), the standalone approvals
//! table (`palisade-audit`) and the gateway's views all carry a
//! [`HeldCall`] instead of repeating its fields.
//!
//! The doc comments below are also the `Approval` CRD's field
//! descriptions (`kubectl explain approval.spec`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an approval is for: the call that was held, and where it came
/// from. Nothing here changes after the call is held.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldCall {
    /// The agent that asked.
    #[schemars(length(min = 1, max = 63))]
    pub agent: String,
    /// The tool it wants to run.
    #[schemars(length(min = 1, max = 253))]
    pub tool: String,
    /// What a human sees of the arguments: indented JSON, with the values
    /// of the policy's `audit.redactKeys` shown as `[REDACTED]`, at most
    /// 4096 bytes. Longer arguments are cut, ending with a line saying how
    /// much is shown, and `argumentsTruncated` is true. The approval is for
    /// the full arguments, by `argumentsDigest`, never for this text.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub arguments_preview: String,
    /// Whether `argumentsPreview` shows only the start of the arguments.
    #[serde(default)]
    pub arguments_truncated: bool,
    /// SHA-256 of the canonical JSON of the full (unredacted) arguments;
    /// the approval is valid only for a call with exactly these arguments.
    #[schemars(pattern(r"^sha256:[0-9a-f]{64}$"))]
    pub arguments_digest: String,
    /// The gateway request that was held.
    #[schemars(length(min = 1, max = 128))]
    pub request_id: String,
    /// The AIPolicy (in this namespace) whose rule or grant required approval.
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// That policy's generation at the time.
    pub policy_generation: i64,
    /// The rule or grant that required approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub rule: Option<String>,
    /// The agent's Kubernetes identity
    /// (`system:serviceaccount:NAMESPACE:NAME`), when it has one. The
    /// chart's admission policy refuses a decision made by this user: an
    /// agent never approves its own request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub requested_by: Option<String>,
}

/// A human's decision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ApprovalDecision {
    Approved,
    Denied,
}

impl ApprovalDecision {
    /// Its name, as serde writes it (the CRD's enum, the approvals table's
    /// `decision` column).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "Approved",
            Self::Denied => "Denied",
        }
    }

    /// The decision named `s` ([`Self::as_str`]), if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Approved, Self::Denied]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_named_as_serde_names_it_and_parses_back() {
        for d in [ApprovalDecision::Approved, ApprovalDecision::Denied] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
            assert_eq!(ApprovalDecision::parse(d.as_str()), Some(d));
        }
        assert_eq!(ApprovalDecision::parse("approved"), None);
    }

    #[test]
    fn the_schema_bounds_the_preview_at_the_preview_limit() {
        // maxLength counts characters, the limit bytes: never fewer.
        let schema = serde_json::to_value(schemars::schema_for!(HeldCall)).unwrap();
        let preview = &schema["properties"]["argumentsPreview"];
        assert_eq!(preview["maxLength"], crate::PREVIEW_LIMIT, "{schema}");
    }
}
