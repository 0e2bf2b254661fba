//! Leader election with a `coordination.k8s.io/v1` Lease: of several
//! replicas, the one holding a fresh Lease runs the compile loop; the
//! others wait and take over when the holder stops renewing. Writes use the
//! Lease's resourceVersion, so two replicas can never both win.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// A holder that has not renewed for this long is considered gone.
    pub lease_duration: Duration,
    /// How often the holder renews (and the others check).
    pub renew_every: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: "palisade-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

/// One election round: `Ok(true)` if this replica holds the Lease now.
pub async fn try_acquire(client: &kube::Client, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let now = Timestamp::now();
    let seconds = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
    let Some(mut lease) = leases.get_opt(&cfg.name).await? else {
        let fresh: Lease = serde_json::from_value(json!({
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": seconds,
                     "acquireTime": now.to_string(), "renewTime": now.to_string(), "leaseTransitions": 0}
        }))
        .map_err(kube::Error::SerdeError)?;
        return match leases.create(&PostParams::default(), &fresh).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let mine = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    let expired = spec
        .renew_time
        .as_ref()
        .map(|t| {
            t.0 + SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(seconds),
            )) < now
        })
        .unwrap_or(true);
    if !mine && !expired {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(micro(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(micro(now));
    spec.lease_duration_seconds = Some(seconds);
    // The resourceVersion we read makes this a compare-and-swap.
    match leases
        .replace(&cfg.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Aborts the task when dropped, so stopping the election (or the process
/// dying) never leaves a compile loop running unled.
pub(crate) struct AbortOnDrop<T>(pub(crate) Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Runs `work` while this replica leads; stops it when leadership is lost
/// and starts it again when regained. Never returns unless `work` does.
pub async fn run_while_leader<F, Fut, E>(
    client: kube::Client,
    cfg: LeaseConfig,
    is_leader: tokio::sync::watch::Sender<bool>,
    work: F,
) -> Result<(), E>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let mut running: AbortOnDrop<Result<(), E>> = AbortOnDrop(None);
    loop {
        let leading = match try_acquire(&client, &cfg).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "leader election round failed");
                false
            }
        };
        if leading && running.0.is_none() {
            tracing::info!(identity = %cfg.identity, "became leader");
            running.0 = Some(tokio::spawn(work()));
        } else if !leading && let Some(task) = running.0.take() {
            tracing::warn!(identity = %cfg.identity, "lost leadership; stopping");
            task.abort();
        }
        is_leader.send_replace(leading);
        if let Some(task) = &running.0
            && task.is_finished()
            && let Some(task) = running.0.take()
        {
            match task.await {
                Ok(result) => return result,
                Err(_) => continue,
            }
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}
