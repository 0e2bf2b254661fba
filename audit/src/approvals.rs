//! Approvals of the standalone gateway, kept in the audit database (SQLite
//! by default, Postgres if configured). The same rules as the `Approval`
//! resource in a cluster: created once per held request, decided once by a
//! human, consumed once, and only before `expires_at`. Every change is a
//! compare-and-set `UPDATE ... WHERE` so two processes (a gateway and the
//! `approvals` CLI) can never both win.

use crate::error::AuditError;
use crate::store::Store;
use jiff::Timestamp;
use palisade_policy::{ApprovalDecision, HeldCall};
use sqlx::Row;

/// One held call, as the approvals table stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRow {
    pub namespace: String,
    pub name: String,
    /// What was held (a bounded preview of the arguments, redacted as the
    /// policy says).
    pub call: HeldCall,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub decision: Option<ApprovalDecision>,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<Timestamp>,
    pub consumed_at: Option<Timestamp>,
    pub consumed_by: Option<String>,
}

impl ApprovalRow {
    /// A new, undecided row for `call`, held at `requested_at`.
    pub fn held(
        namespace: String,
        name: String,
        call: HeldCall,
        requested_at: Timestamp,
        expires_at: Timestamp,
    ) -> Self {
        Self {
            namespace,
            name,
            call,
            requested_at,
            expires_at,
            decision: None,
            reason: None,
            decided_by: None,
            decided_at: None,
            consumed_at: None,
            consumed_by: None,
        }
    }
}

/// Why a decision was not recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecideRefused {
    NotFound,
    AlreadyDecided(ApprovalDecision),
    Expired,
}

const COLUMNS: &str = "namespace, name, agent, tool, arguments_preview, arguments_truncated, arguments_digest, request_id, policy, policy_generation, rule, requested_by, requested_at_ms, expires_at_ms, decision, reason, decided_by, decided_at_ms, consumed_at_ms, consumed_by";

/// An approval waiting for a decision at the time bound to `?`:
/// undecided, unused, unexpired.
const PENDING: &str = "decision IS NULL AND consumed_at_ms IS NULL AND expires_at_ms > ?";

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<ApprovalRow, sqlx::Error> {
    let truncated: i64 = r.try_get("arguments_truncated")?;
    let decision: Option<String> = r.try_get("decision")?;
    Ok(ApprovalRow {
        namespace: r.try_get("namespace")?,
        name: r.try_get("name")?,
        call: HeldCall {
            agent: r.try_get("agent")?,
            tool: r.try_get("tool")?,
            arguments_preview: r.try_get("arguments_preview")?,
            arguments_truncated: truncated != 0,
            arguments_digest: r.try_get("arguments_digest")?,
            request_id: r.try_get("request_id")?,
            policy: r.try_get("policy")?,
            policy_generation: r.try_get("policy_generation")?,
            rule: r.try_get("rule")?,
            requested_by: r.try_get("requested_by")?,
        },
        requested_at: ts(r.try_get("requested_at_ms")?),
        expires_at: ts(r.try_get("expires_at_ms")?),
        decision: decision.as_deref().and_then(ApprovalDecision::parse),
        reason: r.try_get("reason")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get::<Option<i64>, _>("decided_at_ms")?.map(ts),
        consumed_at: r.try_get::<Option<i64>, _>("consumed_at_ms")?.map(ts),
        consumed_by: r.try_get("consumed_by")?,
    })
}

/// The approvals table.
#[derive(Debug, Clone)]
pub struct ApprovalStore {
    store: Store,
}

