//! Leader election with a `coordination.k8s.io/v1` Lease: of several
//! replicas, the one holding the Lease runs the compile loop; the others
//! wait and take over when the holder stops renewing or releases it.
//!
//! The way client-go's `leaderelection` does it:
//! - Whether another holder is gone is judged by *this replica's own
//!   monotonic clock*: a standby remembers the last Lease record it saw and
//!   the local instant it last changed, and takes over only when it has
//!   not changed for `leaseDurationSeconds` ([`Observed::judge`]). The
//!   remote `renewTime` is never compared with the local wall clock, so
//!   clock skew between nodes cannot make two leaders, or none. (A
//!   replica that starts next to a dead holder's Lease therefore waits one
//!   lease duration before taking it.)
//! - The leader stops its work if it could not renew within the renew
//!   deadline (two thirds of the lease duration) of its last successful
//!   round's start, so it has stopped before any standby can think the
//!   Lease expired.
//! - On shutdown the leader stops its work, then releases the Lease
//!   ([`release`]: holder cleared, duration 1 s, only if it is still its
//!   own); a standby takes a Lease with no holder at once.
//!
//! Every write carries the resourceVersion read (compare-and-swap), so two
//! replicas can never both win a round.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// A holder whose Lease has not changed for this long (by the
    /// observer's clock) is considered gone.
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

    /// The leader stops working if it has not renewed within this long of
    /// its last successful round's start: two thirds of the lease duration,
    /// as client-go's defaults (10 s of 15 s).
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(15)
    }
}

// === the decision (pure) ===

/// What a replica compares between two reads of the Lease: any change
/// means the holder (or someone) wrote it, so it is alive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    pub duration_seconds: Option<i32>,
    pub acquire_time: Option<Timestamp>,
    pub renew_time: Option<Timestamp>,
    pub transitions: Option<i32>,
    pub resource_version: Option<String>,
}

impl LeaseRecord {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.as_ref();
        Self {
            holder: spec.and_then(|s| s.holder_identity.clone()),
            duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
            acquire_time: spec.and_then(|s| s.acquire_time.as_ref()).map(|t| t.0),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            transitions: spec.and_then(|s| s.lease_transitions),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It is ours: renew it.
    Renew,
    /// Nobody holds it (never held, or released): take it now.
    TakeFree,
    /// Its holder has not renewed for a lease duration by our clock.
    TakeExpired,
    /// Another replica holds it and renewed recently.
    Wait,
}

impl Verdict {
    fn takes(self) -> bool {
        !matches!(self, Self::Wait)
    }
}

/// The last Lease record this replica saw, and the local instant it last
/// changed.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    last: Option<(LeaseRecord, Instant)>,
}

impl Observed {
    /// Records `record`, read at local instant `now`, and judges it. Only
    /// local instants are compared: `renewTime` is only ever compared with
    /// the previous `renewTime` (to see a change).
    pub fn judge(
        &mut self,
        record: LeaseRecord,
        identity: &str,
        default_duration: Duration,
        now: Instant,
    ) -> Verdict {
        let changed_at = match &self.last {
            Some((seen, at)) if *seen == record => *at,
            _ => now,
        };
        let duration = record
            .duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(default_duration, Duration::from_secs);
        let verdict = match record.holder.as_deref() {
            None | Some("") => Verdict::TakeFree,
            Some(h) if h == identity => Verdict::Renew,
            Some(_)
                if changed_at
                    .checked_add(duration)
                    .is_some_and(|end| end < now) =>
            {
                Verdict::TakeExpired
            }
            Some(_) => Verdict::Wait,
        };
        self.last = Some((record, changed_at));
        verdict
    }
}

/// The Lease this replica writes to take or renew `lease` at `now`.
pub fn claimed(mut lease: Lease, cfg: &LeaseConfig, verdict: Verdict, now: Timestamp) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if verdict != Verdict::Renew {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(cfg.duration_seconds());
    lease
}

