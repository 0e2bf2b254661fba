//! Draining the spool into the database once it answers again, and
//! writing a spool or journal file to it.

use super::{HEALTHY, Task};
use crate::error::AuditError;
use crate::event::ChainedEvent;
use crate::spool::Spool;
use std::path::{Path, PathBuf};

/// Why a file's events were not all written.
enum Unwritten {
    Read(std::io::Error),
    Insert(AuditError),
}

/// Who writes a file's events to the database: the writer (the spool, and
/// journals when there is no database thread) or SQLite's database thread
/// (journals).
pub(super) trait Inserts {
    /// Inserts one chunk of at most [`Inserts::chunk`] events (idempotent
    /// on the event id), checkpointing after it if that is due.
    fn insert_chunk(
        &mut self,
        events: &[ChainedEvent],
    ) -> impl Future<Output = Result<u64, AuditError>>;
    fn chunk(&self) -> usize;
}

/// Writes the events of a spool or journal file to the database (a torn
/// end skipped with a warning): how many.
async fn write_file(to: &mut impl Inserts, path: &Path) -> Result<u64, Unwritten> {
    let contents = Spool::read(path).map_err(Unwritten::Read)?;
    if let Some(w) = &contents.warning {
        tracing::warn!("{w}");
    }
    for chunk in contents.events.chunks(to.chunk().max(1)) {
        to.insert_chunk(chunk).await.map_err(Unwritten::Insert)?;
    }
    Ok(contents.events.len() as u64)
}

/// Writes the journal files in `paths` that earlier runs left to the
/// database, oldest first, deleting each once written. A file another
/// live process holds (locked: a gateway still running, or one starting)
/// stays in `paths`, to be tried again: that process may yet stop and
/// leave it. Stops at the first file the database refuses, which stays in
/// `paths` with the ones after it. Returns how many events were written,
/// and the refusal.
pub(super) async fn write_left_journals(
    to: &mut impl Inserts,
    paths: &mut Vec<PathBuf>,
) -> (u64, Result<(), AuditError>) {
    let mut written = 0;
    let mut held_elsewhere = Vec::new();
    let mut result = Ok(());
    while !paths.is_empty() {
        let path = paths.remove(0);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            // Written and deleted meanwhile (by the process that held it).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open an audit journal file; tried again later");
                held_elsewhere.push(path);
                continue;
            }
        };
        // Held (locked, and still the file at its path) while it is read,
        // written and deleted.
        if !super::journal::lock(&file) || !super::journal::same_file(&file, &path) {
            held_elsewhere.push(path);
            continue;
        }
        match write_file(to, &path).await {
            Ok(n) => {
                written += n;
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::error!(path = %path.display(), error = %e, "cannot remove a written audit journal file");
                }
            }
            Err(Unwritten::Read(e)) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read an audit journal file");
            }
            Err(Unwritten::Insert(e)) => {
                paths.insert(0, path);
                result = Err(e);
                break;
            }
        }
    }
    held_elsewhere.append(paths);
    *paths = held_elsewhere;
    (written, result)
}

impl Inserts for Task {
    async fn insert_chunk(&mut self, events: &[ChainedEvent]) -> Result<u64, AuditError> {
        let n = self.insert(events).await?;
        self.checkpoint_if_due();
        Ok(n)
    }

    fn chunk(&self) -> usize {
        self.config.batch_max
    }
}

impl Task {
    /// Writes every spool file to the database, oldest first, then deletes
    /// it. Inserts are idempotent on the event id, so a crash between the
    /// insert and the delete replays harmlessly.
    pub(super) async fn drain_spool(&mut self) {
        let files = self.spool.files();
        // Reading a spool file costs time in proportion to its size (a
        // long outage spools hundreds of megabytes): first make sure the
        // database answers at all.
        if !files.is_empty()
            && let Err(e) = self.connection().await
        {
            tracing::debug!(error = %e, "audit database still unreachable");
            self.mark_down();
            return;
        }
        for path in files {
            let written = match write_file(self, &path).await {
                Ok(n) => n,
                Err(Unwritten::Read(e)) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot read audit spool file");
                    return;
                }
                Err(Unwritten::Insert(e)) => {
                    tracing::debug!(error = %e, "audit database still unreachable");
                    self.mark_down();
                    return;
                }
            };
            if let Err(e) = self.spool.remove(&path) {
                tracing::error!(path = %path.display(), error = %e, "cannot remove drained audit spool file");
                return;
            }
            self.shared.metrics.drained.inc_by(written);
        }
        self.shared
            .metrics
            .spool_bytes
            .set(self.spool.used_bytes() as i64);
        if let Some(since) = self.db_down_since.take() {
            tracing::info!(down_for = ?since.elapsed(), "audit database reachable again; spool drained");
        }
        self.set_state(HEALTHY);
    }
}
