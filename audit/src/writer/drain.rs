//! Draining the spool into the database once it answers again.

use super::{HEALTHY, Task};
use crate::spool::Spool;

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
            let contents = match Spool::read(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot read audit spool file");
                    return;
                }
            };
            if let Some(w) = &contents.warning {
                tracing::warn!("{w}");
            }
            for chunk in contents.events.chunks(self.config.batch_max.max(1)) {
                if let Err(e) = self.insert(chunk).await {
                    tracing::debug!(error = %e, "audit database still unreachable");
                    self.mark_down();
                    return;
                }
                self.checkpoint_if_due();
            }
            if let Err(e) = self.spool.remove(&path) {
                tracing::error!(path = %path.display(), error = %e, "cannot remove drained audit spool file");
                return;
            }
            self.shared
                .metrics
                .drained
                .inc_by(contents.events.len() as u64);
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
