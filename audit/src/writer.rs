//! The asynchronous, batched writer. Callers hand events to a bounded
//! queue and return at once; one task chains them, writes them in
//! multi-row batches, spools them (fsync'd) while the database is down,
//! drains the spool exactly once when it is back, and drains the queue on
//! shutdown.
//!
//! An event handed over with [`AuditWriter::submit`] comes with a
//! [`Durable`] receipt that resolves once its batch is committed to the
//! database (PostgreSQL), written to the journal (SQLite: [`journal`]), or
//! fsync'd to the spool: callers that must not answer before
//! their event is recorded wait on it. Such an event wakes the writer at
//! once, and everything queued meanwhile joins its batch: many concurrent
//! requests share one commit (group commit).
//!
//! Backpressure: past [`WriterConfig::backpressure_at`] queued events,
//! [`AuditWriter::room`] makes new work wait until the writer catches up
//! (counted, logged), so a database that is healthy but behind slows
//! requests down instead of refusing them; the rest of the queue is
//! headroom for the events of work already admitted.
//!
//! The task runs on its own thread (with its own single-threaded
//! runtime), not on the caller's runtime: chaining and encoding a batch,
//! and fsyncing the spool while the database is down, are stretches of
//! CPU or blocking I/O that would otherwise hold up every request queued
//! behind them on the same worker. On its own thread the kernel preempts
//! it for a request that arrives meanwhile, or runs it on another core.
//! It runs at a lower priority (nice +5) than the request threads: when
//! they share a core, a submitted event does not preempt the request
//! thread that is answering other requests; the writer runs when that
//! thread waits, and by then more events have joined the batch (on one
//! saturated core: commits of ~9 events became larger, 61 → 46 µs of CPU
//! per request, 16,200 → 21,000 req/s; docs/benchmarks.md). Requests
//! waiting on their receipts leave the request threads idle, so the writer
//! is never starved by the work that waits for it.
//! A batch's receipts go back to the requests' runtime in one message
//! ([`receipts`]), so that waking them costs one switch of threads, not
//! one per request.

use crate::error::AuditError;
use crate::event::{AuditEvent, Chain, ChainedEvent};
use crate::metrics::AuditMetrics;
use crate::spool::Spool;
use crate::store::{Store, WriterConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

mod admission;
mod config;
mod database;
mod drain;
mod journal;
mod receipts;

pub use admission::{Durable, Reservation};
pub use config::{FailureMode, WriterConfig};

const HEALTHY: u8 = 0;
const DB_DOWN: u8 = 1;
const SPOOL_FULL: u8 = 2;

/// Told whether a batch was made durable (`Err`: why not).
type Waiter = oneshot::Sender<Result<(), String>>;

enum Msg {
    /// An event, and who waits for it to be durable.
    Event(Box<AuditEvent>, Option<Waiter>),
    Flush(Waiter),
}

#[derive(Debug)]
struct Shared {
    state: AtomicU8,
    /// Set when the last handle is gone: the database thread stops
    /// retrying a database that refuses writes (its batches stay in the
    /// journal for the next start), so shutdown never waits on it.
    closing: std::sync::atomic::AtomicBool,
    failure_mode: FailureMode,
    discard: bool,
    metrics: AuditMetrics,
    /// Ends the writer's linger early: a full batch is queued, or a flush
    /// is waiting. (Events do not wake a lingering writer one by one.)
    wake: tokio::sync::Notify,
    /// Whether the writer lingers holding an event it took from the queue
    /// (a full batch is then one fewer queued).
    holding: std::sync::atomic::AtomicBool,
    batch_max: usize,
    /// Told after every batch: the queue has room again.
    room: tokio::sync::Notify,
    /// Queued events past which [`AuditWriter::room`] waits.
    backpressure_at: usize,
    backpressure_timeout: std::time::Duration,
}

impl Shared {
    fn set_state(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.metrics.database_down.set(i64::from(state != HEALTHY));
    }

    /// Moves the state from `from` to `to`, unless it has moved meanwhile.
    fn set_state_from(&self, from: u8, to: u8) {
        if self
            .state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.metrics.database_down.set(i64::from(to != HEALTHY));
        }
    }
}

