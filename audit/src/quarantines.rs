//! Quarantined agents of the standalone gateway, kept in the audit
//! database (in a cluster a quarantine is an annotation on the AIPolicy,
//! see `palisade_crds::quarantine`). A row is added once per agent, when a
//! security alert its policy's `spec.security.quarantineOn` names is
//! raised, and removed only when a human lifts it.

use crate::error::AuditError;
use crate::store::Store;
use jiff::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

/// One quarantined agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRow {
    pub namespace: String,
    pub agent: String,
    /// The alert's kind, e.g. `path_traversal`.
    pub kind: String,
    /// What the alert saw (never an argument's value).
    pub detail: String,
    pub request_id: String,
    pub since: Timestamp,
}

impl QuarantineRow {
    /// How decisions say why (as a cluster's annotation reads).
    pub fn why(&self) -> String {
        format!(
            "alert.{} at {}: {} (request {})",
            self.kind, self.since, self.detail, self.request_id
        )
    }
}

/// The `quarantines` table.
#[derive(Debug, Clone)]
pub struct QuarantineStore {
    store: Store,
}

impl QuarantineStore {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Adds `row`; an agent already quarantined keeps its first row.
    /// Whether it was added.
    pub async fn add(&self, row: &QuarantineRow) -> Result<bool, AuditError> {
        let done = sqlx::query(
            "INSERT INTO quarantines (namespace, agent, kind, detail, request_id, since_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (namespace, agent) DO NOTHING",
        )
        .bind(&row.namespace)
        .bind(&row.agent)
        .bind(&row.kind)
        .bind(&row.detail)
        .bind(&row.request_id)
        .bind(row.since.as_millisecond())
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every quarantined agent, oldest first.
    pub async fn list(&self) -> Result<Vec<QuarantineRow>, AuditError> {
        let rows = sqlx::query(
            "SELECT namespace, agent, kind, detail, request_id, since_ms FROM quarantines \
             ORDER BY since_ms, namespace, agent",
        )
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.iter().map(row_of).collect::<Result<_, _>>()?)
    }

    /// Lifts `agent`'s quarantine: the row removed, if there was one.
    pub async fn lift(
        &self,
        namespace: &str,
        agent: &str,
    ) -> Result<Option<QuarantineRow>, AuditError> {
        let removed = sqlx::query(
            "DELETE FROM quarantines WHERE namespace = $1 AND agent = $2 \
             RETURNING namespace, agent, kind, detail, request_id, since_ms",
        )
        .bind(namespace)
        .bind(agent)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(removed.as_ref().map(row_of).transpose()?)
    }
}

/// A row of the `quarantines` table, as its columns read.
fn row_of(r: &AnyRow) -> Result<QuarantineRow, sqlx::Error> {
    let ms: i64 = r.try_get("since_ms")?;
    Ok(QuarantineRow {
        namespace: r.try_get("namespace")?,
        agent: r.try_get("agent")?,
        kind: r.try_get("kind")?,
        detail: r.try_get("detail")?,
        request_id: r.try_get("request_id")?,
        since: Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH),
    })
}
