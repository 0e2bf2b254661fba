//! The database side, through one sqlx code path (`AnyPool`) for
//! PostgreSQL and SQLite: embedded migrations and the schema check,
//! idempotent multi-row inserts, queries, and chain verification.

use crate::error::AuditError;
use crate::event::{AuditEvent, ChainedEvent, EventKind, GENESIS, chain_hash};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Row};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const COLUMNS: &[&str] = &[
    "id",
    "writer",
    "seq",
    "time",
    "time_ms",
    "kind",
    "request_id",
    "namespace",
    "agent",
    "policy",
    "policy_generation",
    "rule",
    "decision",
    "enforced",
    "reason_codes",
    "tool",
    "argument_digest",
    "arguments",
    "provider",
    "model",
    "prompt_sha256",
    "prompt_chars",
    "prompt_text",
    "upstream_status",
    "latency_us",
    "approval",
    "decided_by",
    "prev_hash",
    "hash",
];

/// Rows per INSERT statement: keeps every backend under its bind limit.
const ROWS_PER_STATEMENT: usize = 1000;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Whether opening a store may change its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Apply pending migrations, then check.
    Apply,
    /// Only check; an older schema is an error.
    VerifyOnly,
}

/// Filters for [`Store::query`]; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
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
}

/// The first broken link `verify` found, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub writer: String,
    pub seq: i64,
    pub id: String,
    pub problem: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub rows: u64,
    pub writers: u64,
    pub broken: Option<BrokenLink>,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

fn backend_of(url: &str) -> Result<Backend, AuditError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(AuditError::UnsupportedUrl(url.to_owned()))
    }
}

