//! The audit crate's one error type.

use crate::spool::SpoolError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("audit database: {0}")]
    Database(#[from] sqlx::Error),
    /// The audit writer's own SQLite connection (see `WriterConnection`).
    #[error("SQLite audit database {path}: {source}")]
    SqliteWriter {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "an in-memory SQLite audit ({url}) keeps nothing past the process, and the audit writer \
         could not share it: give a file, e.g. sqlite:///var/lib/palisade/audit.db"
    )]
    SqliteInMemory { url: String },
    #[error("audit database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the audit database schema is older than this binary expects (missing migrations {missing:?}); run `palisade-gateway audit migrate --url ...` or start with migrations enabled"
    )]
    SchemaOlder { missing: Vec<i64> },
    #[error(
        "the audit database schema is newer than this binary supports (it has migration {found}, this binary knows up to {known}); upgrade Palisade before writing to it"
    )]
    SchemaNewer { found: i64, known: i64 },
    #[error(
        "audit database migration {version} was changed after it was applied (checksum mismatch); restore the original migration"
    )]
    SchemaModified { version: i64 },
    #[error("unsupported audit URL {0:?}: use postgres://... or sqlite://PATH")]
    UnsupportedUrl(String),
    #[error(
        "audit URL: synchronous={value:?} is not a setting; use ?synchronous=normal (the default: a recorded decision survives the process dying) or ?synchronous=full (it also survives a power cut, at an fsync per batch)"
    )]
    SqliteSynchronous { value: String },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the audit queue is full; the event was not accepted")]
    QueueFull,
    #[error(
        "the audit database is unreachable and the failure mode is failClosed; the event could not be made durable"
    )]
    NotDurable,
    #[error("cannot start the audit writer's thread: {0}")]
    WriterThread(#[source] std::io::Error),
    #[error("the audit writer has stopped")]
    Stopped,
    #[error(
        "the audit database did not answer within {0:?}; events are kept in the spool until it does"
    )]
    Timeout(std::time::Duration),
    #[error(
        "audit key {source_name}: {len} bytes; use at least 32 random bytes, e.g. `openssl rand -hex 32 > palisade-audit.key`"
    )]
    KeyTooShort { source_name: String, len: usize },
    #[error("audit key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--runtime-role {0:?} is not a plain PostgreSQL role name; use lowercase letters, digits and _ (e.g. palisade_writer)"
    )]
    RoleName(String),
    #[error(
        "PostgreSQL role {0:?} does not exist; create it (CREATE ROLE {0} LOGIN PASSWORD '...') or pass its password with --runtime-password-env so that migrate creates it"
    )]
    NoSuchRole(String),
    #[error("--runtime-role needs a PostgreSQL audit database; SQLite has no roles")]
    RolesNeedPostgres,
}
