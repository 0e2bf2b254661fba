//! Draining the spool into the database once it answers again, and
//! writing a spool or journal file to it.

use super::{HEALTHY, Task};
use crate::spool::Spool;
use std::path::Path;

/// Why a file's events were not all written.
pub(super) enum Unwritten {
    Read(std::io::Error),
    Insert(crate::AuditError),
}

impl Task {
    /// Writes the events of a spool or journal file to the database (a
    /// torn end skipped with a warning): how many.
    pub(super) async fn write_file(&mut self, path: &Path) -> Result<u64, Unwritten> {
        let contents = Spool::read(path).map_err(Unwritten::Read)?;
        if let Some(w) = &contents.warning {
            tracing::warn!("{w}");
        }
        for chunk in contents.events.chunks(self.config.batch_max.max(1)) {
            self.insert(chunk).await.map_err(Unwritten::Insert)?;
            self.checkpoint_if_due();
        }
        Ok(contents.events.len() as u64)
    }

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
            let written = match self.write_file(&path).await {
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
