//! Idempotent batch inserts into `audit_events`: on PostgreSQL one
//! fixed-shape `UNNEST` statement on a connection of the writer's own, on
//! SQLite multi-row `VALUES` on the pool's connection.

use super::{Backend, COLUMNS, Store, column_names, redact_url};
use crate::error::AuditError;
use crate::event::{ChainHead, ChainedEvent};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection, PgConnection, Row};
use std::sync::LazyLock;

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

impl Store {
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
}

/// The connection the audit writer inserts on; see
/// [`Store::writer_connection`].
#[derive(Debug)]
pub enum WriterConnection {
    Postgres(Box<PgConnection>),
    Pooled(PoolConnection<Any>),
}

impl Store {
    /// The newest row (by id: UUIDv7, time-ordered), which a new writer's
    /// chain starts from; on the writer's connection (SQLite's one pooled
    /// connection is otherwise not back in the pool in time for the
    /// writer's first batch).
    pub async fn chain_head_on(
        conn: &mut WriterConnection,
    ) -> Result<Option<ChainHead>, AuditError> {
        const NEWEST: &str = "SELECT writer, seq, hash FROM audit_events ORDER BY id DESC LIMIT 1";
        Ok(match conn {
            WriterConnection::Postgres(pg) => {
                let row = sqlx::query(NEWEST).fetch_optional(&mut **pg).await?;
                row.map(|r| head_of(&r)).transpose()?
            }
            WriterConnection::Pooled(any) => {
                let row = sqlx::query(NEWEST).fetch_optional(&mut **any).await?;
                row.map(|r| head_of(&r)).transpose()?
            }
        })
    }
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

/// A [`ChainHead`] from a row of either database.
fn head_of<'r, R: Row>(r: &'r R) -> Result<ChainHead, sqlx::Error>
where
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    Ok(ChainHead {
        writer: r.try_get("writer")?,
        seq: r.try_get("seq")?,
        hash: r.try_get("hash")?,
    })
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
        // Anonymous `?` placeholders, bound in order: SQLite keeps `$N`
        // and `?N` in a list it searches for every parameter bound, which
        // made a 1,000-row batch cost 1.4 s (29,000 parameters, quadratic).
        let row = format!("({})", vec!["?"; COLUMNS.len()].join(", "));
        sql.push_str(&vec![row.as_str(); chunk.len()].join(", "));
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
