//! Making a batch durable on the writer's own connection: the database
//! when it answers and nothing waits in the spool, the spool (fsync'd)
//! otherwise; the state the admission reads; the chain's start from the
//! newest row.

use super::{DB_DOWN, HEALTHY, SPOOL_FULL, Task};
use crate::error::AuditError;
use crate::event::ChainedEvent;
use crate::store::{Store, WriterConnection};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The connection kept in `slot`, or a new one from `store` (within
/// `limit`), kept there.
async fn connect_kept<'a>(
    slot: &'a mut Option<WriterConnection>,
    store: &Store,
    limit: Duration,
) -> Result<&'a mut WriterConnection, AuditError> {
    let conn = match slot.take() {
        Some(kept) => kept,
        None => tokio::time::timeout(limit, store.writer_connection())
            .await
            .map_err(|_| AuditError::Timeout(limit))??,
    };
    Ok(slot.insert(conn))
}

/// Inserts on the connection kept in `slot` (opened if there is none),
/// within `limit`; a connection that fails is discarded, and the next
/// batch opens a fresh one.
pub(super) async fn insert_kept(
    slot: &mut Option<WriterConnection>,
    store: &Store,
    events: &[ChainedEvent],
    limit: Duration,
) -> Result<u64, AuditError> {
    let conn = connect_kept(slot, store, limit).await?;
    let result = tokio::time::timeout(limit, Store::insert_with(conn, events))
        .await
        .unwrap_or(Err(AuditError::Timeout(limit)));
    if result.is_err()
        && let Some(broken) = slot.take()
    {
        broken.discard();
    }
    result
}

impl Task {
    /// Starts this writer's chain from the newest row in the database (an
    /// earlier writer's spool is drained first), so that deleting the end
    /// of an earlier chain, or all of it, breaks the link. A database that
    /// does not answer leaves the chain unlinked (`verify` lists it).
    pub(super) async fn follow_newest_row(&mut self) {
        let limit = self.config.database_timeout;
        let head = tokio::time::timeout(limit, async {
            Store::chain_head_on(self.connection().await?).await
        })
        .await;
        if !matches!(head, Ok(Ok(_)))
            && let Some(broken) = self.conn.take()
        {
            broken.discard();
        }
        match head {
            Ok(Ok(Some(head))) => self.chain.follow(&head),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the newest audit row; this writer's chain starts unlinked")
            }
            Err(_) => {
                tracing::warn!(
                    "the audit database did not answer; this writer's chain starts unlinked"
                )
            }
        }
    }

    /// The database did not answer a retry: down, unless the spool is
    /// (also) full, which stays the stronger refusal.
    pub(super) fn mark_down(&self) {
        self.set_state(if self.shared.state.load(Ordering::Acquire) == SPOOL_FULL {
            SPOOL_FULL
        } else {
            DB_DOWN
        });
    }

    pub(super) fn set_state(&self, state: u8) {
        self.shared.set_state(state);
    }

    /// Inserts on the writer's connection, opening it if needed. A kept
    /// connection that fails (the database restarted since the last
    /// batch, say) is replaced and the batch tried once more on a fresh
    /// one; inserts are idempotent, so the retry cannot duplicate.
    pub(super) async fn insert(&mut self, events: &[ChainedEvent]) -> Result<u64, AuditError> {
        let kept = self.conn.is_some();
        let first = self.insert_once(events).await;
        // A kept connection that failed may just have gone stale (the
        // database restarted since): one more try on a fresh one. A timeout
        // is not retried: the server is there but not answering.
        match first {
            Err(AuditError::Timeout(_)) => first,
            Err(_) if kept => self.insert_once(events).await,
            other => other,
        }
    }

    /// Between batches, once their waiters are told: SQLite's log
    /// checkpointed if it is due ([`WriterConnection::checkpoint_if_due`]).
    pub(super) fn checkpoint_if_due(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.checkpoint_if_due();
        }
    }

    /// The writer's connection, opened if there is none.
    pub(super) async fn connection(&mut self) -> Result<&mut WriterConnection, AuditError> {
        connect_kept(&mut self.conn, &self.store, self.config.database_timeout).await
    }

    pub(super) async fn insert_once(&mut self, events: &[ChainedEvent]) -> Result<u64, AuditError> {
        insert_kept(
            &mut self.conn,
            &self.store,
            events,
            self.config.database_timeout,
        )
        .await
    }

    /// Makes a batch durable: the database if it answers and nothing is
    /// waiting in the spool (order), the spool otherwise.
    pub(super) async fn persist(&mut self, events: Vec<ChainedEvent>) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        if self.spool.is_empty() {
            match self.insert(&events).await {
                Ok(_) => {
                    self.shared.metrics.written.inc_by(events.len() as u64);
                    self.shared
                        .metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(());
                }
                Err(e) => {
                    if self.db_down_since.is_none() {
                        tracing::warn!(error = %e, "audit database unreachable; spooling events locally");
                        self.db_down_since = Some(Instant::now());
                    }
                    self.set_state(DB_DOWN);
                }
            }
        }
        match self.spool.append(&events) {
            Ok(()) => {
                self.shared.metrics.spooled.inc_by(events.len() as u64);
                self.shared
                    .metrics
                    .spool_bytes
                    .set(self.spool.used_bytes() as i64);
                self.shared
                    .metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
                if self.shared.state.load(Ordering::Acquire) == HEALTHY {
                    self.set_state(DB_DOWN);
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "audit events could not be made durable; refusing new events");
                self.shared.metrics.failed.inc_by(events.len() as u64);
                self.set_state(SPOOL_FULL);
                Err(e.to_string())
            }
        }
    }
}
