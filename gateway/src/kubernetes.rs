//! Configuration and identity from Kubernetes.
//!
//! - The gateway watches the one Secret the operator writes (through the
//!   API, not a mounted volume: a kill switch must land in milliseconds),
//!   decodes the bundle and swaps it in. A bundle that does not decode is
//!   rejected and the previous one keeps serving.
//! - It reports the revision it applied in its own Lease (narrow RBAC:
//!   leases in the installation's namespace), for the operator to count.
//! - Agents inside the cluster authenticate with their ServiceAccount
//!   token, checked with a TokenReview (cached briefly) and mapped to the
//!   agent whose `serviceAccount` matches in that namespace.

use crate::identity::Identity;
use crate::metrics::GatewayMetrics;
use crate::snapshot::{Current, Snapshot};
use futures_util::StreamExt;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a gateway renews its applied-revision report.
pub const REPORT_EVERY: Duration = Duration::from_secs(30);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a TokenReview answer is trusted.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);

/// Where the gateway finds its configuration in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSource {
    pub namespace: String,
    pub secret_name: String,
    /// This gateway's name in reports (the pod name).
    pub instance: String,
}

/// Writes the applied revision into this gateway's Lease.
async fn report(
    client: &kube::Client,
    source: &ClusterSource,
    revision: &str,
) -> Result<(), kube::Error> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &source.namespace);
    let name = format!("palisade-gateway-{}", source.instance);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/part-of": "palisade", "app.kubernetes.io/component": "gateway"},
            "annotations": {"palisade.dev/applied-revision": revision},
        },
        "spec": {"holderIdentity": source.instance, "renewTime": jiff::Timestamp::now().to_string()},
    });
    leases
        .patch(
            &name,
            &PatchParams::apply("palisade-gateway").force(),
            &Patch::Apply(lease),
        )
        .await?;
    Ok(())
}

/// Watches the configuration Secret until the task is aborted.
pub fn watch(
    client: kube::Client,
    source: ClusterSource,
    current: Current,
    metrics: Arc<GatewayMetrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &source.namespace);
        let config =
            watcher::Config::default().fields(&format!("metadata.name={}", source.secret_name));
        let mut events = watcher(secrets, config).boxed();
        // Renew the report periodically so the operator can tell live
        // gateways from gone ones.
        let heartbeat = {
            let client = client.clone();
            let source = source.clone();
            let current = current.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REPORT_EVERY).await;
                    if let Some(s) = current.load_full()
                        && let Err(e) = report(&client, &source, s.revision()).await
                    {
                        tracing::warn!(error = %e, "cannot renew the applied-revision report");
                    }
                }
            })
        };
        let _heartbeat = AbortOnDrop(heartbeat);
        while let Some(event) = events.next().await {
            let secret = match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => s,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "configuration watch error (retrying)");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            match palisade_crds::bundle_secret::decode(&secret).map_err(|e| e.to_string()) {
                Ok(bundle) => {
                    let snapshot = Snapshot::new(bundle);
                    let revision = snapshot.revision().to_owned();
                    if current
                        .load()
                        .as_ref()
                        .is_some_and(|s| s.revision() == revision)
                    {
                        continue;
                    }
                    metrics.served(&revision, snapshot.loaded_at);
                    current.store(Some(Arc::new(snapshot)));
                    tracing::info!(revision, "configuration applied");
                    if let Err(e) = report(&client, &source, &revision).await {
                        tracing::warn!(error = %e, "cannot report the applied revision");
                    }
                }
                Err(e) => {
                    metrics.config_reload_errors.inc();
                    tracing::error!(error = %e, "configuration rejected; the previous one keeps serving");
                }
            }
        }
    })
}

/// Token digest → (when reviewed, the username it belongs to, if any).
type ReviewCache = Arc<Mutex<HashMap<String, (Instant, Option<String>)>>>;

/// TokenReview-backed identity with a short cache.
#[derive(Clone)]
pub struct TokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
    cache: ReviewCache,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer").finish_non_exhaustive()
    }
}

impl TokenReviewer {
    pub fn new(client: kube::Client, audiences: Vec<String>) -> Self {
        Self {
            client,
            audiences,
            cache: Arc::default(),
        }
    }

    /// The username the API server vouches for, if any (cached).
    async fn username(&self, token: &str) -> Option<String> {
        let key = palisade_policy::api_key_digest(token);
        if let Some((at, user)) = self.cache.lock().ok()?.get(&key).cloned()
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return user;
        }
        let mut spec = json!({"token": token});
        if !self.audiences.is_empty() {
            spec["audiences"] = json!(self.audiences);
        }
        let review: TokenReview = serde_json::from_value(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}),
        )
        .ok()?;
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await;
        let user = match answer {
            Ok(r) => r
                .status
                .filter(|s| s.authenticated == Some(true))
                .and_then(|s| s.user)
                .and_then(|u| u.username),
            Err(e) => {
                tracing::warn!(error = %e, "TokenReview failed; treating the token as unknown");
                return None;
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), user.clone()));
        }
        user
    }

    /// The agent a ServiceAccount token belongs to: the one whose
    /// `serviceAccount` is that account, in the account's namespace.
    pub async fn identify(&self, snapshot: &Snapshot, token: &str) -> Option<Identity> {
        let user = self.username(token).await?;
        let rest = user.strip_prefix("system:serviceaccount:")?;
        let (namespace, account) = rest.split_once(':')?;
        snapshot
            .bundle
            .policies()
            .iter()
            .filter(|p| p.namespace == namespace)
            .find_map(|p| {
                p.agents
                    .iter()
                    .find(|a| a.service_account.as_deref() == Some(account))
                    .map(|a| Identity {
                        namespace: namespace.to_owned(),
                        agent: a.name.clone(),
                    })
            })
    }
}
