//! Long-polls share watches: every poll waiting on an Approval of one
//! namespace listens to one API watch of that namespace's Approvals, which
//! this process opens when the first poll there starts and closes once no
//! poll has needed it for [`LINGER`] (agents poll again and again; the watch
//! outlives the gap between two polls). So a thousand agents waiting cost
//! the API server one watch per namespace, not a thousand.
//!
//! The watch is namespaced, like every other request the gateway makes for
//! approvals: nothing is listed or watched cluster-wide. Objects arrive
//! untyped and are read one by one, so one malformed Approval never stalls
//! the others.

use futures_util::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use palisade_crds::{Approval, ApprovalPhase};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// How long a namespace's watch stays open with nobody waiting.
pub const LINGER: Duration = Duration::from_secs(30);

/// How many changes a slow poll may fall behind before it looks again
/// itself (a watch's first listing of a busy namespace comes at once).
const BACKLOG: usize = 1024;

/// The shared watches of one gateway process.
#[derive(Clone)]
pub struct Watches {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    by_namespace: Mutex<HashMap<String, Shared>>,
}

/// One namespace's watch, as its pollers see it.
struct Shared {
    changes: broadcast::Sender<Change>,
    waiters: usize,
    /// When the last poll left (`None` while someone waits).
    idle_since: Option<Instant>,
}

/// An Approval as the watch last saw it (`None`: deleted, or not readable).
#[derive(Clone, Debug)]
struct Change {
    name: String,
    approval: Option<Arc<Approval>>,
}

/// What a poll learns while it waits.
#[derive(Debug)]
pub enum Seen {
    /// Its approval was decided, deleted, or cannot be read any more.
    Settled,
    /// The poll fell behind the watch and may have missed its change: it
    /// should look for itself.
    Lagged,
    /// The watch ended (the process is stopping).
    Closed,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.inner.lock().len();
        write!(f, "Watches({open} namespaces)")
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shared>> {
        self.by_namespace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Watches {
    pub fn new(client: kube::Client) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                by_namespace: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Listens to `namespace`'s Approvals (opening its watch if none is
    /// open) until the returned subscription is dropped. Subscribe before
    /// reading the approval, so a change in between is not missed.
    pub fn subscribe(&self, namespace: &str) -> Subscription {
        let mut open = self.inner.lock();
        let shared = open.entry(namespace.to_owned()).or_insert_with(|| {
            let (changes, _) = broadcast::channel(BACKLOG);
            tokio::spawn(run(
                Arc::clone(&self.inner),
                namespace.to_owned(),
                changes.clone(),
            ));
            Shared {
                changes,
                waiters: 0,
                idle_since: None,
            }
        });
        shared.waiters += 1;
        shared.idle_since = None;
        Subscription {
            changes: shared.changes.subscribe(),
            inner: Arc::clone(&self.inner),
            namespace: namespace.to_owned(),
        }
    }
}

/// One poll listening to its namespace's watch.
pub struct Subscription {
    changes: broadcast::Receiver<Change>,
    inner: Arc<Inner>,
    namespace: String,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscription({})", self.namespace)
    }
}

impl Subscription {
    /// Waits until approval `name` leaves `Pending` (or is deleted), or
    /// until something else the poll must know happens.
    pub async fn next_settled(&mut self, name: &str) -> Seen {
        loop {
            match self.changes.recv().await {
                Ok(change) if change.name == name => {
                    let pending = change
                        .approval
                        .is_some_and(|a| a.phase_at(Timestamp::now()) == ApprovalPhase::Pending);
                    if !pending {
                        return Seen::Settled;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Seen::Lagged,
                Err(broadcast::error::RecvError::Closed) => return Seen::Closed,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(shared) = self.inner.lock().get_mut(&self.namespace) {
            shared.waiters = shared.waiters.saturating_sub(1);
            if shared.waiters == 0 {
                shared.idle_since = Some(Instant::now());
            }
        }
    }
}

fn typed(o: &DynamicObject) -> Option<Approval> {
    serde_json::to_value(o)
        .and_then(serde_json::from_value)
        .ok()
}

/// One namespace's watch: passes every change on to the polls listening,
/// and ends once nobody has listened for [`LINGER`].
async fn run(inner: Arc<Inner>, namespace: String, changes: broadcast::Sender<Change>) {
    let resource = ApiResource::erase::<Approval>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(inner.client.clone(), &namespace, &resource);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut idle_check = tokio::time::interval(LINGER / 4);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => {
                let (o, deleted) = match event {
                    Some(Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => (o, false),
                    Some(Ok(watcher::Event::Delete(o))) => (o, true),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::warn!(namespace, error = %e, "approvals watch error (retrying)");
                        continue;
                    }
                    None => break,
                };
                let Some(name) = o.metadata.name.clone() else { continue };
                let approval = if deleted { None } else { typed(&o).map(Arc::new) };
                // Nobody listening is not an error: the idle check ends it.
                let _ = changes.send(Change { name, approval });
            }
            _ = idle_check.tick() => {
                let mut open = inner.lock();
                let idle = open
                    .get(&namespace)
                    .and_then(|s| s.idle_since)
                    .is_some_and(|t| t.elapsed() >= LINGER);
                if idle {
                    open.remove(&namespace);
                    return;
                }
            }
        }
    }
    inner.lock().remove(&namespace);
}
