//! The database side, through one sqlx code path (`AnyPool`) for
//! PostgreSQL and SQLite: embedded migrations and the schema check,
//! queries, and chain verification; and idempotent batch inserts, which
//! on PostgreSQL take a connection of their own and one fixed-shape
//! statement (`UNNEST` of one array per column).

use crate::error::AuditError;
use crate::event::{AuditEvent, ChainedEvent, EventKind, GENESIS, chain_hash};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, PgConnection, Row};
use std::sync::LazyLock;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The columns of `audit_events` in insert order, with their PostgreSQL
/// types (for the array binds of [`insert_postgres`]).
const COLUMNS: &[(&str, &str)] = &[
    ("id", "text"),
    ("writer", "text"),
    ("seq", "int8"),
    ("time", "text"),
    ("time_ms", "int8"),
    ("kind", "text"),
    ("request_id", "text"),
    ("namespace", "text"),
    ("agent", "text"),
    ("policy", "text"),
    ("policy_generation", "int8"),
    ("rule", "text"),
    ("decision", "text"),
    ("enforced", "int8"),
    ("reason_codes", "text"),
    ("tool", "text"),
    ("argument_digest", "text"),
    ("arguments", "text"),
    ("provider", "text"),
    ("model", "text"),
    ("prompt_sha256", "text"),
    ("prompt_chars", "int8"),
    ("prompt_text", "text"),
    ("upstream_status", "int8"),
    ("latency_us", "int8"),
    ("approval", "text"),
    ("decided_by", "text"),
    ("prev_hash", "text"),
    ("hash", "text"),
];