/// Hides the password of a URL for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Store {
    /// Connects without touching the schema.
    pub async fn connect(url: &str) -> Result<Self, AuditError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let url_with_mode = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
            }
            _ => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 1 } else { 4 })
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&url_with_mode)
            .await
            .map_err(|source| AuditError::Connect {
                url: redact_url(url),
                source,
            })?;
        Ok(Self { pool, backend })
    }

    /// Connects, applies or checks migrations, and refuses a schema that
    /// is not exactly the one this binary expects.
    pub async fn open(url: &str, migrations: Migrations) -> Result<Self, AuditError> {
        let store = Self::connect(url).await?;
        if migrations == Migrations::Apply {
            store.migrate().await?;
        }
        store.check_schema().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn migrate(&self) -> Result<(), AuditError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Compares the applied migrations with the embedded ones.
    pub async fn check_schema(&self) -> Result<(), AuditError> {
        let rows = sqlx::query(
            "SELECT version, checksum, CAST(success AS INTEGER) AS ok FROM _sqlx_migrations",
        )
        .fetch_all(&self.pool)
        .await;
        let applied: Vec<(i64, Vec<u8>)> = match rows {
            Ok(rows) => rows
                .iter()
                .filter(|r| r.try_get::<i64, _>("ok").unwrap_or(0) != 0)
                .filter_map(|r| {
                    Some((
                        r.try_get::<i64, _>("version").ok()?,
                        r.try_get::<Vec<u8>, _>("checksum").ok()?,
                    ))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        if let Some((found, _)) = applied.iter().find(|(v, _)| *v > known) {
            return Err(AuditError::SchemaNewer {
                found: *found,
                known,
            });
        }
        for m in MIGRATOR.iter() {
            if let Some((_, checksum)) = applied.iter().find(|(v, _)| *v == m.version)
                && checksum.as_slice() != &*m.checksum
            {
                return Err(AuditError::SchemaModified { version: m.version });
            }
        }
        let missing: Vec<i64> = MIGRATOR
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.iter().any(|(a, _)| a == v))
            .collect();
        if !missing.is_empty() {
            return Err(AuditError::SchemaOlder { missing });
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await.is_ok()
    }

    /// Inserts events; rows whose id is already there are skipped, so a
    /// replay (spool drain after a crash) never duplicates. Returns how
    /// many rows were new.
    pub async fn insert(&self, events: &[ChainedEvent]) -> Result<u64, AuditError> {
        let mut conn = self.pool.acquire().await?;
        Self::insert_on(&mut conn, events).await
    }

    /// A connection of its own, for a caller that writes in a loop (the
    /// writer): each batch is then one round trip, without the pool's
    /// liveness check before it.
    pub async fn dedicated(&self) -> Result<PoolConnection<Any>, AuditError> {
        Ok(self.pool.acquire().await?)
    }

    /// Whether a [`Store::dedicated`] connection may be kept between uses:
    /// not with SQLite, whose pool (see [`Store::connect`]) has a single
    /// connection that queries and approvals need too, and which has no
    /// round trip to save.
    pub fn can_keep_connection(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// [`Store::insert`] on a given connection.
    pub async fn insert_on(
        conn: &mut AnyConnection,
        events: &[ChainedEvent],
    ) -> Result<u64, AuditError> {
        let mut inserted = 0;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut sql = format!("INSERT INTO audit_events ({}) VALUES ", COLUMNS.join(", "));
            let mut n = 0;
            for (r, _) in chunk.iter().enumerate() {
                if r > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for c in 0..COLUMNS.len() {
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    n += 1;
                    sql.push_str(&format!("${n}"));
                }
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (id) DO NOTHING");
            // Built only from constant column names and numbered placeholders.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                let e = &c.event;
                q = q
                    .bind(e.id.clone())
                    .bind(c.writer.clone())
                    .bind(c.seq)
                    .bind(e.time.to_string())
                    .bind(e.time.as_millisecond())
                    .bind(e.kind.as_str().to_owned())
                    .bind(e.request_id.clone())
                    .bind(e.namespace.clone())
                    .bind(e.agent.clone())
                    .bind(e.policy.clone())
                    .bind(e.policy_generation)
                    .bind(e.rule.clone())
                    .bind(e.decision.clone())
                    .bind(i64::from(e.enforced))
                    .bind(format!(",{},", e.reason_codes.join(",")))
                    .bind(e.tool.clone())
                    .bind(e.argument_digest.clone())
                    .bind(e.arguments.as_ref().map(|a| a.to_string()))
                    .bind(e.provider.clone())
                    .bind(e.model.clone())
                    .bind(e.prompt_sha256.clone())
                    .bind(e.prompt_chars)
                    .bind(e.prompt_text.clone())
                    .bind(e.upstream_status)
                    .bind(e.latency_us)
                    .bind(e.approval.clone())
                    .bind(e.decided_by.clone())
                    .bind(c.prev_hash.clone())
                    .bind(c.hash.clone());
            }
            inserted += q.execute(&mut *conn).await?.rows_affected();
        }
        Ok(inserted)
    }

    /// Rows matching `filter`, oldest first.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<ChainedEvent>, AuditError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let mut eq = |column: &str, value: &Option<String>, clauses: &mut Vec<String>| {
            if let Some(v) = value {
                binds.push(Bind::Text(v.clone()));
                clauses.push(format!("{column} = ${}", binds.len()));
            }
        };
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
        let mut sql = format!("SELECT {} FROM audit_events", COLUMNS.join(", "));
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY time_ms, id");
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

    /// Walks every writer's chain and reports the first broken link:
    /// an edited row (hash mismatch), a deleted or reordered row (previous
    /// hash mismatch or a gap in seq).
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        let sql = format!(
            "SELECT {} FROM audit_events ORDER BY writer, seq",
            COLUMNS.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        let mut report = VerifyReport {
            rows: rows.len() as u64,
            writers: 0,
            broken: None,
        };
        let mut current: Option<(String, i64, String)> = None;
        for row in &rows {
            let c = decode(row)?;
            let broken = |problem: String| BrokenLink {
                writer: c.writer.clone(),
                seq: c.seq,
                id: c.event.id.clone(),
                problem,
            };
            let (expected_seq, expected_prev) = match &current {
                Some((w, seq, hash)) if *w == c.writer => (seq + 1, hash.clone()),
                _ => {
                    report.writers += 1;
                    (1, GENESIS.to_owned())
                }
            };
            if c.seq != expected_seq {
                report.broken = Some(broken(format!(
                    "expected seq {expected_seq} but found {}: rows are missing or were reordered",
                    c.seq
                )));
                break;
            }
            if c.prev_hash != expected_prev {
                report.broken = Some(broken("previous-hash link does not match the previous row: rows were deleted or reordered".into()));
                break;
            }
            if chain_hash(&c.event, &c.writer, c.seq, &c.prev_hash) != c.hash {
                report.broken = Some(broken(
                    "row content does not match its hash: the row was edited".into(),
                ));
                break;
            }
            current = Some((c.writer.clone(), c.seq, c.hash.clone()));
        }
        Ok(report)
    }

    /// The pool, for callers that need raw access (tests, tools).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
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
    };
    Ok(ChainedEvent {
        event,
        writer: s("writer")?,
        seq: row.try_get::<i64, _>("seq")?,
        prev_hash: s("prev_hash")?,
        hash: s("hash")?,
    })
}
