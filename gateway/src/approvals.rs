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
//!
//! In a cluster every request is namespaced (one Approval, by name, in the
//! agent's namespace); nothing is listed or watched cluster-wide. Long-polls
//! share one watch per namespace ([`watches`]). With
//! `--watch-namespaces`, an Approval outside those namespaces is neither
//! created nor read: [`ApprovalError::NamespaceNotWatched`] (`403`), before
//! any request is made.

mod record;
mod watches;

pub use record::{Hold, View};
use watches::{Seen, Watches};

use crate::kubernetes::WatchNamespaces;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use palisade_audit::AuditDecision;
use palisade_audit::approvals::{ApprovalRow, ApprovalStore};
use palisade_crds::{
    Approval, ApprovalDecision, ApprovalPhase, ApprovalSpec, ApprovalStatus, labels,
};
use palisade_policy::ReasonCode;
use serde_json::{Value, json};
use std::time::Duration;

/// The longest a poll may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What holding a call came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// Recorded now, or found recorded already (a retry of the same call).
    Held(Box<View>),
    /// Not recorded: the agent already has `pending` approvals waiting,
    /// as many as its policy allows (`limit`).
    TooManyPending { pending: u64, limit: u32 },
}

/// The label that names an Approval's agent (selects an agent's approvals).
const AGENT_LABEL: &str = "palisade.dev/agent";

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
    /// The namespace is outside `--watch-namespaces`: refused without
    /// asking the API server.
    #[error("approvals in namespace {0:?} are not handled by this gateway (--watch-namespaces)")]
    NamespaceNotWatched(String),
    /// The API server refused to store another Approval: the namespace's
    /// ResourceQuota on them is used up (its message says which).
    #[error(
        "no approval can be recorded now: {0}; wait for pending ones to be decided or to expire, or ask the cluster admin to raise the quota"
    )]
    QuotaExceeded(String),
}