/// A handle to the writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    tx: Arc<Sender>,
    writer_id: Arc<str>,
}

/// The queue's sending side and the state shared with the writer, held by
/// every handle. When the last handle goes, the writer is told at once:
/// between batches it may be sleeping rather than watching the queue.
#[derive(Debug)]
struct Sender {
    /// `None` only while being dropped.
    tx: Option<mpsc::Sender<Msg>>,
    shared: Arc<Shared>,
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Closed first, so the writer finds the queue closed when it wakes.
        self.tx = None;
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// Joins the writer task; finishes once every handle is dropped and the
/// queue is drained.
#[derive(Debug)]
pub struct WriterTask(oneshot::Receiver<()>);

impl WriterTask {
    /// Waits until everything accepted is durable and the task has ended
    /// (or its thread has died: the receiver then sees the sender dropped).
    pub async fn join(self) {
        let _ = self.0.await;
    }
}

impl AuditWriter {
    /// Starts the writer task. Spool files left by earlier runs are
    /// drained first, so a restart after a crash loses nothing.
    pub fn start(
        store: Store,
        config: WriterConfig,
        metrics: AuditMetrics,
    ) -> Result<(Self, WriterTask), AuditError> {
        let writer_id: Arc<str> =
            format!("{}-{}", uuid::Uuid::now_v7().simple(), std::process::id()).into();
        let spool = Spool::open(&config.spool_dir, &writer_id, config.spool_max_bytes).map_err(
            |source| {
                AuditError::Spool(crate::spool::SpoolError::Io {
                    path: config.spool_dir.display().to_string(),
                    source,
                })
            },
        )?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            state: AtomicU8::new(HEALTHY),
            closing: std::sync::atomic::AtomicBool::new(false),
            failure_mode: config.failure_mode,
            discard: config.discard,
            metrics,
            wake: tokio::sync::Notify::new(),
            holding: std::sync::atomic::AtomicBool::new(false),
            batch_max: config.batch_max.max(1),
            room: tokio::sync::Notify::new(),
            backpressure_at: config.backpressure_at(),
            backpressure_timeout: config.backpressure_timeout,
        });
        let journal = match store.sqlite_syncs_commits() {
            Some(sync) if !config.discard => Some(
                journal::Journal::start(
                    &config.spool_dir,
                    Arc::clone(&writer_id),
                    sync,
                    store.clone(),
                    Arc::clone(&shared),
                    &config,
                )
                .map_err(AuditError::WriterThread)?,
            ),
            _ => None,
        };
        let task = Task {
            store,
            journal,
            spool,
            chain: Chain::keyed(writer_id.to_string(), config.key.clone()),
            shared: Arc::clone(&shared),
            config,
            db_down_since: None,
            conn: None,
            receipts: receipts::Receipts::on_current_runtime(),
        };
        let (done_tx, done_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AuditError::WriterThread)?;
        std::thread::Builder::new()
            .name("palisade-audit".into())
            .spawn(move || {
                yield_to_requests();
                runtime.block_on(task.run(rx));
                let _ = done_tx.send(());
            })
            .map_err(AuditError::WriterThread)?;
        Ok((
            Self {
                tx: Arc::new(Sender {
                    tx: Some(tx),
                    shared,
                }),
                writer_id,
            },
            WriterTask(done_rx),
        ))
    }

    /// This writer's chain id.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    /// Offers an event without waiting. `Err` means it was not accepted and
    /// will not be recorded: the caller should refuse its request. `Ok`
    /// means accepted, not yet durable: see [`Self::submit`].
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.offer(event, None)
    }

    /// Offers an event without waiting, like [`Self::record`], with a
    /// receipt that resolves once the event is durable.
    pub fn submit(&self, event: AuditEvent) -> Result<Durable, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.offer(event, Some(tx))?;
        Ok(Durable(Some(rx)))
    }

    fn offer(&self, event: AuditEvent, waiter: Option<Waiter>) -> Result<(), AuditError> {
        let shared = &self.tx.shared;
        if shared.discard {
            shared.metrics.discarded.inc();
            if let Some(w) = waiter {
                let _ = w.send(Ok(()));
            }
            return Ok(());
        }
        shared.admit()?;
        let Some(tx) = &self.tx.tx else {
            return Err(AuditError::Stopped);
        };
        let durable = waiter.is_some();
        match tx.try_send(Msg::Event(Box::new(event), waiter)) {
            Ok(()) => {
                shared.queued(tx, durable);
                Ok(())
            }
            Err(e) => Err(shared.not_queued(e)),
        }
    }

    /// Waits while the queue holds more than
    /// [`WriterConfig::backpressure_at`] events (the database is behind),
    /// at most [`WriterConfig::backpressure_timeout`]: call before starting
    /// work whose events will be offered. `Err` only when the writer stays
    /// behind that long, or has stopped.
    pub async fn room(&self) -> Result<(), AuditError> {
        let Some(tx) = &self.tx.tx else {
            return Err(AuditError::Stopped);
        };
        self.tx.shared.room(tx).await
    }

    /// Accepts an event before it is known: a place in the queue, taken
    /// with the same checks as [`Self::record`] (so `Err` when `record`
    /// would refuse), that [`Reservation::record`] then fills without
    /// fail. For work that must not start unless its audit row is
    /// accepted, but whose row says how the work went (a chat request's
    /// prompt is not sent before its row is accepted).
    pub fn reserve(&self) -> Result<Reservation, AuditError> {
        let shared = Arc::clone(&self.tx.shared);
        if shared.discard {
            return Ok(Reservation {
                permit: None,
                shared,
            });
        }
        shared.admit()?;
        let Some(tx) = &self.tx.tx else {
            return Err(AuditError::Stopped);
        };
        match tx.clone().try_reserve_owned() {
            Ok(permit) => Ok(Reservation {
                permit: Some(permit),
                shared,
            }),
            Err(e) => Err(shared.not_queued(e)),
        }
    }

    /// Waits until every event accepted before this call is durable (in
    /// the database or the spool).
    pub async fn flush(&self) -> Result<(), AuditError> {
        let Some(queue) = &self.tx.tx else {
            return Err(AuditError::Stopped);
        };
        let (tx, rx) = oneshot::channel();
        queue
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| AuditError::Stopped)?;
        self.tx.shared.wake.notify_one();
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(AuditError::NotDurable),
            Err(_) => Err(AuditError::Stopped),
        }
    }

    /// Waits until the events accepted before this call can be read from
    /// the database, at most a second: with SQLite a batch is durable in
    /// the journal, and so answered, a moment before the database has it
    /// ([`journal`]). For readers that must see the requests already
    /// answered (the audit query API, the console); a database that does
    /// not take writes holds them no longer than that, and one already
    /// known not to (the writer marked it down) not at all.
    pub async fn caught_up(&self) {
        if self.database_down() {
            return;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.flush()).await;
    }

    /// Records and waits until this event is durable.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.submit(event)?.wait().await
    }

    /// Whether the database is currently unreachable.
    pub fn database_down(&self) -> bool {
        self.tx.shared.state.load(Ordering::Acquire) != HEALTHY
    }
}

