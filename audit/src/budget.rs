//! The limits' counters shared by gateway replicas (PostgreSQL): a
//! replica leases a share of a budget's window — a few requests or tokens
//! at a time — so that all replicas together never lease more than the
//! limit, and spends its share without asking the database again.

use crate::error::AuditError;
use crate::store::{Backend, Store};
use sqlx::Row;

impl Store {
    /// Whether leases can be shared here (PostgreSQL; SQLite is one
    /// process's file, where counting in memory is the same).
    pub fn shares_budgets(&self) -> bool {
        self.backend() == Backend::Postgres
    }

    /// Leases up to `want` units of `budget`'s window starting at
    /// `window_start` (what it counts and the window are in the name),
    /// never taking the window past `limit`: the units granted (0 when
    /// the window is spent). Windows that ended a day before `window_start`
    /// are dropped on the way.
    pub async fn lease_budget(
        &self,
        budget: &str,
        window_start: i64,
        window_len: i64,
        want: i64,
        limit: i64,
    ) -> Result<i64, AuditError> {
        let mut tx = self.pool().begin().await?;
        // The row exists; then it is locked while it is read and raised,
        // so two replicas' leases never both see the same room.
        sqlx::query(
            "INSERT INTO budget_usage (budget, window_start, used) VALUES ($1, $2, 0) \
             ON CONFLICT (budget, window_start) DO NOTHING",
        )
        .bind(budget)
        .bind(window_start)
        .execute(&mut *tx)
        .await?;
        let used: i64 = sqlx::query(
            "SELECT used FROM budget_usage WHERE budget = $1 AND window_start = $2 FOR UPDATE",
        )
        .bind(budget)
        .bind(window_start)
        .fetch_one(&mut *tx)
        .await?
        .try_get("used")?;
        let granted = want.min(limit - used).max(0);
        if granted > 0 {
            sqlx::query(
                "UPDATE budget_usage SET used = used + $3 WHERE budget = $1 AND window_start = $2",
            )
            .bind(budget)
            .bind(window_start)
            .bind(granted)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM budget_usage WHERE budget = $1 AND window_start < $2")
            .bind(budget)
            .bind(window_start - 86_400 / window_len.max(1) - 1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(granted)
    }
}

/// A stream place's row is stale (its replica stopped renewing it) after
/// this long.
pub const STREAM_SLOT_STALE_MS: i64 = 60_000;

impl Store {
    /// Takes one of `limit` places for an open stream of `budget` for the
    /// replica `holder`, counting every replica's places renewed within
    /// [`STREAM_SLOT_STALE_MS`]: whether it got one. Operations on one
    /// budget take turns (a transaction-scoped advisory lock), so two
    /// replicas never both take the last place.
    pub async fn open_stream(
        &self,
        budget: &str,
        holder: &str,
        limit: i64,
        now_ms: i64,
    ) -> Result<bool, AuditError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(budget)
            .execute(&mut *tx)
            .await?;
        let open: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(open), 0) AS BIGINT) AS open FROM stream_slots \
             WHERE budget = $1 AND (renewed_ms >= $2 OR holder = $3)",
        )
        .bind(budget)
        .bind(now_ms - STREAM_SLOT_STALE_MS)
        .bind(holder)
        .fetch_one(&mut *tx)
        .await?
        .try_get("open")?;
        let granted = open < limit;
        if granted {
            sqlx::query(
                "INSERT INTO stream_slots (budget, holder, open, renewed_ms) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (budget, holder) DO UPDATE SET open = stream_slots.open + 1, renewed_ms = $3",
            )
            .bind(budget)
            .bind(holder)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(granted)
    }

    /// Gives back a place [`Store::open_stream`] took.
    pub async fn close_stream(
        &self,
        budget: &str,
        holder: &str,
        now_ms: i64,
    ) -> Result<(), AuditError> {
        sqlx::query(
            "UPDATE stream_slots SET open = GREATEST(open - 1, 0), renewed_ms = $3 \
             WHERE budget = $1 AND holder = $2",
        )
        .bind(budget)
        .bind(holder)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Keeps `holder`'s open places counted (its streams are still open).
    pub async fn renew_streams(&self, holder: &str, now_ms: i64) -> Result<(), AuditError> {
        sqlx::query("UPDATE stream_slots SET renewed_ms = $2 WHERE holder = $1 AND open > 0")
            .bind(holder)
            .bind(now_ms)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
