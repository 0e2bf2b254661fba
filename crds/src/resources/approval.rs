//! `Approval` (short name `appr`): a held tool call waiting for a human.
//! Created by the gateway, decided by a human with `kubectl patch`,
//! consumed once by the gateway.

use super::conditions_schema;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use palisade_policy::ArgumentsPreview;
pub use palisade_policy::{ApprovalDecision, HeldCall};

/// A tool call that needs a human's decision. Only `spec.decision` and
/// `spec.reason` are written by people, once; everything else describes the
/// request and cannot change. An approval is single-use and valid only for
/// the exact agent, tool and argument digest it was created for.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "palisade.dev",
    version = "v1alpha1",
    kind = "Approval",
    plural = "approvals",
    singular = "approval",
    shortname = "appr",
    namespaced,
    doc = r#"An Approval is a tool call held for a human decision. Approve or deny with: kubectl patch approval NAME --type=merge -p '{"spec":{"decision":"Approved","reason":"..."}}'"#,
    status = "ApprovalStatus",
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agent"}"#,
    printcolumn = r#"{"name":"Tool","type":"string","jsonPath":".spec.tool"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Decided-By","type":"string","jsonPath":".status.decidedBy"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","priority":1,"jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.expiresAt > self.requestedAt")
        .message("spec.expiresAt must be after spec.requestedAt")
        .field_path(".expiresAt"),
    validation = Rule::new("!has(oldSelf.decision) || (has(self.decision) && self.decision == oldSelf.decision)")
        .message("spec.decision is final once made; create a new request instead")
        .field_path(".decision"),
    validation = Rule::new("!has(oldSelf.decision) || (has(self.reason) == has(oldSelf.reason) && (!has(self.reason) || self.reason == oldSelf.reason))")
        .message("spec.reason cannot change once a decision is made")
        .field_path(".reason"),
    validation = Rule::new("!has(oldSelf.decidedBy) || (has(self.decidedBy) && self.decidedBy == oldSelf.decidedBy)")
        .message("spec.decidedBy is final once recorded")
        .field_path(".decidedBy"),
    validation = Rule::new("self.agent == oldSelf.agent && self.tool == oldSelf.tool && self.argumentsDigest == oldSelf.argumentsDigest && self.requestId == oldSelf.requestId && self.policy == oldSelf.policy && self.policyGeneration == oldSelf.policyGeneration && self.requestedAt == oldSelf.requestedAt && has(self.requestedBy) == has(oldSelf.requestedBy) && (!has(self.requestedBy) || self.requestedBy == oldSelf.requestedBy) && has(self.rule) == has(oldSelf.rule) && (!has(self.rule) || self.rule == oldSelf.rule) && self.expiresAt == oldSelf.expiresAt")
        .message("the request an Approval describes cannot change; only spec.decision, spec.reason and spec.decidedBy may be set"),
    validation = Rule::new("has(self.argumentsPreview) == has(oldSelf.argumentsPreview) && (!has(self.argumentsPreview) || self.argumentsPreview == oldSelf.argumentsPreview) && has(self.argumentsTruncated) == has(oldSelf.argumentsTruncated) && (!has(self.argumentsTruncated) || self.argumentsTruncated == oldSelf.argumentsTruncated) && has(self.arguments) == has(oldSelf.arguments)")
        .message("what an Approval shows of the arguments cannot change: spec.argumentsPreview and spec.argumentsTruncated are written once, by the gateway")
        .field_path(".argumentsPreview")
)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSpec {
    /// The held call (its fields are this spec's fields: `agent`, `tool`,
    /// `argumentsPreview`, `argumentsDigest`, ...).
    #[serde(flatten)]
    pub call: HeldCall,
    /// Deprecated, read only: the whole (redacted) arguments, as gateways
    /// before the bounded `argumentsPreview` wrote them. Still shown for
    /// such an Approval; never written now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "legacy_arguments")]
    pub arguments: Option<serde_json::Value>,
    /// When the gateway held the call.
    pub requested_at: Time,
    /// Deadline for a decision; afterwards the approval expires.
    pub expires_at: Time,
    /// The human's decision: `Approved` or `Denied`. Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ApprovalDecision>,
    /// Why (free text, recorded in the audit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
    /// Who decided. Stamped from the authenticated request's user by the
    /// chart's MutatingAdmissionPolicy; the ValidatingAdmissionPolicy
    /// refuses any other value. Final once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub decided_by: Option<String>,
}

