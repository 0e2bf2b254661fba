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
//! context switches, docs/benchmarks.md). Instead, the writer hands the
//! whole batch's receipts to a task on the requests' runtime in one
//! message (one wake-up); that task resolves them there, where a wake is
//! a push onto the runtime's own queue.

use super::Waiter;
use tokio::sync::mpsc;

type Batch = (Vec<Waiter>, Result<(), String>);

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
    pub(super) fn on_current_runtime() -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self { to_runtime: None };
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
        runtime.spawn(async move {
            while let Some((waiters, result)) = rx.recv().await {
                resolve(waiters, &result);
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
        let batch = match &self.to_runtime {
            Some(tx) => match tx.send((waiters, result)) {
                Ok(()) => return,
                Err(mpsc::error::SendError(batch)) => batch,
            },
            None => (waiters, result),
        };
        resolve(batch.0, &batch.1);
    }
}

fn resolve(waiters: Vec<Waiter>, result: &Result<(), String>) {
    for w in waiters {
        let _ = w.send(result.clone());
    }
}
