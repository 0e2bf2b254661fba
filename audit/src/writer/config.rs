//! The writer's settings: where it spools, what it does while the
//! database is down, and how it batches.

use crate::key::AuditKey;
use std::path::PathBuf;
use std::time::Duration;

/// What happens while the database is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    /// Keep events in the durable local spool (default).
    #[default]
    Spool,
    /// Refuse new events, so the caller can refuse its request. Events
    /// already accepted are still spooled: nothing accepted is lost.
    FailClosed,
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub spool_dir: PathBuf,
    pub failure_mode: FailureMode,
    /// Events the queue holds before `record` reports `QueueFull`. Past
    /// three quarters of it ([`Self::backpressure_at`]), `room` makes new
    /// work wait; the last quarter is for the events of work already
    /// under way.
    pub queue_capacity: usize,
    /// How long `room` waits for the writer to catch up before the
    /// request is refused.
    pub backpressure_timeout: Duration,
    /// Events per database batch.
    pub batch_max: usize,
    /// Spool size at which new events are refused.
    pub spool_max_bytes: u64,
    /// How often to retry an unreachable database.
    pub retry_interval: Duration,
    /// How long the first event of a batch waits for others to join it
    /// (unless the batch fills or someone is waiting in `flush`). Under
    /// load this turns one database round trip per event into one per
    /// batch: at most 1/linger writes per second. The writer sleeps
    /// through it: events queued meanwhile cost their senders no wake-up.
    /// Under steady traffic it also looks at the queue once a linger
    /// between batches instead of being woken by each batch's first event.
    pub linger: Duration,
    /// Accept every event and drop it (counted in `discarded`): auditing
    /// off, for trying the gateway out and measuring what the audit costs.
    pub discard: bool,
    /// How long connecting, or writing one batch, may take before the
    /// database counts as unreachable (the batch then goes to the spool).
    /// Without it a server that stops answering, rather than refusing,
    /// would hold the writer, and every `flush`, for minutes.
    pub database_timeout: Duration,
    /// The chain's key: rows are hashed with HMAC-SHA256 under it, so that
    /// someone who can write to the database cannot recompute the hashes
    /// of rows they rewrote. Without one, plain SHA-256 (tamper evidence
    /// only against those who do not know the algorithm).
    pub key: Option<AuditKey>,
}

impl WriterConfig {
    /// Queued events past which new work waits for room: three quarters
    /// of the queue.
    pub fn backpressure_at(&self) -> usize {
        (self.queue_capacity.max(1) * 3 / 4).max(1)
    }

    pub fn new(spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            spool_dir: spool_dir.into(),
            failure_mode: FailureMode::Spool,
            queue_capacity: 65_536,
            backpressure_timeout: Duration::from_secs(10),
            batch_max: 1000,
            spool_max_bytes: 1 << 30,
            retry_interval: Duration::from_secs(1),
            linger: Duration::from_millis(25),
            discard: false,
            database_timeout: Duration::from_secs(10),
            key: None,
        }
    }
}
