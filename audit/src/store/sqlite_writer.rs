//! The audit writer's own SQLite connection: a rusqlite connection used
//! on the writer's thread (a batch costs no hand-over to sqlx's worker
//! thread and back), one transaction per batch of one prepared
//! single-row statement per event, and the write-ahead log checkpointed
//! between batches.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the log
//! past its threshold, so every request waiting on that commit also waited
//! for the checkpoint's fsyncs. Instead the connection notes the log's
//! length at each commit (a WAL hook, which turns the automatic checkpoint
//! off on this connection; sqlx's pool connections keep theirs) and the
//! writer checkpoints at the same threshold between commits
//! ([`SqliteWriter::checkpoint_if_due`]) — on the thread that writes the
//! journal to the database, so no request waits for it.

use super::insert::reason_column;
use super::{COLUMNS, SqliteFile, column_names};
use crate::error::AuditError;
use crate::event::{ChainHead, ChainedEvent};
use std::sync::LazyLock;

/// Pages in the log after which the writer checkpoints: SQLite's own
/// automatic threshold.
const CHECKPOINT_PAGES: i32 = 1000;

/// Pages past which a log that checkpoints cannot shorten (a reader keeps
/// old pages in use) is worth a warning: the file keeps growing.
const STUCK_PAGES: i32 = 10 * CHECKPOINT_PAGES;

thread_local! {
    /// What the WAL hook saw at the last commit on this thread; read back
    /// by the commit's caller on the same thread, right after it.
    static LOG_PAGES: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn note_log_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    LOG_PAGES.with(|p| p.set(pages));
    Ok(())
}

#[derive(Debug)]
pub(super) struct SqliteWriter {
    file: SqliteFile,
    db: rusqlite::Connection,
    /// Pages in the log after this connection's last commit.
    log_pages: i32,
    /// Whether a log that does not shorten has been warned about.
    warned: bool,
}

impl SqliteWriter {
    /// Opens the writer's SQLite connection: WAL (the pool has set it on
    /// the file already; it is a property of the file), the URL's
    /// `synchronous`, which is per connection, and the log noted at each
    /// commit.
    pub(super) fn open(file: &SqliteFile) -> Result<Self, AuditError> {
        use rusqlite::OpenFlags;
        let open = || {
            let db = rusqlite::Connection::open_with_flags(
                &file.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            db.busy_timeout(std::time::Duration::from_secs(5))?;
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.execute_batch(file.synchronous)?;
            db.wal_hook(Some(note_log_pages));
            Ok(db)
        };
        Ok(Self {
            file: file.clone(),
            db: open().map_err(|source| sqlite_error(file, source))?,
            log_pages: 0,
            warned: false,
        })
    }

    /// Inserts a batch in one transaction; rows whose id is there already
    /// are skipped.
    pub(super) fn insert(&mut self, events: &[ChainedEvent]) -> Result<u64, AuditError> {
        LOG_PAGES.with(|p| p.set(0));
        let inserted = insert_sqlite(&mut self.db, events)
            .map_err(|source| sqlite_error(&self.file, source))?;
        self.log_pages = self.log_pages.max(LOG_PAGES.with(|p| p.replace(0)));
        Ok(inserted)
    }

    /// The chain head `query` selects (writer, seq, hash of one row).
    pub(super) fn newest(&mut self, query: &str) -> Result<Option<ChainHead>, AuditError> {
        use rusqlite::OptionalExtension;
        self.db
            .query_row(query, [], |r| {
                Ok(ChainHead {
                    writer: r.get("writer")?,
                    seq: r.get("seq")?,
                    hash: r.get("hash")?,
                })
            })
            .optional()
            .map_err(|source| sqlite_error(&self.file, source))
    }

    /// Checkpoints (`PASSIVE`: never waits for readers) once the log has
    /// reached [`CHECKPOINT_PAGES`]. One that fails or is cut short is
    /// tried again after the next commit, as SQLite's automatic one would
    /// be; a log that stays long is warned about once.
    pub(super) fn checkpoint_if_due(&mut self) {
        if self.log_pages < CHECKPOINT_PAGES {
            return;
        }
        let pages = std::mem::take(&mut self.log_pages);
        let checkpoint = self
            .db
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            });
        match checkpoint {
            Ok((log, done)) if log == done => self.warned = false,
            Ok((log, done)) if pages >= STUCK_PAGES && !self.warned => {
                self.warned = true;
                tracing::warn!(path = %self.file.path.display(), log_pages = log, checkpointed = done, "the audit database's write-ahead log cannot be checkpointed while a reader holds old pages; it keeps growing until that reader finishes");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(path = %self.file.path.display(), error = %e, "audit log checkpoint failed; tried again after the next batch")
            }
        }
    }
}

fn sqlite_error(file: &SqliteFile, source: rusqlite::Error) -> AuditError {
    AuditError::SqliteWriter {
        path: file.path.display().to_string(),
        source,
    }
}

/// `INSERT ... VALUES (?, ?, ...) ON CONFLICT (id) DO NOTHING`, one row.
static SQLITE_INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO audit_events ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
        column_names(),
        vec!["?"; COLUMNS.len()].join(", ")
    )
});

/// One transaction per batch (one commit, which `synchronous=FULL`
/// fsyncs), the statement prepared once per connection and run per event
/// with borrowed values.
fn insert_sqlite(
    db: &mut rusqlite::Connection,
    events: &[ChainedEvent],
) -> Result<u64, rusqlite::Error> {
    let tx = db.transaction()?;
    let mut inserted = 0;
    {
        let mut statement = tx.prepare_cached(&SQLITE_INSERT)?;
        for c in events {
            let e = &c.event;
            inserted += statement.execute(rusqlite::params![
                e.id,
                c.writer,
                c.seq,
                e.time.to_string(),
                e.time.as_millisecond(),
                e.kind.as_str(),
                e.request_id,
                e.namespace,
                e.agent,
                e.policy,
                e.policy_generation,
                e.rule,
                e.decision,
                i64::from(e.enforced),
                reason_column(&e.reason_codes),
                e.tool,
                e.argument_digest,
                e.arguments.as_ref().map(|a| a.to_string()),
                e.provider,
                e.model,
                e.prompt_sha256,
                e.prompt_chars,
                e.prompt_text,
                e.upstream_status,
                e.latency_us,
                e.approval,
                e.decided_by,
                e.input_tokens,
                e.output_tokens,
                e.cached_tokens,
                e.result_sha256,
                e.result_bytes,
                e.detail,
                c.prev_hash,
                c.hash,
            ])? as u64;
        }
    }
    tx.commit()?;
    Ok(inserted)
}
