//! Reading the audit back: [`Store::query`] with a [`Filter`], and
//! [`Store::verify`], which walks every writer's hash chain.

use super::{Store, column_names};
use crate::error::AuditError;
use crate::event::{AuditEvent, ChainedEvent, EventKind};
use crate::key::AuditKey;
use sqlx::Row;
use sqlx::any::AnyRow;

/// Filters for [`Store::query`]; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// One row, by its `id`.
    pub id: Option<String>,
    pub request_id: Option<String>,
    pub namespace: Option<String>,
    pub agent: Option<String>,
    pub decision: Option<String>,
    /// One reason code, e.g. `kill_switch.agent`.
    pub reason: Option<String>,
    pub tool: Option<String>,
    pub since: Option<jiff::Timestamp>,
    pub until: Option<jiff::Timestamp>,
    /// Rows after this position (for `--follow`): `(time_ms, id)`.
    pub after: Option<(i64, String)>,
    pub limit: Option<i64>,
    /// Newest rows first (with `limit`: the newest `limit` rows).
    pub newest_first: bool,
}

pub use crate::verify::{BrokenLink, VerifyReport};

impl Store {
    /// Rows matching `filter`, oldest first (or newest first).
    pub async fn query(&self, filter: &Filter) -> Result<Vec<ChainedEvent>, AuditError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let mut eq = |column: &str, value: &Option<String>, clauses: &mut Vec<String>| {
            if let Some(v) = value {
                binds.push(Bind::Text(v.clone()));
                clauses.push(format!("{column} = ${}", binds.len()));
            }
        };
        eq("id", &filter.id, &mut clauses);
        eq("request_id", &filter.request_id, &mut clauses);
        eq("namespace", &filter.namespace, &mut clauses);
        eq("agent", &filter.agent, &mut clauses);
        eq("decision", &filter.decision, &mut clauses);
        eq("tool", &filter.tool, &mut clauses);
        if let Some(r) = &filter.reason {
            binds.push(Bind::Text(format!("%,{r},%")));
            clauses.push(format!("reason_codes LIKE ${}", binds.len()));
        }
        if let Some(t) = filter.since {
            binds.push(Bind::Int(t.as_millisecond()));
            clauses.push(format!("time_ms >= ${}", binds.len()));
        }
        if let Some(t) = filter.until {
            binds.push(Bind::Int(t.as_millisecond()));
            clauses.push(format!("time_ms < ${}", binds.len()));
        }
        if let Some((ms, id)) = &filter.after {
            binds.push(Bind::Int(*ms));
            let a = binds.len();
            binds.push(Bind::Int(*ms));
            let b = binds.len();
            binds.push(Bind::Text(id.clone()));
            let c = binds.len();
            clauses.push(format!(
                "(time_ms > ${a} OR (time_ms = ${b} AND id > ${c}))"
            ));
        }
        let mut sql = format!("SELECT {} FROM audit_events", column_names());
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(if filter.newest_first {
            " ORDER BY time_ms DESC, id DESC"
        } else {
            " ORDER BY time_ms, id"
        });
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(0)));
        }
        // Constant clauses and numbered placeholders only; values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Int(i) => q.bind(i),
            };
        }
        q.fetch_all(&self.pool).await?.iter().map(decode).collect()
    }

    /// Walks every writer's chain and reports the first broken link
    /// (see [`crate::verify`]); keyed rows are checked with `key`.
    pub async fn verify(&self, key: Option<&AuditKey>) -> Result<VerifyReport, AuditError> {
        let sql = format!(
            "SELECT {} FROM audit_events ORDER BY writer, seq",
            column_names()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        let rows: Vec<ChainedEvent> = rows.iter().map(decode).collect::<Result<_, _>>()?;
        Ok(crate::verify::check(&rows, key))
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

fn decode(row: &AnyRow) -> Result<ChainedEvent, AuditError> {
    let s = |c: &str| row.try_get::<String, _>(c);
    let os = |c: &str| row.try_get::<Option<String>, _>(c);
    let oi = |c: &str| row.try_get::<Option<i64>, _>(c);
    let time: jiff::Timestamp = s("time")?
        .parse()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let kind = s("kind")?;
    let reasons = s("reason_codes")?;
    let event = AuditEvent {
        id: s("id")?,
        time,
        kind: EventKind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown event kind {kind:?}").into()))?,
        request_id: s("request_id")?,
        namespace: s("namespace")?,
        agent: s("agent")?,
        policy: os("policy")?,
        policy_generation: oi("policy_generation")?,
        rule: os("rule")?,
        decision: s("decision")?,
        enforced: row.try_get::<i64, _>("enforced")? != 0,
        reason_codes: reasons
            .split(',')
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
        tool: os("tool")?,
        argument_digest: os("argument_digest")?,
        arguments: os("arguments")?.and_then(|a| serde_json::from_str(&a).ok()),
        provider: os("provider")?,
        model: os("model")?,
        prompt_sha256: os("prompt_sha256")?,
        prompt_chars: oi("prompt_chars")?,
        prompt_text: os("prompt_text")?,
        upstream_status: oi("upstream_status")?,
        latency_us: oi("latency_us")?,
        approval: os("approval")?,
        decided_by: os("decided_by")?,
        input_tokens: oi("input_tokens")?,
        output_tokens: oi("output_tokens")?,
        cached_tokens: oi("cached_tokens")?,
        result_sha256: os("result_sha256")?,
        result_bytes: oi("result_bytes")?,
        detail: os("detail")?,
    };
    Ok(ChainedEvent {
        event,
        writer: s("writer")?,
        seq: row.try_get::<i64, _>("seq")?,
        prev_hash: s("prev_hash")?,
        hash: s("hash")?,
    })
}
