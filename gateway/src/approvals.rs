//! Held tool calls. When a call needs a human, the gateway records an
//! approval and answers `202`; the agent polls it and repeats the call
//! naming it; the gateway allows that call once.
//!
//! Two stores, the same rules:
//! - in a cluster, `Approval` resources in the agent's namespace, decided
//!   by a human with `kubectl patch` (RBAC and the chart's admission
//!   policies guard who may decide); consumption is a status patch carrying
//!   the `resourceVersion` read, so the API server lets exactly one replica
//!   win;
//! - standalone, the `approvals` table of the audit database, decided with
//!   `palisade-gateway approvals approve|deny` or the operator-token HTTP
//!   endpoints; consumption is a compare-and-set `UPDATE`.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use palisade_audit::approvals::{ApprovalRow, ApprovalStore};
use palisade_crds::{
    Approval, ApprovalDecision, ApprovalPhase, ApprovalSpec, ApprovalStatus, approval_phase_at,
};
use palisade_policy::ReasonCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The longest a poll may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What a held call records.
#[derive(Debug, Clone)]
pub struct Hold {
    pub namespace: String,
    pub agent: String,
    pub tool: String,
    /// The arguments as the policy lets humans see them (redacted).
    pub arguments: Value,
    pub arguments_digest: String,
    pub request_id: String,
    pub policy: String,
    pub policy_generation: i64,
    pub rule: Option<String>,
    pub requested_by: Option<String>,
    pub ttl: Duration,
}

impl Hold {
    /// What to record for a call by `agent` (of `policy`'s namespace) that
    /// `rule` holds: the arguments as the policy lets humans see them, the
    /// digest of the real ones, the policy's TTL, and the agent's
    /// ServiceAccount user (so admission can refuse its own decision).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        policy: &palisade_policy::Policy,
        agent: &str,
        rule: Option<String>,
        tool: &str,
        arguments: &Value,
        arguments_digest: String,
        request_id: &str,
    ) -> Self {
        Self {
            namespace: policy.namespace.clone(),
            agent: agent.to_owned(),
            tool: tool.to_owned(),
            arguments: palisade_policy::redact_arguments(arguments, &policy.audit.redact_keys),
            arguments_digest,
            request_id: request_id.to_owned(),
            policy: policy.name.clone(),
            policy_generation: policy.generation,
            rule,
            requested_by: policy
                .agent(agent)
                .and_then(|a| a.service_account.as_deref())
                .map(|sa| format!("system:serviceaccount:{}:{sa}", policy.namespace)),
            ttl: Duration::from_secs(policy.approvals.ttl_seconds),
        }
    }

    /// The approval's name: the agent plus a digest of everything that
    /// identifies the request, so holding the same request twice (a client
    /// retry, another replica) finds the same approval.
    pub fn name(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            &self.namespace,
            &self.agent,
            &self.tool,
            &self.arguments_digest,
            &self.request_id,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let agent: String = self.agent.chars().take(40).collect();
        format!("{agent}-{hex}")
    }
}

