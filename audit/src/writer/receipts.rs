//! Handing a batch's receipts back to the requests waiting on them.
//!
//! The writer runs on a thread of its own at a lower priority. Resolving
//! each waiter from there wakes the requests' runtime once per receipt:
//! the first wake-up makes the request thread runnable, and on a shared
//! core the kernel switches to it at once (it has the higher priority),
//! before the writer has resolved the rest. The request thread answers
//! the one request it was given, finds nothing else to do and sleeps; the
//! writer resolves the next receipt, and so on: on one saturated core,
//! about six such round trips per batch of twenty (`/proc/PID/task/*/status`
//! context switches, bench/results/DIARY.md). Instead, the writer hands the
//! whole batch's receipts to a task on the requests' runtime in one
//! message (one wake-up); that task resolves them there, where a wake is
//! a push onto the runtime's own queue.

use super::Waiter;
use tokio::sync::mpsc;

/// A batch's waiters and how the batch went. Dropped — resolved, or lost
/// in a channel whose runtime shut down before taking it — it tells every
/// waiter still in it: no receipt is left unanswered, and none is told
/// anything but its batch's result.
#[derive(Debug)]
struct Batch {
    waiters: Vec<Waiter>,
    result: Result<(), String>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        for w in self.waiters.drain(..) {
            let _ = w.send(self.result.clone());
        }
    }
}

/// Where the writer sends a batch's receipts once it is durable (or is
/// known not to be).
#[derive(Debug)]
pub(super) struct Receipts {
    /// To the task on the runtime the writer was started from; `None`
    /// when started outside a runtime: the writer resolves them itself.
    to_runtime: Option<mpsc::UnboundedSender<Batch>>,
}

impl Receipts {
    /// Spawns the resolving task on the current runtime, if there is one.
    /// That runtime should run as long as the writer: receipts handed to it
    /// wait for it to run the task.
    pub(super) fn on_current_runtime() -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self { to_runtime: None };
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
        runtime.spawn(async move {
            while let Some(batch) = rx.recv().await {
                drop(batch);
            }
        });
        Self {
            to_runtime: Some(tx),
        }
    }

    /// Tells every waiter of a batch how it went. Where the runtime's task
    /// has gone (that runtime shut down), the waiters are told from here.
    pub(super) fn resolve(&self, waiters: Vec<Waiter>, result: Result<(), String>) {
        if waiters.is_empty() {
            return;
        }
        let batch = Batch { waiters, result };
        if let Some(tx) = &self.to_runtime {
            // A refused send hands the batch back, dropped (so resolved)
            // here.
            let _ = tx.send(batch);
        }
    }
}
