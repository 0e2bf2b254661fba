//! The database side, through one sqlx code path (`AnyPool`) for
//! PostgreSQL and SQLite: connecting, embedded migrations and the schema
//! check (here); idempotent batch inserts, which on PostgreSQL take a
//! connection of their own and one fixed-shape statement (`UNNEST` of one
//! array per column) ([`insert`]); queries and chain verification
//! ([`read`]); tokens and requests per agent, provider and model
//! ([`usage`]).

mod insert;
mod read;
mod sqlite_writer;
mod usage;

pub use insert::WriterConnection;
pub use read::{BrokenLink, Filter, VerifyReport};
pub use usage::{Usage, UsageFilter};

use crate::error::AuditError;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The columns of `audit_events` in insert order, with their PostgreSQL
/// types (for the array binds of the PostgreSQL insert).
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
    ("input_tokens", "int8"),
    ("output_tokens", "int8"),
    ("cached_tokens", "int8"),
    ("result_sha256", "text"),
    ("result_bytes", "int8"),
    ("detail", "text"),
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

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: the database file and the `PRAGMA synchronous` statement,
    /// for the audit writer's own connection ([`Store::writer_connection`]).
    sqlite: Option<SqliteFile>,
}

/// An SQLite database file as the audit writer opens it.
#[derive(Debug, Clone)]
struct SqliteFile {
    path: std::path::PathBuf,
    synchronous: &'static str,
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

/// An SQLite audit URL as sqlx takes it (`mode=rwc` unless a mode is
/// given; Palisade's own `synchronous` parameter taken out), and the
/// `PRAGMA synchronous` statement that parameter asks for:
///
/// - `normal` (default): in WAL mode a commit is written to the log but
///   not fsync'd (the log is, at each checkpoint). A committed decision
///   survives the gateway dying — SIGKILL, OOM, a panic — since the data
///   is in the kernel's page cache; a power cut or kernel crash may lose
///   the commits since the last checkpoint.
/// - `full`: every commit fsyncs the log, so a committed decision also
///   survives a power cut; costs an fsync per batch (group commit shares
///   it among the batch's events).
fn sqlite_url(url: &str) -> Result<(String, &'static str), AuditError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut synchronous = "PRAGMA synchronous = NORMAL";
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                synchronous = match value.to_ascii_lowercase().as_str() {
                    "normal" => "PRAGMA synchronous = NORMAL",
                    "full" => "PRAGMA synchronous = FULL",
                    _ => {
                        return Err(AuditError::SqliteSynchronous {
                            value: value.to_owned(),
                        });
                    }
                }
            }
            _ => kept.push(pair),
        }
    }
    if !kept.iter().any(|p| p.starts_with("mode=")) {
        kept.push("mode=rwc");
    }
    Ok((format!("{base}?{}", kept.join("&")), synchronous))
}

/// The file an SQLite audit URL names, as sqlx reads the URL; an
/// in-memory database is refused (the writer's own connection could not
/// see it, and an audit that ends with the process is no audit).
fn sqlite_file(
    url: &str,
    url_with_mode: &str,
    synchronous: &'static str,
) -> Result<SqliteFile, AuditError> {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url_with_mode)?;
    let path = options.get_filename().to_path_buf();
    let name = path.to_string_lossy();
    if name.is_empty()
        || name.starts_with("file:sqlx-in-memory")
        || name.contains(":memory:")
        || url_with_mode.contains("mode=memory")
    {
        return Err(AuditError::SqliteInMemory {
            url: url.to_owned(),
        });
    }
    Ok(SqliteFile { path, synchronous })
}

impl Store {
    /// Connects without touching the schema.
    pub async fn connect(url: &str) -> Result<Self, AuditError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let (url_with_mode, synchronous) = match backend {
            Backend::Sqlite => sqlite_url(url)?,
            Backend::Postgres => (url.to_owned(), ""),
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 1 } else { 4 })
            .acquire_timeout(std::time::Duration::from_secs(5));
        if backend == Backend::Sqlite {
            options = options.after_connect(move |conn, _| {
                Box::pin(async move {
                    // WAL: a commit appends to the log instead of
                    // rewriting pages through a rollback journal, and
                    // readers do not block the writer.
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(synchronous).execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        let sqlite = match backend {
            Backend::Sqlite => Some(sqlite_file(url, &url_with_mode, synchronous)?),
            Backend::Postgres => None,
        };
        let pool = options
            .connect(&url_with_mode)
            .await
            .map_err(|source| AuditError::Connect {
                url: redact_url(url),
                source,
            })?;
        Ok(Self {
            pool,
            backend,
            sqlite,
        })
    }

    /// Connects, applies or checks migrations, and refuses a schema that
    /// is not exactly the one this binary expects.
    pub async fn open(url: &str, migrations: Migrations) -> Result<Self, AuditError> {
        let store = Self::connect(url).await?;
        match store.check_schema().await {
            // Up to date: nothing to apply, so a role that may not change
            // the schema (the chart's runtime role) opens it too.
            Ok(()) => Ok(store),
            Err(AuditError::SchemaOlder { .. }) if migrations == Migrations::Apply => {
                store.migrate().await?;
                store.check_schema().await?;
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// SQLite: whether its commits are fsync'd (`synchronous=full`);
    /// `None` on PostgreSQL. The writer's journal syncs as the database
    /// would.
    pub(crate) fn sqlite_syncs_commits(&self) -> Option<bool> {
        self.sqlite
            .as_ref()
            .map(|f| f.synchronous == "PRAGMA synchronous = FULL")
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

    /// The pool, for callers that need raw access (tests, tools).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqlite_url_takes_palisades_synchronous_out_and_names_a_bad_value() {
        assert_eq!(
            sqlite_url("sqlite:///a/b.db").unwrap(),
            (
                "sqlite:///a/b.db?mode=rwc".to_owned(),
                "PRAGMA synchronous = NORMAL"
            )
        );
        assert_eq!(
            sqlite_url("sqlite:///a/b.db?synchronous=FULL&mode=ro").unwrap(),
            (
                "sqlite:///a/b.db?mode=ro".to_owned(),
                "PRAGMA synchronous = FULL"
            )
        );
        let err = sqlite_url("sqlite:///a/b.db?synchronous=off")
            .unwrap_err()
            .to_string();
        assert!(err.contains("synchronous=\"off\""), "{err}");
        assert!(err.contains("?synchronous=full"), "{err}");
    }

    #[test]
    fn an_in_memory_sqlite_audit_is_refused_with_the_fix() {
        for url in ["sqlite::memory:", "sqlite://x.db?mode=memory"] {
            let (with_mode, synchronous) = sqlite_url(url).unwrap();
            let err = sqlite_file(url, &with_mode, synchronous)
                .unwrap_err()
                .to_string();
            assert!(err.contains("in-memory"), "{url}: {err}");
            assert!(err.contains("sqlite:///"), "{url}: {err}");
        }
        let (with_mode, synchronous) = sqlite_url("sqlite:///var/lib/a.db").unwrap();
        let file = sqlite_file("sqlite:///var/lib/a.db", &with_mode, synchronous).unwrap();
        assert_eq!(file.path, std::path::Path::new("/var/lib/a.db"));
    }
}
