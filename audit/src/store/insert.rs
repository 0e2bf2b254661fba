//! Idempotent batch inserts into `audit_events`, each on a connection of
//! the writer's own: on PostgreSQL one fixed-shape `UNNEST` statement; on
//! SQLite one prepared single-row statement run for each event inside one
//! transaction, synchronously on the calling thread (the writer's own).

use super::sqlite_writer::SqliteWriter;
use super::{Backend, COLUMNS, Store, column_names, redact_url};
use crate::error::AuditError;
use crate::event::{ChainHead, ChainedEvent};
use sqlx::{Connection, PgConnection, Row};
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
            conn.checkpoint_if_due();
            conn.close().await;
        } else {
            conn.discard();
        }
        inserted
    }

    /// A connection for a caller that writes in a loop (the writer),
    /// outside the pool. PostgreSQL: each batch is one round trip (no
    /// liveness check before it) of one fixed-shape statement. SQLite: a
    /// rusqlite connection used on the caller's thread, so a batch costs
    /// no hand-over to sqlx's worker thread and back (which, at 8,000
    /// events/s, was most of the audit's CPU); SQLite lets it write beside
    /// the pool's connection (WAL; each waits up to 5 s for the other's
    /// write lock).
    pub async fn writer_connection(&self) -> Result<WriterConnection, AuditError> {
        match (self.backend, &self.sqlite) {
            (Backend::Sqlite, Some(file)) => Ok(WriterConnection(Conn::Sqlite(Box::new(
                SqliteWriter::open(file)?,
            )))),
            _ => {
                let url = self.pool.connect_options().database_url.clone();
                let conn = sqlx::PgConnection::connect(url.as_str())
                    .await
                    .map_err(|source| AuditError::Connect {
                        url: redact_url(url.as_str()),
                        source,
                    })?;
                Ok(WriterConnection(Conn::Postgres(Box::new(conn))))
            }
        }
    }

    /// [`Store::insert`] on a given connection.
    pub async fn insert_with(
        conn: &mut WriterConnection,
        events: &[ChainedEvent],
    ) -> Result<u64, AuditError> {
        match &mut conn.0 {
            Conn::Postgres(pg) => insert_postgres(pg, events).await,
            Conn::Sqlite(sqlite) => sqlite.insert(events),
        }
    }
}

/// The connection the audit writer inserts on; see
/// [`Store::writer_connection`].
#[derive(Debug)]
pub struct WriterConnection(Conn);

#[derive(Debug)]
enum Conn {
    Postgres(Box<PgConnection>),
    Sqlite(Box<SqliteWriter>),
}

impl Store {
    /// The newest row (by id: UUIDv7, time-ordered), which a new writer's
    /// chain starts from; on the writer's connection.
    pub async fn chain_head_on(
        conn: &mut WriterConnection,
    ) -> Result<Option<ChainHead>, AuditError> {
        const NEWEST: &str = "SELECT writer, seq, hash FROM audit_events ORDER BY id DESC LIMIT 1";
        Ok(match &mut conn.0 {
            Conn::Postgres(pg) => {
                let row = sqlx::query(NEWEST).fetch_optional(&mut **pg).await?;
                row.map(|r| head_of(&r)).transpose()?
            }
            Conn::Sqlite(sqlite) => sqlite.newest(NEWEST)?,
        })
    }
}

impl WriterConnection {
    /// Ends the session politely (PostgreSQL: a Terminate message, so the
    /// server does not log an unexpected EOF; SQLite: closed, which
    /// checkpoints the log when it is the last connection).
    pub async fn close(self) {
        match self.0 {
            Conn::Postgres(c) => {
                let _ = c.close().await;
            }
            Conn::Sqlite(sqlite) => drop(sqlite),
        }
    }

    /// Checkpoints SQLite's write-ahead log once it is due; call between
    /// batches, after their waiters are told
    /// ([`SqliteWriter::checkpoint_if_due`]). PostgreSQL: nothing to do.
    pub fn checkpoint_if_due(&mut self) {
        if let Conn::Sqlite(sqlite) = &mut self.0 {
            sqlite.checkpoint_if_due();
        }
    }

    /// Closes the connection without waiting for the server: after an
    /// error it may be half-way through a statement or cut off. (Dropping
    /// it closes the socket, or the SQLite file, rolling back what an
    /// unfinished transaction wrote.)
    pub fn discard(self) {}
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
pub(super) fn reason_column(codes: &[String]) -> String {
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
            .bind(int(|c| c.event.input_tokens))
            .bind(int(|c| c.event.output_tokens))
            .bind(int(|c| c.event.cached_tokens))
            .bind(opt(|c| c.event.result_sha256.as_deref()))
            .bind(int(|c| c.event.result_bytes))
            .bind(opt(|c| c.event.detail.as_deref()))
            .bind(col(|c| &c.prev_hash))
            .bind(col(|c| &c.hash));
        inserted += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}
