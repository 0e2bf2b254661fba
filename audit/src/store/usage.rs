//! Tokens and requests per namespace, agent, provider and model over a
//! time range: what `palisade-gateway audit usage` and `GET
//! /v1/audit/usage` answer. A request is a routed `chat` or `embedding`
//! row that reached a provider (refusals name none); its tokens are in
//! that row, or, for a stream, in the `usage` row recorded at its end.
//! Also the denials per reason code (the console's "denials by reason").

use super::Store;
use crate::error::AuditError;
use serde::Serialize;
use sqlx::Row;

/// Which rows to add up.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub namespace: Option<String>,
    pub agent: Option<String>,
    pub since: Option<jiff::Timestamp>,
    pub until: Option<jiff::Timestamp>,
}

/// One namespace, agent, provider and model's total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub namespace: String,
    pub agent: String,
    pub provider: String,
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
}

impl Store {
    /// The totals `filter` asks for, by namespace, agent, provider, model.
    pub async fn usage(&self, filter: &UsageFilter) -> Result<Vec<Usage>, AuditError> {
        let mut clauses = vec![
            "kind IN ('chat', 'embedding', 'usage')".to_owned(),
            "provider IS NOT NULL".to_owned(),
        ];
        let mut texts = Vec::new();
        let mut times = Vec::new();
        for (column, value) in [("namespace", &filter.namespace), ("agent", &filter.agent)] {
            if let Some(v) = value {
                texts.push(v.clone());
                clauses.push(format!("{column} = ${}", texts.len()));
            }
        }
        for (op, t) in [(">=", filter.since), ("<", filter.until)] {
            if let Some(t) = t {
                times.push(t.as_millisecond());
                clauses.push(format!("time_ms {op} ${}", texts.len() + times.len()));
            }
        }
        // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back.
        let total = |c: &str| format!("CAST(SUM(COALESCE({c}, 0)) AS BIGINT) AS {c}");
        let sql = format!(
            "SELECT namespace, agent, provider, COALESCE(model, '') AS model, \
             CAST(SUM(CASE WHEN kind = 'usage' THEN 0 ELSE 1 END) AS BIGINT) AS requests, {}, {}, {} \
             FROM audit_events WHERE {} \
             GROUP BY namespace, agent, provider, COALESCE(model, '') \
             ORDER BY namespace, agent, provider, model",
            total("input_tokens"),
            total("output_tokens"),
            total("cached_tokens"),
            clauses.join(" AND ")
        );
        // Constant clauses and numbered placeholders only; values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in texts {
            q = q.bind(t);
        }
        for t in times {
            q = q.bind(t);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Usage {
                    namespace: r.try_get("namespace")?,
                    agent: r.try_get("agent")?,
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    requests: r.try_get("requests")?,
                    input_tokens: r.try_get("input_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    cached_tokens: r.try_get("cached_tokens")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AuditError::from)
    }

    /// Enforced denials since `since`, counted per reason code (a row
    /// with two codes counts for both), most frequent first.
    pub async fn denials_by_reason(
        &self,
        since: jiff::Timestamp,
    ) -> Result<Vec<(String, i64)>, AuditError> {
        let rows = sqlx::query(
            "SELECT reason_codes, CAST(COUNT(*) AS BIGINT) AS n FROM audit_events \
             WHERE decision = 'Deny' AND time_ms >= $1 GROUP BY reason_codes",
        )
        .bind(since.as_millisecond())
        .fetch_all(&self.pool)
        .await?;
        let mut counts = std::collections::BTreeMap::<String, i64>::new();
        for r in &rows {
            let codes: String = r.try_get("reason_codes")?;
            let n: i64 = r.try_get("n")?;
            for code in codes.split(',').filter(|c| !c.is_empty()) {
                *counts.entry(code.to_owned()).or_default() += n;
            }
        }
        let mut out: Vec<(String, i64)> = counts.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }
}
