//! Admission to the writer's queue: whether an event may be accepted now
//! (the failure mode, a full spool or queue), waiting for room while the
//! writer is behind (backpressure), the bookkeeping once it is queued,
//! [`Reservation`], a place taken before the event is known, and
//! [`Durable`], the receipt of a submitted event.

use super::{DB_DOWN, FailureMode, Msg, SPOOL_FULL, Shared, Waiter};
use crate::error::AuditError;
use crate::event::AuditEvent;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

impl Shared {
    /// Whether a new event may be accepted now.
    pub(super) fn admit(&self) -> Result<(), AuditError> {
        match self.state.load(Ordering::Acquire) {
            SPOOL_FULL => {
                self.metrics.refused.inc();
                Err(AuditError::Spool(crate::spool::SpoolError::Full {
                    used: 0,
                    max: 0,
                }))
            }
            DB_DOWN if self.failure_mode == FailureMode::FailClosed => {
                self.metrics.refused.inc();
                Err(AuditError::NotDurable)
            }
            _ => Ok(()),
        }
    }

    /// Counts an event just queued on `tx`, and wakes the writer when a
    /// full batch waits, or someone waits for this event to be durable.
    pub(super) fn queued(&self, tx: &mpsc::Sender<Msg>, durable: bool) {
        self.metrics.queue_depth.inc();
        // Queued, plus the one a lingering writer holds (woken one early,
        // between batches, the writer took a batch one short, and the
        // rest of a backlog then waited a linger).
        let queued = tx.max_capacity() - tx.capacity();
        // Pairs with the writer's fence: either it sees this event in the
        // queue, or this sees it holding one.
        std::sync::atomic::fence(Ordering::SeqCst);
        let held = usize::from(self.holding.load(Ordering::SeqCst));
        if durable || queued + held >= self.batch_max {
            self.wake.notify_one();
        }
    }

    /// Waits, up to the backpressure timeout, until `tx` holds fewer than
    /// `backpressure_at` events.
    pub(super) async fn room(&self, tx: &mpsc::Sender<Msg>) -> Result<(), AuditError> {
        let behind = || tx.max_capacity() - tx.capacity() >= self.backpressure_at;
        if self.discard || !behind() {
            return Ok(());
        }
        self.metrics.backpressure.inc();
        self.metrics.backpressure_waiting.inc();
        if self.metrics.backpressure_waiting.get() == 1 {
            tracing::warn!(
                queued = tx.max_capacity() - tx.capacity(),
                "the audit writer is behind: new requests wait for room in its queue"
            );
        }
        let deadline = tokio::time::Instant::now() + self.backpressure_timeout;
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                let notified = self.room.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if !behind() || tx.is_closed() {
                    return;
                }
                notified.await;
            }
        })
        .await;
        self.metrics.backpressure_waiting.dec();
        if self.metrics.backpressure_waiting.get() == 0 {
            tracing::info!("the audit writer caught up: requests no longer wait");
        }
        if waited.is_err() {
            self.metrics.refused.inc();
            tracing::error!(
                waited = ?self.backpressure_timeout,
                "the audit writer stayed behind; refusing a request"
            );
            return Err(AuditError::QueueFull);
        }
        Ok(())
    }

    /// Why an event could not be queued.
    pub(super) fn not_queued<T>(&self, e: mpsc::error::TrySendError<T>) -> AuditError {
        match e {
            mpsc::error::TrySendError::Full(_) => {
                self.metrics.refused.inc();
                AuditError::QueueFull
            }
            mpsc::error::TrySendError::Closed(_) => AuditError::Stopped,
        }
    }
}

/// An accepted event not known yet ([`AuditWriter::reserve`]): its place
/// in the queue. Dropped without [`Self::record`], the place is given
/// back and nothing is recorded.
pub struct Reservation {
    /// `None` when the writer discards every event.
    pub(super) permit: Option<mpsc::OwnedPermit<Msg>>,
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("discard", &self.permit.is_none())
            .finish()
    }
}

impl Reservation {
    /// Records `event` in the place taken: it cannot be refused now.
    pub fn record(self, event: AuditEvent) {
        self.fill(event, None);
    }

    /// Records `event` in the place taken, with a receipt that resolves
    /// once it is durable.
    pub fn submit(self, event: AuditEvent) -> Durable {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.fill(event, Some(tx));
        Durable(Some(rx))
    }

    fn fill(self, event: AuditEvent, waiter: Option<Waiter>) {
        match self.permit {
            Some(permit) => {
                let durable = waiter.is_some();
                let tx = permit.send(Msg::Event(Box::new(event), waiter));
                self.shared.queued(&tx, durable);
            }
            None => {
                self.shared.metrics.discarded.inc();
                if let Some(w) = waiter {
                    let _ = w.send(Ok(()));
                }
            }
        }
    }
}

/// The receipt of a submitted event: [`Self::wait`] resolves once it is
/// durable (committed to the database or fsync'd to the spool).
#[derive(Debug)]
#[must_use = "a receipt not waited on says nothing; use `record` for an event nobody waits for"]
pub struct Durable(pub(super) Option<tokio::sync::oneshot::Receiver<Result<(), String>>>);

impl Durable {
    /// A receipt with nothing to wait for (auditing is off for this
    /// event).
    pub fn ready() -> Self {
        Self(None)
    }

    /// Waits until the event is durable: `Err(NotDurable)` when it could
    /// not be made so, `Err(Stopped)` when the writer has gone.
    pub async fn wait(self) -> Result<(), AuditError> {
        let Some(rx) = self.0 else {
            return Ok(());
        };
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(AuditError::NotDurable),
            Err(_) => Err(AuditError::Stopped),
        }
    }

    /// Waits for every receipt of `all`: the first failure, if any.
    pub async fn wait_all(all: Vec<Durable>) -> Result<(), AuditError> {
        let mut result = Ok(());
        for d in all {
            if let Err(e) = d.wait().await {
                result = Err(e);
            }
        }
        result
    }
}