/// The Lease that gives `lease` up, if `identity` holds it: no holder,
/// a 1 s duration (client-go's `ReleaseOnCancel`), the rest kept; the
/// resourceVersion read stays, so the write is a compare-and-swap.
pub fn released(mut lease: Lease, identity: &str, now: Timestamp) -> Option<Lease> {
    let spec = lease.spec.as_mut()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.acquire_time = Some(MicroTime(now));
    spec.renew_time = Some(MicroTime(now));
    Some(lease)
}

// === against the API server ===

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(e) if e.code == 409)
}

/// One election round: `Ok(true)` if this replica holds the Lease now.
/// `observed` carries what earlier rounds saw (by the local clock).
pub async fn try_acquire(
    client: &kube::Client,
    cfg: &LeaseConfig,
    observed: &mut Observed,
) -> Result<bool, kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let now = Timestamp::now();
    let Some(lease) = leases.get_opt(&cfg.name).await? else {
        let fresh: Lease = serde_json::from_value(json!({
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": cfg.duration_seconds(),
                     "acquireTime": MicroTime(now), "renewTime": MicroTime(now), "leaseTransitions": 0}
        }))
        .map_err(kube::Error::SerdeError)?;
        return match leases.create(&PostParams::default(), &fresh).await {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        };
    };
    let verdict = observed.judge(
        LeaseRecord::of(&lease),
        &cfg.identity,
        cfg.lease_duration,
        Instant::now(),
    );
    if !verdict.takes() {
        return Ok(false);
    }
    if verdict == Verdict::TakeExpired {
        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
        tracing::info!(holder = ?holder, "the leader's Lease has not changed for a lease duration; taking over");
    }
    // The resourceVersion we read makes this a compare-and-swap.
    match leases
        .replace(
            &cfg.name,
            &PostParams::default(),
            &claimed(lease, cfg, verdict, now),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up if this replica still holds it (compare-and-swap on
/// the resourceVersion read), so a standby takes over at once instead of
/// after a lease duration. `Ok(true)` if it was released by this call.
/// Call it only once this replica's work has stopped.
pub async fn release(client: &kube::Client, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let Some(lease) = leases.get_opt(&cfg.name).await? else {
        return Ok(false);
    };
    let Some(free) = released(lease, &cfg.identity, Timestamp::now()) else {
        return Ok(false);
    };
    match leases
        .replace(&cfg.name, &PostParams::default(), &free)
        .await
    {
        Ok(_) => Ok(true),
        // Someone else wrote it first: it is not ours to release.
        Err(e) if conflict(&e) => Ok(false),
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
    run_while_leader_until(client, cfg, is_leader, work, std::future::pending()).await
}

/// [`run_while_leader`] until `shutdown` resolves; then the work is
/// stopped (and waited for) and, if this replica led, the Lease released.
pub async fn run_while_leader_until<F, Fut, E>(
    client: kube::Client,
    cfg: LeaseConfig,
    is_leader: tokio::sync::watch::Sender<bool>,
    work: F,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), E>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let mut running: AbortOnDrop<Result<(), E>> = AbortOnDrop(None);
    let mut observed = Observed::default();
    // The start of the last round that renewed: the Lease was written no
    // earlier, so no standby can expire it before this + lease duration.
    let mut renewed_round: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let started = Instant::now();
        let deadline = renewed_round.unwrap_or(started) + cfg.renew_deadline();
        let round = tokio::time::timeout_at(deadline, try_acquire(&client, &cfg, &mut observed));
        let leading = tokio::select! {
            r = round => match r {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leader election round failed");
                    false
                }
                Err(_) => {
                    tracing::warn!(deadline = ?cfg.renew_deadline(), "leader election round timed out");
                    false
                }
            },
            () = &mut shutdown => break,
        };
        renewed_round = leading.then_some(started);
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
        tokio::select! {
            () = tokio::time::sleep(cfg.renew_every) => {}
            () = &mut shutdown => break,
        }
    }
    // Shutting down: stop the work and wait until it has stopped, then
    // give the Lease up so a standby takes over at once. (Tried even when
    // the last round failed: its write may have landed. `release` writes
    // only a Lease this replica holds.)
    if let Some(task) = running.0.take() {
        task.abort();
        let _ = task.await;
    }
    is_leader.send_replace(false);
    match tokio::time::timeout(cfg.renew_deadline(), release(&client, &cfg)).await {
        Ok(Ok(true)) => tracing::info!(identity = %cfg.identity, "released the leader Lease"),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot release the leader Lease; a standby takes over when it expires")
        }
        Err(_) => tracing::warn!(
            "releasing the leader Lease timed out; a standby takes over when it expires"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIFTEEN: Duration = Duration::from_secs(15);

    fn record(holder: &str, renew: &str, rv: &str) -> LeaseRecord {
        LeaseRecord {
            holder: Some(holder.into()).filter(|h: &String| !h.is_empty()),
            duration_seconds: Some(15),
            acquire_time: Some("2026-11-22T10:00:00Z".parse().unwrap()),
            renew_time: Some(renew.parse().unwrap()),
            transitions: Some(0),
            resource_version: Some(rv.into()),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_renew_time_far_in_the_past_does_not_make_a_live_lease_expired() {
        // The holder's clock is a year behind ours; it renews every 5 s.
        let t0 = Instant::now();
        let mut seen = Observed::default();
        let mut verdicts = Vec::new();
        for (i, renew) in [
            "2025-11-22T10:00:00Z",
            "2025-11-22T10:00:05Z",
            "2025-11-22T10:00:10Z",
        ]
        .iter()
        .enumerate()
        {
            let rv = format!("{i}");
            let now = t0 + secs(5 * i as u64);
            verdicts.push(seen.judge(record("b", renew, &rv), "a", FIFTEEN, now));
        }
        assert_eq!(verdicts, vec![Verdict::Wait; 3]);
    }

    #[test]
    fn a_renew_time_far_in_the_future_does_not_keep_a_dead_holder() {
        // The holder's clock was a year ahead; it died and never renewed.
        let t0 = Instant::now();
        let mut seen = Observed::default();
        let dead = record("b", "2027-11-22T10:00:00Z", "7");
        assert_eq!(
            seen.judge(dead.clone(), "a", FIFTEEN, t0),
            Verdict::Wait,
            "first sight: wait a lease duration"
        );
        assert_eq!(
            seen.judge(dead.clone(), "a", FIFTEEN, t0 + secs(10)),
            Verdict::Wait
        );
        assert_eq!(
            seen.judge(dead, "a", FIFTEEN, t0 + secs(16)),
            Verdict::TakeExpired
        );
    }

    #[test]
    fn an_unchanged_record_older_than_the_lease_duration_is_expired_and_a_change_resets_the_timer()
    {
        let t0 = Instant::now();
        let mut seen = Observed::default();
        let first = record("b", "2026-11-22T10:00:00Z", "1");
        assert_eq!(seen.judge(first.clone(), "a", FIFTEEN, t0), Verdict::Wait);
        assert_eq!(
            seen.judge(first.clone(), "a", FIFTEEN, t0 + secs(15)),
            Verdict::Wait,
            "exactly a lease duration is not yet expired"
        );
        // The holder renewed at t0+14 (seen at t0+15): the timer restarts.
        let renewed = record("b", "2026-11-22T10:00:14Z", "2");
        assert_eq!(
            seen.judge(renewed.clone(), "a", FIFTEEN, t0 + secs(15)),
            Verdict::Wait
        );
        assert_eq!(
            seen.judge(renewed.clone(), "a", FIFTEEN, t0 + secs(29)),
            Verdict::Wait
        );
        assert_eq!(
            seen.judge(renewed, "a", FIFTEEN, t0 + secs(31)),
            Verdict::TakeExpired
        );
        // Any write counts as a change, even one that keeps renewTime.
        let mut seen = Observed::default();
        seen.judge(first.clone(), "a", FIFTEEN, t0);
        let rewritten = LeaseRecord {
            resource_version: Some("9".into()),
            ..first
        };
        assert_eq!(
            seen.judge(rewritten, "a", FIFTEEN, t0 + secs(20)),
            Verdict::Wait
        );
    }

    #[test]
    fn the_holders_declared_duration_counts_and_a_missing_one_falls_back_to_ours() {
        let t0 = Instant::now();
        let mut long = record("b", "2026-11-22T10:00:00Z", "1");
        long.duration_seconds = Some(60);
        let mut seen = Observed::default();
        seen.judge(long.clone(), "a", FIFTEEN, t0);
        assert_eq!(seen.judge(long, "a", FIFTEEN, t0 + secs(30)), Verdict::Wait);
        let mut none = record("b", "2026-11-22T10:00:00Z", "1");
        none.duration_seconds = None;
        let mut seen = Observed::default();
        seen.judge(none.clone(), "a", FIFTEEN, t0);
        assert_eq!(
            seen.judge(none, "a", FIFTEEN, t0 + secs(16)),
            Verdict::TakeExpired
        );
    }

    #[test]
    fn a_lease_without_a_holder_is_free_at_once_and_our_own_is_renewed() {
        let t0 = Instant::now();
        let mut seen = Observed::default();
        assert_eq!(
            seen.judge(record("", "2026-11-22T10:00:00Z", "1"), "a", FIFTEEN, t0),
            Verdict::TakeFree
        );
        let mut empty = record("", "2026-11-22T10:00:00Z", "2");
        empty.holder = Some(String::new());
        assert_eq!(seen.judge(empty, "a", FIFTEEN, t0), Verdict::TakeFree);
        assert_eq!(
            seen.judge(record("a", "2020-01-01T00:00:00Z", "3"), "a", FIFTEEN, t0),
            Verdict::Renew
        );
    }

    fn lease(holder: Option<&str>) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "palisade-operator", "namespace": "palisade-system", "resourceVersion": "42"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": "2026-11-22T10:00:00Z", "renewTime": "2026-11-22T10:00:05Z",
                     "leaseTransitions": 3}
        }))
        .unwrap()
    }

    #[test]
    fn releasing_clears_the_holder_only_when_it_is_ours_and_keeps_the_resource_version() {
        let now: Timestamp = "2026-11-22T10:00:07Z".parse().unwrap();
        assert!(released(lease(Some("b")), "a", now).is_none());
        assert!(released(lease(None), "a", now).is_none());
        let free = released(lease(Some("a")), "a", now).unwrap();
        let spec = free.spec.clone().unwrap();
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(free.metadata.resource_version.as_deref(), Some("42"));
        // And a standby takes the released Lease at once.
        assert_eq!(
            Observed::default().judge(LeaseRecord::of(&free), "b", FIFTEEN, Instant::now()),
            Verdict::TakeFree
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let cfg = LeaseConfig::new("palisade-system", "a");
        let now: Timestamp = "2026-11-22T10:01:00Z".parse().unwrap();
        let taken = claimed(lease(Some("b")), &cfg, Verdict::TakeExpired, now);
        let spec = taken.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("42"));
        let renewed = claimed(lease(Some("a")), &cfg, Verdict::Renew, now)
            .spec
            .unwrap();
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.renew_time, Some(MicroTime(now)));
        assert_eq!(renewed.lease_duration_seconds, Some(15));
    }

    #[test]
    fn the_leader_stops_before_a_standby_can_expire_its_lease() {
        let cfg = LeaseConfig::new("palisade-system", "a");
        assert!(cfg.renew_deadline() < cfg.lease_duration);
        assert!(cfg.renew_every < cfg.renew_deadline());
    }
}