/// An approval as the gateway reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub namespace: String,
    pub name: String,
    pub agent: String,
    pub tool: String,
    pub arguments: Value,
    pub arguments_digest: String,
    pub request_id: String,
    pub policy: String,
    pub rule: Option<String>,
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
        json!({
            "name": self.name,
            "namespace": self.namespace,
            "agent": self.agent,
            "tool": self.tool,
            "arguments": self.arguments,
            "argumentsDigest": self.arguments_digest,
            "requestId": self.request_id,
            "policy": self.policy,
            "rule": self.rule,
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
            agent: &self.agent,
            tool: &self.tool,
            arguments_digest: &self.arguments_digest,
            request_id: &self.request_id,
            policy: &self.policy,
            rule: self.rule.as_deref(),
            actor,
        }
    }

    /// Whether a call by `agent` of `tool` with `digest` may use this
    /// approval at `now`, and if not, the reason code that says why.
    pub fn check_use(&self, agent: &str, tool: &str, digest: &str) -> Result<(), ReasonCode> {
        if self.agent != agent || self.tool != tool || self.arguments_digest != digest {
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

fn from_resource(a: &Approval, now: Timestamp) -> View {
    View {
        namespace: a.metadata.namespace.clone().unwrap_or_default(),
        name: a.metadata.name.clone().unwrap_or_default(),
        agent: a.spec.agent.clone(),
        tool: a.spec.tool.clone(),
        arguments: a.spec.arguments.clone(),
        arguments_digest: a.spec.arguments_digest.clone(),
        request_id: a.spec.request_id.clone(),
        policy: a.spec.policy.clone(),
        rule: a.spec.rule.clone(),
        requested_at: a.spec.requested_at.0,
        expires_at: a.spec.expires_at.0,
        phase: a.phase_at(now),
        decision: a.spec.decision,
        reason: a.spec.reason.clone(),
        decided_by: a.spec.decided_by.clone(),
        consumed_by: a.status.as_ref().and_then(|s| s.consumed_by.clone()),
    }
}

pub fn view_of_row(r: ApprovalRow, now: Timestamp) -> View {
    let decision = r.decision.as_deref().and_then(ApprovalDecision::parse);
    View {
        phase: approval_phase_at(decision, r.consumed_at.is_some(), r.expires_at, now),
        namespace: r.namespace,
        name: r.name,
        agent: r.agent,
        tool: r.tool,
        arguments: r.arguments,
        arguments_digest: r.arguments_digest,
        request_id: r.request_id,
        policy: r.policy,
        rule: r.rule,
        requested_at: r.requested_at,
        expires_at: r.expires_at,
        decision,
        reason: r.reason,
        decided_by: r.decided_by,
        consumed_by: r.consumed_by,
    }
}

/// Whether this caller's consumption won.
#[derive(Debug, Clone, PartialEq)]
pub enum Consumed {
    /// This call used the approval; nobody else can.
    Won(View),
    /// Someone else used it first, or it changed; the view says how.
    Lost(View),
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("approvals (Kubernetes API): {0}")]
    Kube(#[from] kube::Error),
    #[error("approvals (database): {0}")]
    Database(#[from] palisade_audit::AuditError),
}

/// Where approvals live.
#[derive(Clone)]
pub enum Approvals {
    /// `Approval` resources, through the Kubernetes API.
    Cluster {
        client: kube::Client,
        instance: std::sync::Arc<str>,
    },
    /// The audit database's `approvals` table.
    Local {
        store: ApprovalStore,
        instance: std::sync::Arc<str>,
    },
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cluster { instance, .. } => write!(f, "Approvals::Cluster({instance})"),
            Self::Local { instance, .. } => write!(f, "Approvals::Local({instance})"),
        }
    }
}

const CONSUMER_MANAGER: &str = "palisade-gateway";

impl Approvals {
    /// Records a held call, or finds the one already recorded for it.
    pub async fn hold(&self, hold: &Hold, now: Timestamp) -> Result<View, ApprovalError> {
        let name = hold.name();
        let expires = now
            .checked_add(
                jiff::SignedDuration::try_from(hold.ttl)
                    .unwrap_or(jiff::SignedDuration::from_secs(900)),
            )
            .unwrap_or(now);
        match self {
            Self::Cluster { client, .. } => {
                let api: Api<Approval> = Api::namespaced(client.clone(), &hold.namespace);
                let object = Approval {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(
                            [
                                (
                                    "app.kubernetes.io/part-of".to_owned(),
                                    "palisade".to_owned(),
                                ),
                                ("palisade.dev/agent".to_owned(), hold.agent.clone()),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    spec: ApprovalSpec {
                        agent: hold.agent.clone(),
                        tool: hold.tool.clone(),
                        arguments: hold.arguments.clone(),
                        arguments_digest: hold.arguments_digest.clone(),
                        request_id: hold.request_id.clone(),
                        policy: hold.policy.clone(),
                        policy_generation: hold.policy_generation,
                        rule: hold.rule.clone(),
                        requested_by: hold.requested_by.clone(),
                        requested_at: Time(now),
                        expires_at: Time(expires),
                        decision: None,
                        reason: None,
                        decided_by: None,
                    },
                    status: None,
                };
                match api.create(&PostParams::default(), &object).await {
                    Ok(created) => Ok(from_resource(&created, now)),
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        Ok(from_resource(&api.get(&name).await?, now))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Self::Local { store, .. } => {
                let row = ApprovalRow {
                    namespace: hold.namespace.clone(),
                    name,
                    agent: hold.agent.clone(),
                    tool: hold.tool.clone(),
                    arguments: hold.arguments.clone(),
                    arguments_digest: hold.arguments_digest.clone(),
                    request_id: hold.request_id.clone(),
                    policy: hold.policy.clone(),
                    policy_generation: hold.policy_generation,
                    rule: hold.rule.clone(),
                    requested_by: hold.requested_by.clone(),
                    requested_at: now,
                    expires_at: expires,
                    decision: None,
                    reason: None,
                    decided_by: None,
                    decided_at: None,
                    consumed_at: None,
                    consumed_by: None,
                };
                Ok(view_of_row(store.create(&row).await?, now))
            }
        }
    }

    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<View>, ApprovalError> {
        let now = Timestamp::now();
        match self {
            Self::Cluster { client, .. } => {
                let api: Api<Approval> = Api::namespaced(client.clone(), namespace);
                Ok(api.get_opt(name).await?.map(|a| from_resource(&a, now)))
            }
            Self::Local { store, .. } => Ok(store
                .get(namespace, name)
                .await?
                .map(|r| view_of_row(r, now))),
        }
    }

    /// Waits up to `wait` for the approval to leave `Pending` (or to be
    /// deleted), then returns it as it stands.
    pub async fn wait(
        &self,
        namespace: &str,
        name: &str,
        wait: Duration,
    ) -> Result<Option<View>, ApprovalError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let first = self.get(namespace, name).await?;
        if !first
            .as_ref()
            .is_some_and(|v| v.phase == ApprovalPhase::Pending)
            || wait.is_zero()
        {
            return Ok(first);
        }
        let expires = first.as_ref().map(|v| v.expires_at);
        match self {
            Self::Cluster { client, .. } => {
                // A watch on this one object: answers the moment a human
                // decides, without polling the API server.
                let api: Api<Approval> = Api::namespaced(client.clone(), namespace);
                let until_expiry = expires
                    .and_then(|e| e.duration_since(Timestamp::now()).try_into().ok())
                    .unwrap_or(Duration::ZERO);
                let decided =
                    kube::runtime::wait::await_condition(api, name, |a: Option<&Approval>| {
                        a.is_none_or(|a| a.phase_at(Timestamp::now()) != ApprovalPhase::Pending)
                    });
                let limit = tokio::time::Instant::now() + until_expiry;
                let _ = tokio::time::timeout_at(deadline.min(limit), decided).await;
            }
            Self::Local { .. } => loop {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    break;
                }
                tokio::time::sleep((deadline - now).min(Duration::from_millis(100))).await;
                let v = self.get(namespace, name).await?;
                if !v
                    .as_ref()
                    .is_some_and(|v| v.phase == ApprovalPhase::Pending)
                {
                    return Ok(v);
                }
            },
        }
        self.get(namespace, name).await
    }

    /// Uses an approval the caller has checked ([`View::check_use`]). Only
    /// one caller, on any replica, ever wins.
    pub async fn consume(&self, view: &View) -> Result<Consumed, ApprovalError> {
        let now = Timestamp::now();
        match self {
            Self::Cluster { client, instance } => {
                let api: Api<Approval> = Api::namespaced(client.clone(), &view.namespace);
                let current = api.get(&view.name).await?;
                if from_resource(&current, now).phase != ApprovalPhase::Approved {
                    return Ok(Consumed::Lost(from_resource(&current, now)));
                }
                let mut status = current.status.clone().unwrap_or_default();
                status.phase = Some(ApprovalPhase::Consumed);
                status.consumed_at = Some(Time(now));
                status.consumed_by = Some(instance.to_string());
                // The resourceVersion makes this a compare-and-set: if any
                // other writer got in between, the API server says 409.
                let patch = json!({
                    "metadata": {"resourceVersion": current.metadata.resource_version},
                    "status": status_json(&status),
                });
                match api
                    .patch_status(
                        &view.name,
                        &PatchParams {
                            field_manager: Some(CONSUMER_MANAGER.into()),
                            ..Default::default()
                        },
                        &Patch::Merge(patch),
                    )
                    .await
                {
                    Ok(done) => Ok(Consumed::Won(from_resource(&done, now))),
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        // Someone wrote first. If it is still approved and
                        // unconsumed (the operator recorded a phase), try
                        // again; otherwise report what it became.
                        let again = api.get(&view.name).await?;
                        let v = from_resource(&again, now);
                        if v.phase == ApprovalPhase::Approved {
                            Box::pin(self.consume(&v)).await
                        } else {
                            Ok(Consumed::Lost(v))
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Self::Local { store, instance } => {
                let won = store
                    .consume(&view.namespace, &view.name, instance, now)
                    .await?;
                let v = self
                    .get(&view.namespace, &view.name)
                    .await?
                    .unwrap_or_else(|| view.clone());
                Ok(if won {
                    Consumed::Won(v)
                } else {
                    Consumed::Lost(v)
                })
            }
        }
    }
}

fn status_json(status: &ApprovalStatus) -> Value {
    serde_json::to_value(status).unwrap_or(Value::Null)
}

/// Records a standalone human decision (once, before expiry) and audits
/// it, returning once the audit row is durable: shared by the HTTP
/// endpoint and the `approvals` CLI.
pub async fn decide_and_audit(
    store: &ApprovalStore,
    audit: &palisade_audit::AuditWriter,
    namespace: &str,
    name: &str,
    decision: &str,
    reason: Option<&str>,
    decided_by: &str,
) -> Result<Result<View, palisade_audit::approvals::DecideRefused>, ApprovalError> {
    let now = Timestamp::now();
    let row = match store
        .decide(namespace, name, decision, reason, decided_by, now)
        .await?
    {
        Ok(row) => row,
        Err(refused) => return Ok(Err(refused)),
    };
    let view = view_of_row(row, now);
    let code = if decision == "Approved" {
        ReasonCode::ApprovalApproved
    } else {
        ReasonCode::ApprovalDenied
    };
    // Durable before the caller is told: a decision confirmed to a human
    // is in the audit.
    audit
        .record_durable(palisade_audit::AuditEvent::approval_outcome(
            &view.facts(Some(decided_by)),
            decision,
            code.as_str(),
        ))
        .await?;
    Ok(Ok(view))
}