/// Where an approval stands at `now`, from the human's decision, whether it
/// was consumed, and its deadline. The gateway and the operator both use
/// this, so neither waits for the other to write a phase: consumed beats
/// everything, a denial stays a denial, and an approval not used before
/// `expiresAt` has expired.
pub fn approval_phase_at(
    decision: Option<ApprovalDecision>,
    consumed: bool,
    expires_at: jiff::Timestamp,
    now: jiff::Timestamp,
) -> ApprovalPhase {
    match decision {
        _ if consumed => ApprovalPhase::Consumed,
        Some(ApprovalDecision::Denied) => ApprovalPhase::Denied,
        _ if now >= expires_at => ApprovalPhase::Expired,
        Some(ApprovalDecision::Approved) => ApprovalPhase::Approved,
        None => ApprovalPhase::Pending,
    }
}

fn legacy_arguments(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

impl ApprovalSpec {
    /// The held call as a human sees it. An Approval written before the
    /// bounded preview carries its whole (already redacted) `arguments`
    /// instead: its preview is made from them here.
    pub fn held_call(&self) -> HeldCall {
        let mut call = self.call.clone();
        if let Some(old) = self
            .arguments
            .as_ref()
            .filter(|_| call.arguments_preview.is_empty())
        {
            let preview = ArgumentsPreview::of(old, &[]);
            call.arguments_preview = preview.text;
            call.arguments_truncated = preview.truncated;
        }
        call
    }
}

impl Approval {
    /// [`approval_phase_at`] for this object.
    pub fn phase_at(&self, now: jiff::Timestamp) -> ApprovalPhase {
        let consumed = self
            .status
            .as_ref()
            .is_some_and(|s| s.consumed_at.is_some());
        approval_phase_at(self.spec.decision, consumed, self.spec.expires_at.0, now)
    }
}

impl ApprovalPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Approved => "Approved",
            Self::Denied => "Denied",
            Self::Expired => "Expired",
            Self::Consumed => "Consumed",
        }
    }
}

/// Where an approval is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApprovalPhase {
    /// Waiting for a human.
    Pending,
    /// Approved; the agent may repeat the call once.
    Approved,
    /// Denied; the call stays denied.
    Denied,
    /// No decision before `expiresAt`.
    Expired,
    /// The approved call ran; the approval cannot be used again.
    Consumed,
}

/// What the operator and the gateway record about an approval.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStatus {
    /// The generation last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending` → `Approved` / `Denied` / `Expired` → `Consumed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ApprovalPhase>,
    /// Who decided, taken from the authenticated request, never from
    /// anything the client wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When the decision was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Time>,
    /// When the approved call ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_at: Option<Time>,
    /// Which gateway replica consumed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_by: Option<String>,
    /// Standard conditions: `Approved`, `Denied`, `Expired` and
    /// `Consumed`, so `kubectl wait --for=condition=Approved` works.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The notifications sent for it (the policy's
    /// `spec.approvals.notify`), each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notified: Vec<Notification>,
}

/// A notification about an Approval.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Notification {
    /// The call was held: someone should decide.
    Requested,
    /// Still undecided, and the deadline is near.
    Expiring,
}

impl Notification {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "Requested",
            Self::Expiring => "Expiring",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_written_before_the_preview_shows_its_old_arguments_as_one() {
        let old = serde_json::json!({
            "agent": "intake", "tool": "send_email",
            "arguments": {"to": "a@b.c", "ssn": "[REDACTED]", "zz_body": "x".repeat(10_000)},
            "argumentsDigest": format!("sha256:{}", "a".repeat(64)),
            "requestId": "r-1", "policy": "clinic", "policyGeneration": 1,
            "requestedAt": "2026-01-01T00:00:00Z", "expiresAt": "2026-01-01T00:15:00Z"
        });
        let spec: ApprovalSpec = serde_json::from_value(old).unwrap();
        let call = spec.held_call();
        assert!(call.arguments_truncated);
        assert!(call.arguments_preview.len() <= palisade_policy::PREVIEW_LIMIT);
        assert!(call.arguments_preview.contains(r#""ssn": "[REDACTED]""#));
        // A new one carries its preview, and is written without `arguments`.
        let mut new = spec.clone();
        new.arguments = None;
        new.call.arguments_preview = "{}".into();
        new.call.arguments_truncated = false;
        assert_eq!(new.held_call(), new.call);
        assert!(
            serde_json::to_value(&new)
                .unwrap()
                .get("arguments")
                .is_none()
        );
    }
}
