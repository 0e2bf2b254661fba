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
