//! What an approval is, as the gateway records and reports it: the
//! [`Hold`] a held call records, the [`View`] of an approval (from an
//! `Approval` resource or a database row) and whether a call may use it.
//! Pure: no store is touched here.

use jiff::Timestamp;
use palisade_audit::approvals::ApprovalRow;
use palisade_crds::{Approval, ApprovalDecision, ApprovalPhase, approval_phase_at};
use palisade_policy::{ArgumentsPreview, HeldCall, ReasonCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What a held call records: the call, where, and for how long.
#[derive(Debug, Clone)]
pub struct Hold {
    pub namespace: String,
    pub call: HeldCall,
    pub ttl: Duration,
    /// The policy's `maxPendingPerAgent`.
    pub max_pending: u32,
}

impl Hold {
    /// What to record for a call by `agent` (of `policy`'s namespace) that
    /// `rule` holds: a bounded preview of the arguments as the policy lets
    /// humans see them (redacted, at most 4 KiB), the digest of the real
    /// ones, the policy's TTL, and the agent's
    /// ServiceAccount user (so admission can refuse its own decision).
    pub fn new(
        policy: &palisade_policy::Policy,
        agent: &str,
        rule: Option<String>,
        tool: &str,
        arguments: &Value,
        arguments_digest: String,
        request_id: &str,
    ) -> Self {
        let preview = ArgumentsPreview::of(arguments, &policy.audit.redact_keys);
        Self {
            namespace: policy.namespace.clone(),
            call: HeldCall {
                agent: agent.to_owned(),
                tool: tool.to_owned(),
                arguments_preview: preview.text,
                arguments_truncated: preview.truncated,
                arguments_digest,
                request_id: request_id.to_owned(),
                policy: policy.name.clone(),
                policy_generation: policy.generation,
                rule,
                requested_by: policy
                    .agent(agent)
                    .and_then(|a| a.service_account.as_deref())
                    .map(|sa| format!("system:serviceaccount:{}:{sa}", policy.namespace)),
            },
            ttl: Duration::from_secs(policy.approvals.ttl_seconds),
            max_pending: policy.approvals.max_pending_per_agent,
        }
    }

    /// [`super::Recorded::TooManyPending`] when `pending` approvals leave
    /// no room for this one.
    pub(super) fn over_limit(&self, pending: u64) -> Option<super::Recorded> {
        (pending >= u64::from(self.max_pending)).then_some(super::Recorded::TooManyPending {
            pending,
            limit: self.max_pending,
        })
    }

    /// The approval's name: the agent plus a digest of everything that
    /// identifies the request, so holding the same request twice (a client
    /// retry, another replica) finds the same approval.
    pub fn name(&self) -> String {
        let mut h = Sha256::new();
        let call = &self.call;
        for part in [
            &self.namespace,
            &call.agent,
            &call.tool,
            &call.arguments_digest,
            &call.request_id,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let agent: String = call.agent.chars().take(40).collect();
        format!("{agent}-{hex}")
    }
}

/// An approval as the gateway reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub namespace: String,
    pub name: String,
    pub call: HeldCall,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub phase: ApprovalPhase,
    pub decision: Option<ApprovalDecision>,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub consumed_by: Option<String>,
}

impl View {
    /// The JSON the HTTP API returns.
    pub fn to_json(&self) -> Value {
        let call = &self.call;
        json!({
            "name": self.name,
            "namespace": self.namespace,
            "agent": call.agent,
            "tool": call.tool,
            "argumentsPreview": call.arguments_preview,
            "argumentsTruncated": call.arguments_truncated,
            "argumentsDigest": call.arguments_digest,
            "requestId": call.request_id,
            "policy": call.policy,
            "rule": call.rule,
            "phase": self.phase.as_str(),
            "decision": self.decision.map(ApprovalDecision::as_str),
            "reason": self.reason,
            "decidedBy": self.decided_by,
            "requestedAt": self.requested_at.to_string(),
            "expiresAt": self.expires_at.to_string(),
            "poll": format!("/v1/approvals/{}", self.name),
        })
    }

    /// What an approval-outcome audit row says about it; `actor` is who
    /// decided or which replica used it.
    pub fn facts<'a>(&'a self, actor: Option<&'a str>) -> palisade_audit::ApprovalFacts<'a> {
        palisade_audit::ApprovalFacts {
            namespace: &self.namespace,
            name: &self.name,
            call: &self.call,
            actor,
        }
    }

    /// Whether a call by `agent` of `tool` with `digest` may use this
    /// approval at `now`, and if not, the reason code that says why.
    pub fn check_use(&self, agent: &str, tool: &str, digest: &str) -> Result<(), ReasonCode> {
        let call = &self.call;
        if call.agent != agent || call.tool != tool || call.arguments_digest != digest {
            return Err(ReasonCode::ApprovalMismatch);
        }
        match self.phase {
            ApprovalPhase::Approved => Ok(()),
            ApprovalPhase::Pending => Err(ReasonCode::ApprovalPending),
            ApprovalPhase::Denied => Err(ReasonCode::ApprovalDenied),
            ApprovalPhase::Expired => Err(ReasonCode::ApprovalExpired),
            ApprovalPhase::Consumed => Err(ReasonCode::ApprovalReplayRefused),
        }
    }
}

impl View {
    /// The view of an `Approval` resource at `now`.
    pub(super) fn of_resource(a: &Approval, now: Timestamp) -> Self {
        Self {
            namespace: a.metadata.namespace.clone().unwrap_or_default(),
            name: a.metadata.name.clone().unwrap_or_default(),
            call: a.spec.held_call(),
            requested_at: a.spec.requested_at.0,
            expires_at: a.spec.expires_at.0,
            phase: a.phase_at(now),
            decision: a.spec.decision,
            reason: a.spec.reason.clone(),
            decided_by: a.spec.decided_by.clone(),
            consumed_by: a.status.as_ref().and_then(|s| s.consumed_by.clone()),
        }
    }

    /// The view of a row of the standalone approvals table at `now`.
    pub fn of_row(r: ApprovalRow, now: Timestamp) -> Self {
        Self {
            phase: approval_phase_at(r.decision, r.consumed_at.is_some(), r.expires_at, now),
            namespace: r.namespace,
            name: r.name,
            call: r.call,
            requested_at: r.requested_at,
            expires_at: r.expires_at,
            decision: r.decision,
            reason: r.reason,
            decided_by: r.decided_by,
            consumed_by: r.consumed_by,
        }
    }
}