impl ApprovalStore {
    /// Uses an opened (migrated) audit store.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// `?` placeholders numbered (`$1`, `$2`, ...) as both backends accept.
    fn sql(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 16);
        let mut n = 0;
        for c in s.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Inserts `row` unless an approval of that name exists; returns what is
    /// stored either way (idempotent for the same request).
    pub async fn create(&self, row: &ApprovalRow) -> Result<ApprovalRow, AuditError> {
        let insert = self.sql(&format!(
            "INSERT INTO approvals ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL) ON CONFLICT (namespace, name) DO NOTHING"
        ));
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(&row.namespace)
            .bind(&row.name)
            .bind(&row.call.agent)
            .bind(&row.call.tool)
            .bind(&row.call.arguments_preview)
            .bind(i64::from(row.call.arguments_truncated))
            .bind(&row.call.arguments_digest)
            .bind(&row.call.request_id)
            .bind(&row.call.policy)
            .bind(row.call.policy_generation)
            .bind(row.call.rule.clone())
            .bind(row.call.requested_by.clone())
            .bind(ms(row.requested_at))
            .bind(ms(row.expires_at))
            .execute(self.store.pool())
            .await?;
        self.get(&row.namespace, &row.name)
            .await?
            .ok_or(AuditError::Database(sqlx::Error::RowNotFound))
    }

    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ApprovalRow>, AuditError> {
        let q = self.sql(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE namespace = ? AND name = ?"
        ));
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(namespace)
            .bind(name)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// Approvals, newest first; only undecided, unexpired ones with
    /// `pending_only`.
    pub async fn list(
        &self,
        namespace: Option<&str>,
        pending_only: bool,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>, AuditError> {
        let mut q = format!("SELECT {COLUMNS} FROM approvals WHERE 1 = 1");
        if namespace.is_some() {
            q.push_str(" AND namespace = ?");
        }
        if pending_only {
            q.push_str(" AND ");
            q.push_str(PENDING);
        }
        q.push_str(" ORDER BY requested_at_ms DESC, name LIMIT ?");
        let q = self.sql(&q);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(q));
        if let Some(ns) = namespace {
            query = query.bind(ns);
        }
        if pending_only {
            query = query.bind(ms(now));
        }
        let rows = query.bind(limit).fetch_all(self.store.pool()).await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// How many approvals `agent` of `namespace` has waiting for a
    /// decision (undecided, unused, unexpired) at `now`.
    pub async fn count_pending(
        &self,
        namespace: &str,
        agent: &str,
        now: Timestamp,
    ) -> Result<u64, AuditError> {
        let q = self.sql(&format!(
            "SELECT COUNT(*) AS n FROM approvals WHERE namespace = ? AND agent = ? AND {PENDING}"
        ));
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(namespace)
            .bind(agent)
            .bind(ms(now))
            .fetch_one(self.store.pool())
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Approvals of this name in any namespace (names carry a digest, so
    /// more than one is unlikely but possible).
    pub async fn find(&self, name: &str) -> Result<Vec<ApprovalRow>, AuditError> {
        let q = self.sql(&format!("SELECT {COLUMNS} FROM approvals WHERE name = ?"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(name)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Records a human's decision, once, before expiry.
    pub async fn decide(
        &self,
        namespace: &str,
        name: &str,
        decision: ApprovalDecision,
        reason: Option<&str>,
        decided_by: &str,
        now: Timestamp,
    ) -> Result<Result<ApprovalRow, DecideRefused>, AuditError> {
        let q = self.sql(
            "UPDATE approvals SET decision = ?, reason = ?, decided_by = ?, decided_at_ms = ? \
             WHERE namespace = ? AND name = ? AND decision IS NULL AND expires_at_ms > ?",
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(decision.as_str())
            .bind(reason.map(str::to_owned))
            .bind(decided_by)
            .bind(ms(now))
            .bind(namespace)
            .bind(name)
            .bind(ms(now))
            .execute(self.store.pool())
            .await?
            .rows_affected();
        let row = self.get(namespace, name).await?;
        Ok(match (done, row) {
            (_, None) => Err(DecideRefused::NotFound),
            (1, Some(row)) => Ok(row),
            (_, Some(row)) => match row.decision {
                Some(d) => Err(DecideRefused::AlreadyDecided(d)),
                None => Err(DecideRefused::Expired),
            },
        })
    }

    /// Marks an approved approval consumed; `true` only for the one caller
    /// that won. The caller checks agent, tool and digest first.
    pub async fn consume(
        &self,
        namespace: &str,
        name: &str,
        consumed_by: &str,
        now: Timestamp,
    ) -> Result<bool, AuditError> {
        let q = self.sql(
            "UPDATE approvals SET consumed_at_ms = ?, consumed_by = ? \
             WHERE namespace = ? AND name = ? AND decision = ? \
             AND consumed_at_ms IS NULL AND expires_at_ms > ?",
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(ms(now))
            .bind(consumed_by)
            .bind(namespace)
            .bind(name)
            .bind(ApprovalDecision::Approved.as_str())
            .bind(ms(now))
            .execute(self.store.pool())
            .await?
            .rows_affected();
        Ok(done == 1)
    }

    /// Undecided approvals whose deadline passed and whose expiry has not
    /// been reported yet; each is returned to exactly one caller.
    pub async fn take_expired(&self, now: Timestamp) -> Result<Vec<ApprovalRow>, AuditError> {
        let q = self.sql(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE decision IS NULL AND consumed_at_ms IS NULL \
             AND expiry_recorded = 0 AND expires_at_ms <= ? LIMIT 1000"
        ));
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(ms(now))
            .fetch_all(self.store.pool())
            .await?;
        let mark = self.sql(
            "UPDATE approvals SET expiry_recorded = 1 WHERE namespace = ? AND name = ? AND expiry_recorded = 0",
        );
        let mut taken = Vec::new();
        for r in &rows {
            let row = from_row(r)?;
            let won = sqlx::query(sqlx::AssertSqlSafe(mark.clone()))
                .bind(&row.namespace)
                .bind(&row.name)
                .execute(self.store.pool())
                .await?
                .rows_affected()
                == 1;
            if won {
                taken.push(row);
            }
        }
        Ok(taken)
    }
}