fn column_names() -> String {
    COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `INSERT ... SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], ...)`.
static POSTGRES_INSERT: LazyLock<String> = LazyLock::new(|| {
    let arrays: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
        .collect();
    format!(
        "INSERT INTO audit_events ({}) SELECT * FROM UNNEST({}) ON CONFLICT (id) DO NOTHING",
        column_names(),
        arrays.join(", ")
    )
});

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

    /// Inserts events; rows whose id is already there are skipped, so a
    /// replay (spool drain after a crash) never duplicates. Returns how
    /// many rows were new.
    pub async fn insert(&self, events: &[ChainedEvent]) -> Result<u64, AuditError> {
        let mut conn = self.writer_connection().await?;
        let inserted = Self::insert_with(&mut conn, events).await;
        if inserted.is_ok() {
            conn.close().await;
        } else {
            conn.discard();
        }
        inserted
    }

    /// A connection for a caller that writes in a loop (the writer).
    /// PostgreSQL: a connection of its own, outside the pool, so each
    /// batch is one round trip (no liveness check before it) of one
    /// fixed-shape statement. SQLite: the pool's connection (see
    /// [`Store::can_keep_connection`]).
    pub async fn writer_connection(&self) -> Result<WriterConnection, AuditError> {
        match self.backend {
            Backend::Postgres => {
                let url = self.pool.connect_options().database_url.clone();
                let conn = sqlx::PgConnection::connect(url.as_str())
                    .await
                    .map_err(|source| AuditError::Connect {
                        url: redact_url(url.as_str()),
                        source,
                    })?;
                Ok(WriterConnection::Postgres(Box::new(conn)))
            }
            Backend::Sqlite => Ok(WriterConnection::Pooled(self.pool.acquire().await?)),
        }
    }

    /// Whether a [`Store::writer_connection`] may be kept between uses:
    /// not with SQLite, whose pool (see [`Store::connect`]) has a single
    /// connection that queries and approvals need too, and which has no
    /// round trip to save.
    pub fn can_keep_connection(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// [`Store::insert`] on a given connection.
    pub async fn insert_with(
        conn: &mut WriterConnection,
        events: &[ChainedEvent],
    ) -> Result<u64, AuditError> {
        match conn {
            WriterConnection::Postgres(pg) => insert_postgres(pg, events).await,
            WriterConnection::Pooled(any) => insert_values(any, events).await,
        }
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
        let mut sql = format!("SELECT {} FROM audit_events", column_names());
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
            column_names()
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

/// The connection the audit writer inserts on; see
/// [`Store::writer_connection`].
#[derive(Debug)]
pub enum WriterConnection {
    Postgres(Box<PgConnection>),
    Pooled(PoolConnection<Any>),
}

impl WriterConnection {
    /// Ends the session politely (PostgreSQL: a Terminate message, so the
    /// server does not log an unexpected EOF); a pooled connection goes
    /// back to the pool.
    pub async fn close(self) {
        match self {
            WriterConnection::Postgres(c) => {
                let _ = c.close().await;
            }
            WriterConnection::Pooled(c) => drop(c),
        }
    }

    /// Closes the connection without waiting for the server: after an
    /// error it may be half-way through a statement or cut off, so it
    /// must not go back into the pool.
    pub fn discard(self) {
        match self {
            // Dropping it closes the socket.
            WriterConnection::Postgres(_) => {}
            WriterConnection::Pooled(mut c) => c.close_on_drop(),
        }
    }
}

/// The reason codes column: `,a,b,` so that a LIKE on `,code,` matches
/// one code exactly.
fn reason_column(codes: &[String]) -> String {
    format!(",{},", codes.join(","))
}

/// One statement of one shape for any batch: every column is bound as
/// one array and `UNNEST` turns them into rows. PostgreSQL prepares it
/// once per connection, and the values are encoded from the events
/// without copies.
async fn insert_postgres(
    conn: &mut PgConnection,
    events: &[ChainedEvent],
) -> Result<u64, AuditError> {
    let mut inserted = 0;
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let col = |f: fn(&ChainedEvent) -> &str| chunk.iter().map(f).collect::<Vec<_>>();
        let opt = |f: fn(&ChainedEvent) -> Option<&str>| chunk.iter().map(f).collect::<Vec<_>>();
        let int = |f: fn(&ChainedEvent) -> Option<i64>| chunk.iter().map(f).collect::<Vec<_>>();
        let num = |f: fn(&ChainedEvent) -> i64| chunk.iter().map(f).collect::<Vec<_>>();
        // The few values that are not stored as they are held.
        let times: Vec<String> = chunk.iter().map(|c| c.event.time.to_string()).collect();
        let reasons: Vec<String> = chunk
            .iter()
            .map(|c| reason_column(&c.event.reason_codes))
            .collect();
        let arguments: Vec<Option<String>> = chunk
            .iter()
            .map(|c| c.event.arguments.as_ref().map(|a| a.to_string()))
            .collect();
        // Constant: column names and numbered placeholders.
        let q = sqlx::query(sqlx::AssertSqlSafe(POSTGRES_INSERT.as_str()))
            .bind(col(|c| &c.event.id))
            .bind(col(|c| &c.writer))
            .bind(num(|c| c.seq))
            .bind(&times)
            .bind(num(|c| c.event.time.as_millisecond()))
            .bind(col(|c| c.event.kind.as_str()))
            .bind(col(|c| &c.event.request_id))
            .bind(col(|c| &c.event.namespace))
            .bind(col(|c| &c.event.agent))
            .bind(opt(|c| c.event.policy.as_deref()))
            .bind(int(|c| c.event.policy_generation))
            .bind(opt(|c| c.event.rule.as_deref()))
            .bind(col(|c| &c.event.decision))
            .bind(num(|c| i64::from(c.event.enforced)))
            .bind(&reasons)
            .bind(opt(|c| c.event.tool.as_deref()))
            .bind(opt(|c| c.event.argument_digest.as_deref()))
            .bind(&arguments)
            .bind(opt(|c| c.event.provider.as_deref()))
            .bind(opt(|c| c.event.model.as_deref()))
            .bind(opt(|c| c.event.prompt_sha256.as_deref()))
            .bind(int(|c| c.event.prompt_chars))
            .bind(opt(|c| c.event.prompt_text.as_deref()))
            .bind(int(|c| c.event.upstream_status))
            .bind(int(|c| c.event.latency_us))
            .bind(opt(|c| c.event.approval.as_deref()))
            .bind(opt(|c| c.event.decided_by.as_deref()))
            .bind(col(|c| &c.prev_hash))
            .bind(col(|c| &c.hash));
        inserted += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

/// Multi-row `INSERT ... VALUES` through the Any driver (SQLite).
async fn insert_values(
    conn: &mut AnyConnection,
    events: &[ChainedEvent],
) -> Result<u64, AuditError> {
    let mut inserted = 0;
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut sql = format!("INSERT INTO audit_events ({}) VALUES ", column_names());
        let mut n = 0;
        for r in 0..chunk.len() {
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
                .bind(reason_column(&e.reason_codes))
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