/// Where approvals live.
#[derive(Clone)]
pub enum Approvals {
    /// `Approval` resources, through the Kubernetes API.
    Cluster {
        client: kube::Client,
        instance: std::sync::Arc<str>,
        /// Where Approvals may be created and read (empty: everywhere).
        namespaces: WatchNamespaces,
        /// The watches long-polls share.
        watches: Watches,
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

impl Approvals {
    /// In a cluster: `Approval` resources in `namespaces` (empty: any),
    /// consumed as `instance` (in `consumedBy`).
    pub fn cluster(
        client: kube::Client,
        instance: impl Into<std::sync::Arc<str>>,
        namespaces: WatchNamespaces,
    ) -> Self {
        Self::Cluster {
            watches: Watches::new(client.clone()),
            client,
            instance: instance.into(),
            namespaces,
        }
    }

    /// Standalone: the audit database's `approvals` table, used by this
    /// process (`instance` in `consumedBy`).
    pub fn local(store: palisade_audit::Store, instance: impl Into<std::sync::Arc<str>>) -> Self {
        Self::Local {
            store: ApprovalStore::new(store),
            instance: instance.into(),
        }
    }
}

const CONSUMER_MANAGER: &str = "palisade-gateway";

/// The Approvals of `namespace`, if this gateway handles it: every cluster
/// request goes through here.
fn namespaced(
    client: &kube::Client,
    namespaces: &WatchNamespaces,
    namespace: &str,
) -> Result<Api<Approval>, ApprovalError> {
    if !namespaces.contains(namespace) {
        return Err(ApprovalError::NamespaceNotWatched(namespace.to_owned()));
    }
    Ok(Api::namespaced(client.clone(), namespace))
}

impl Approvals {
    /// Records a held call, or finds the one already recorded for it; a
    /// new one only while the agent has fewer than its policy's
    /// `maxPendingPerAgent` approvals pending (counted across replicas: a
    /// few holds racing on several replicas may each see room for one
    /// more; the chart's ResourceQuota bounds the namespace regardless).
    pub async fn hold(&self, hold: &Hold, now: Timestamp) -> Result<Recorded, ApprovalError> {
        let name = hold.name();
        let expires = now
            .checked_add(
                jiff::SignedDuration::try_from(hold.ttl)
                    .unwrap_or(jiff::SignedDuration::from_secs(900)),
            )
            .unwrap_or(now);
        match self {
            Self::Cluster {
                client, namespaces, ..
            } => {
                let api = namespaced(client, namespaces, &hold.namespace)?;
                // The agent's approvals: this call's, if held already, and
                // how many wait.
                let mine = api
                    .list(
                        &ListParams::default()
                            .labels(&format!("{AGENT_LABEL}={}", hold.call.agent)),
                    )
                    .await?;
                if let Some(held) = mine
                    .items
                    .iter()
                    .find(|a| a.metadata.name.as_deref() == Some(name.as_str()))
                {
                    return Ok(Recorded::Held(Box::new(View::of_resource(held, now))));
                }
                let pending = mine
                    .items
                    .iter()
                    .filter(|a| a.phase_at(now) == ApprovalPhase::Pending)
                    .count() as u64;
                if let Some(full) = hold.over_limit(pending) {
                    return Ok(full);
                }
                let object = Approval {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(
                            [
                                (labels::PART_OF.to_owned(), labels::PALISADE.to_owned()),
                                (AGENT_LABEL.to_owned(), hold.call.agent.clone()),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    },
                    spec: ApprovalSpec {
                        call: hold.call.clone(),
                        arguments: None,
                        requested_at: Time(now),
                        expires_at: Time(expires),
                        decision: None,
                        reason: None,
                        decided_by: None,
                    },
                    status: None,
                };
                let created = match api.create(&PostParams::default(), &object).await {
                    Ok(created) => created,
                    Err(kube::Error::Api(e)) if e.code == 409 => api.get(&name).await?,
                    Err(kube::Error::Api(e))
                        if e.code == 403 && e.message.contains("exceeded quota") =>
                    {
                        return Err(ApprovalError::QuotaExceeded(e.message));
                    }
                    Err(e) => return Err(e.into()),
                };
                Ok(Recorded::Held(Box::new(View::of_resource(&created, now))))
            }
            Self::Local { store, .. } => {
                if let Some(held) = store.get(&hold.namespace, &name).await? {
                    return Ok(Recorded::Held(Box::new(View::of_row(held, now))));
                }
                let pending = store
                    .count_pending(&hold.namespace, &hold.call.agent, now)
                    .await?;
                if let Some(full) = hold.over_limit(pending) {
                    return Ok(full);
                }
                let row = ApprovalRow::held(
                    hold.namespace.clone(),
                    name,
                    hold.call.clone(),
                    now,
                    expires,
                );
                Ok(Recorded::Held(Box::new(View::of_row(
                    store.create(&row).await?,
                    now,
                ))))
            }
        }
    }

    /// Every approval waiting for a decision at `now` (at most 500), for
    /// the console.
    pub async fn pending(&self, now: Timestamp) -> Result<Vec<View>, ApprovalError> {
        match self {
            Self::Cluster {
                client, namespaces, ..
            } => {
                let apis: Vec<Api<Approval>> = if namespaces.is_all() {
                    vec![Api::all(client.clone())]
                } else {
                    let names = namespaces.names().iter();
                    names
                        .map(|ns| Api::namespaced(client.clone(), ns))
                        .collect()
                };
                let mut pending = Vec::new();
                for api in apis {
                    let list = api.list(&ListParams::default().limit(500)).await?;
                    pending.extend(
                        list.items
                            .iter()
                            .map(|a| View::of_resource(a, now))
                            .filter(|v| v.phase == ApprovalPhase::Pending),
                    );
                }
                pending.truncate(500);
                Ok(pending)
            }
            Self::Local { store, .. } => Ok(store
                .list(None, true, now, 500)
                .await?
                .into_iter()
                .map(|r| View::of_row(r, now))
                .collect()),
        }
    }

    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<View>, ApprovalError> {
        let now = Timestamp::now();
        match self {
            Self::Cluster {
                client, namespaces, ..
            } => {
                let api = namespaced(client, namespaces, namespace)?;
                Ok(api.get_opt(name).await?.map(|a| View::of_resource(&a, now)))
            }
            Self::Local { store, .. } => Ok(store
                .get(namespace, name)
                .await?
                .map(|r| View::of_row(r, now))),
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
        // In a cluster, listen before looking, so a decision made in
        // between is not missed.
        let mut changes = match self {
            Self::Cluster {
                client,
                namespaces,
                watches,
                ..
            } if !wait.is_zero() => {
                namespaced(client, namespaces, namespace)?;
                Some(watches.subscribe(namespace))
            }
            _ => None,
        };
        let pending = |v: &Option<View>| {
            v.as_ref()
                .is_some_and(|v| v.phase == ApprovalPhase::Pending)
        };
        let first = self.get(namespace, name).await?;
        if !pending(&first) || wait.is_zero() {
            return Ok(first);
        }
        // No longer than until it expires.
        let until_expiry = first
            .as_ref()
            .and_then(|v| {
                v.expires_at
                    .duration_since(Timestamp::now())
                    .try_into()
                    .ok()
            })
            .unwrap_or(Duration::ZERO);
        let until = deadline.min(tokio::time::Instant::now() + until_expiry);
        loop {
            let seen = match changes.as_mut() {
                // The namespace's shared watch says when it changes.
                Some(changes) => tokio::time::timeout_at(until, changes.next_settled(name)).await,
                // Standalone: look again every 100 ms.
                None => {
                    let now = tokio::time::Instant::now();
                    tokio::time::sleep(
                        until
                            .saturating_duration_since(now)
                            .min(Duration::from_millis(100)),
                    )
                    .await;
                    Ok(Seen::Lagged)
                }
            };
            match seen {
                Ok(Seen::Lagged) if tokio::time::Instant::now() < until => {
                    let v = self.get(namespace, name).await?;
                    if !pending(&v) {
                        return Ok(v);
                    }
                }
                _ => break,
            }
        }
        self.get(namespace, name).await
    }

    /// Uses an approval the caller has checked ([`View::check_use`]). Only
    /// one caller, on any replica, ever wins.
    pub async fn consume(&self, view: &View) -> Result<Consumed, ApprovalError> {
        let now = Timestamp::now();
        match self {
            Self::Cluster {
                client,
                instance,
                namespaces,
                ..
            } => {
                let api = namespaced(client, namespaces, &view.namespace)?;
                let current = api.get(&view.name).await?;
                if View::of_resource(&current, now).phase != ApprovalPhase::Approved {
                    return Ok(Consumed::Lost(View::of_resource(&current, now)));
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
                    Ok(done) => Ok(Consumed::Won(View::of_resource(&done, now))),
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        // Someone wrote first. If it is still approved and
                        // unconsumed (the operator recorded a phase), try
                        // again; otherwise report what it became.
                        let again = api.get(&view.name).await?;
                        let v = View::of_resource(&again, now);
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
    decision: ApprovalDecision,
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
    let view = View::of_row(row, now);
    let code = match decision {
        ApprovalDecision::Approved => ReasonCode::ApprovalApproved,
        ApprovalDecision::Denied => ReasonCode::ApprovalDenied,
    };
    // Durable before the caller is told: a decision confirmed to a human
    // is in the audit.
    audit
        .record_durable(palisade_audit::AuditEvent::approval_outcome(
            &view.facts(Some(decided_by)),
            AuditDecision::from(decision),
            code.as_str(),
        ))
        .await?;
    Ok(Ok(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_call() -> palisade_policy::HeldCall {
        palisade_policy::HeldCall {
            agent: "intake".into(),
            tool: "send_email".into(),
            arguments_preview: "{}".into(),
            arguments_truncated: false,
            arguments_digest: format!("sha256:{}", "0".repeat(64)),
            request_id: "r-1".into(),
            policy: "clinic".into(),
            policy_generation: 1,
            rule: None,
            requested_by: None,
        }
    }

    fn hold(namespace: &str) -> Hold {
        Hold {
            namespace: namespace.into(),
            call: held_call(),
            ttl: Duration::from_secs(900),
            max_pending: 20,
        }
    }

    /// A client for an address where nothing listens: a request that is
    /// made fails with a Kubernetes API error, one refused first does not.
    fn cluster(namespaces: &str) -> Approvals {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Approvals::cluster(
            kube::Client::try_from(config).unwrap(),
            "gw-0",
            WatchNamespaces::parse(namespaces).unwrap(),
        )
    }

    #[tokio::test]
    async fn an_approval_outside_the_watched_namespaces_is_neither_created_nor_read() {
        let approvals = cluster("clinic,billing");
        let now = Timestamp::now();
        let refused = |r: Result<_, ApprovalError>| matches!(r, Err(ApprovalError::NamespaceNotWatched(ns)) if ns == "other");
        assert!(refused(
            approvals.hold(&hold("other"), now).await.map(|_| ())
        ));
        assert!(refused(approvals.get("other", "x").await.map(|_| ())));
        assert!(refused(
            approvals
                .wait("other", "x", Duration::from_secs(1))
                .await
                .map(|_| ())
        ));
        let view = View {
            namespace: "other".into(),
            name: "x".into(),
            call: held_call(),
            requested_at: now,
            expires_at: now,
            phase: ApprovalPhase::Approved,
            decision: Some(ApprovalDecision::Approved),
            reason: None,
            decided_by: None,
            consumed_by: None,
        };
        assert!(refused(approvals.consume(&view).await.map(|_| ())));
        // A watched namespace goes to the API server (here: unreachable).
        assert!(matches!(
            approvals.get("clinic", "x").await,
            Err(ApprovalError::Kube(_))
        ));
        // No list: every namespace is allowed.
        assert!(matches!(
            cluster("").get("other", "x").await,
            Err(ApprovalError::Kube(_))
        ));
    }
}