/// Lowers the calling thread's scheduling priority (nice +5; on Linux
/// `nice` applies to the calling thread only). Where the system refuses,
/// the writer runs at the request threads' priority, as it used to.
fn yield_to_requests() {
    if let Err(e) = rustix::process::nice(5) {
        tracing::debug!(error = %e, "the audit writer keeps its priority");
    }
}

struct Task {
    store: Store,
    /// SQLite: where batches are durable before they are in the database
    /// ([`journal`]).
    journal: Option<journal::Journal>,
    spool: Spool,
    chain: Chain,
    shared: Arc<Shared>,
    config: WriterConfig,
    db_down_since: Option<Instant>,
    /// The writer's own connection, kept between batches (PostgreSQL: one
    /// round trip per batch; SQLite: the statement stays prepared); closed
    /// after an error, reopened on the next batch.
    conn: Option<WriterConnection>,
    /// Where a batch's receipts go once it is durable.
    receipts: receipts::Receipts,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        self.drain_journals().await;
        self.drain_spool().await;
        self.follow_newest_row().await;
        // With a journal the database thread writes the batches: the
        // writer's own connection is not kept idle beside it (memory), and
        // is opened again only to drain a spool.
        if self.journal.is_some()
            && let Some(conn) = self.conn.take()
        {
            conn.close().await;
        }
        let mut next_drain = Instant::now() + self.config.retry_interval;
        // A batch was written lately: look at the queue again after a
        // linger instead of waiting to be woken by the next event.
        let mut busy = false;
        loop {
            // While events wait in the spool (and new ones join them, to
            // keep the order), the database is tried every retry interval,
            // whether or not traffic keeps coming.
            if !self.spool.is_empty() && Instant::now() >= next_drain {
                self.drain_spool().await;
                next_drain = Instant::now() + self.config.retry_interval;
            }
            // Whether the first event has already waited a linger.
            let mut lingered = false;
            let first = if !self.spool.is_empty() {
                match tokio::time::timeout_at(next_drain.into(), rx.recv()).await {
                    Ok(m) => m,
                    Err(_) => continue,
                }
            } else if busy {
                // Under steady traffic the writer is not waiting on the
                // queue, so recording an event never wakes this thread (a
                // wake-up is a syscall and a context switch on the
                // request's path); it looks once a linger. A full batch, a
                // flush, a submitted event or the last handle going still
                // wake it at once.
                // Quiet for a whole linger: back to waiting for an event.
                // A full batch already queued is taken at once: a writer
                // behind the traffic writes batches back to back (its
                // wake-up may have come while it was writing, and a
                // wake-up given then is kept for one wait only).
                if !rx.is_closed() && rx.len() < self.config.batch_max {
                    tokio::select! {
                        _ = self.shared.wake.notified() => {}
                        _ = tokio::time::sleep(self.config.linger) => {}
                    }
                }
                match rx.try_recv() {
                    Ok(m) => {
                        lingered = true;
                        Some(m)
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {
                        busy = false;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            } else {
                rx.recv().await
            };
            let Some(first) = first else { break };
            let mut events = Vec::new();
            let mut waiters = Vec::new();
            let mut flushes = Vec::new();
            let mut push = |m: Msg,
                            events: &mut Vec<ChainedEvent>,
                            waiters: &mut Vec<_>,
                            flushes: &mut Vec<_>| match m {
                Msg::Event(e, waiter) => {
                    events.push(self.chain.link(*e));
                    waiters.extend(waiter);
                }
                Msg::Flush(w) => flushes.push(w),
            };
            push(first, &mut events, &mut waiters, &mut flushes);
            // Linger for more, unless someone waits for this batch to be
            // durable (a flush or a submitted event),
            // a full batch is already queued, or every sender is gone
            // (shutdown). The queue is not watched meanwhile (one wake-up
            // per batch, not one per event): a sender wakes the writer
            // early when a full batch is queued or a flush is waiting.
            if !lingered && waiters.is_empty() && flushes.is_empty() && !rx.is_closed() {
                // Said before the queue is looked at: a sender either
                // counts the held event or is seen here.
                self.shared.holding.store(true, Ordering::SeqCst);
                // Pairs with the fence in `Shared::queued`: the queue's
                // length is read after the store is seen by all.
                std::sync::atomic::fence(Ordering::SeqCst);
                if rx.len() + 1 < self.config.batch_max {
                    tokio::select! {
                        _ = self.shared.wake.notified() => {}
                        _ = tokio::time::sleep(self.config.linger) => {}
                    }
                }
                self.shared.holding.store(false, Ordering::SeqCst);
            }
            while events.len() < self.config.batch_max {
                match rx.try_recv() {
                    Ok(m) => push(m, &mut events, &mut waiters, &mut flushes),
                    Err(_) => break,
                }
            }
            busy = true;
            if self.journal.is_some() {
                self.journaled(events, waiters, flushes).await;
                continue;
            }
            let n = events.len() as i64;
            let result = self.persist(events).await;
            self.shared.metrics.queue_depth.sub(n);
            waiters.append(&mut flushes);
            self.receipts.resolve(waiters, result);
            self.shared.room.notify_waiters();
            self.checkpoint_if_due();
        }
        if let Some(journal) = self.journal.take() {
            journal.close();
        }
        // Every handle is gone: the queue is drained; try once more to
        // empty the spool before exiting.
        if !self.spool.is_empty() {
            self.drain_spool().await;
        }
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }
}
