//! Admission to the writer's queue: whether an event may be accepted now
//! (the failure mode, a full spool or queue), the bookkeeping once it is
//! queued, and [`Reservation`], a place taken before the event is known.

use super::{DB_DOWN, FailureMode, Msg, SPOOL_FULL, Shared};
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
    /// full batch waits.
    pub(super) fn queued(&self, tx: &mpsc::Sender<Msg>) {
        self.metrics.queue_depth.inc();
        // Queued, plus the one the lingering writer holds.
        let queued = tx.max_capacity() - tx.capacity();
        if queued + 1 >= self.batch_max {
            self.wake.notify_one();
        }
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
        match self.permit {
            Some(permit) => {
                let tx = permit.send(Msg::Event(Box::new(event)));
                self.shared.queued(&tx);
            }
            None => self.shared.metrics.discarded.inc(),
        }
    }
}
