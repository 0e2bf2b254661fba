//! `sql_query`: one read-only query over a database the policy names.
//! Read-only is enforced by the engine, not by reading the SQL:
//!
//! - **SQLite**: the file opened `SQLITE_OPEN_READ_ONLY`, `query_only` on,
//!   extension loading off, and an authorizer that allows reading
//!   (`SELECT`, column reads, functions but `load_extension`, recursive
//!   CTEs) and a few schema-reading pragmas (`table_info`, ...), and refuses everything else
//!   (writes, `ATTACH`, pragma changes, transactions, DDL). Only one
//!   statement is prepared; text after it is refused. A progress handler
//!   stops a query past its timeout; rows and bytes are capped while
//!   reading, so a recursive CTE that never ends is cut, not run out.
//! - **PostgreSQL**: a connection per call, `BEGIN READ ONLY`, `SET LOCAL
//!   statement_timeout`, the query through the extended protocol (one
//!   statement only), rows read as `row_to_json` until the caps, then
//!   `ROLLBACK`.
//!
//! The answer: `{"database", "columns", "rows", "rowCount", "truncated"}`.

use super::{Failure, Failure::*};
use futures_util::TryStreamExt;
use palisade_policy::{SqlDatabase, SqlEngine, SqlTool};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{OpenFlags, types::ValueRef};
use serde_json::{Map, Value, json};
use sqlx::{Connection, Row};
use std::time::{Duration, Instant};

/// Pragmas that only read the schema (`PRAGMA table_info(t)`).
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "foreign_key_list",
];

/// Runs `query` on `database`.
pub(crate) async fn run(
    tool: &SqlTool,
    database: &SqlDatabase,
    query: &str,
) -> Result<Value, Failure> {
    let timeout = Duration::from_millis(tool.timeout_ms);
    let caps = Caps {
        rows: tool.max_rows as usize,
        bytes: usize::try_from(tool.max_result_bytes).unwrap_or(usize::MAX),
    };
    let (columns, rows, truncated) = match &database.engine {
        SqlEngine::Sqlite { path } => {
            let (path, query) = (path.clone(), query.to_owned());
            tokio::task::spawn_blocking(move || sqlite(&path, &query, timeout, caps))
                .await
                .map_err(|e| Failed(format!("the query task failed: {e}")))??
        }
        SqlEngine::Postgres { url } => {
            match tokio::time::timeout(
                timeout + Duration::from_secs(2),
                postgres(url.expose(), query, timeout, caps),
            )
            .await
            {
                Ok(r) => r?,
                Err(_) => return Err(Timeout(format!("the query ran longer than {timeout:?}"))),
            }
        }
    };
    Ok(json!({
        "database": database.name,
        "columns": columns,
        "rowCount": rows.len(),
        "rows": rows,
        "truncated": truncated,
    }))
}

#[derive(Clone, Copy)]
struct Caps {
    rows: usize,
    bytes: usize,
}

type Table = (Vec<String>, Vec<Value>, bool);

/// Adds `row` unless a cap is reached; `false` once it is.
fn take(rows: &mut Vec<Value>, bytes: &mut usize, caps: Caps, row: Value) -> bool {
    if rows.len() >= caps.rows {
        return false;
    }
    *bytes += row.to_string().len();
    if *bytes > caps.bytes {
        return false;
    }
    rows.push(row);
    true
}

fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        AuthAction::Function { function_name } => {
            if function_name.eq_ignore_ascii_case("load_extension") {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }
        // Their argument is a table or index name, not a setting.
        AuthAction::Pragma { pragma_name, .. }
            if READ_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name)) =>
        {
            Authorization::Allow
        }
        _ => Authorization::Deny,
    }
}

fn sqlite(path: &str, query: &str, timeout: Duration, caps: Caps) -> Result<Table, Failure> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = rusqlite::Connection::open_with_flags(path, flags)
        .map_err(|e| Failed(format!("the database cannot be opened: {e}")))?;
    let setup = || -> rusqlite::Result<()> {
        db.pragma_update(None, "query_only", true)?;
        // A single value may not be larger than the whole result.
        let length = i32::try_from(caps.bytes.max(1024)).unwrap_or(i32::MAX);
        db.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, length)?;
        db.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        Ok(())
    };
    let started = Instant::now();
    // Without its authorizer or its clock the query does not run.
    setup()
        .and_then(|()| db.authorizer(Some(authorize)))
        .and_then(|()| db.progress_handler(1_000, Some(move || started.elapsed() > timeout)))
        .map_err(|e| Failed(format!("the database cannot be set up: {e}")))?;
    let refused = |e: rusqlite::Error| sqlite_error(e, timeout);
    let mut statement = db.prepare(query).map_err(refused)?;
    if !statement.readonly() {
        return Err(QueryRefused("the statement would write".into()));
    }
    let columns: Vec<String> = statement
        .column_names()
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let mut rows = Vec::new();
    let mut bytes = 0;
    let mut truncated = false;
    let mut cursor = statement.query([]).map_err(refused)?;
    while let Some(row) = cursor.next().map_err(refused)? {
        let values: Vec<Value> = (0..columns.len())
            .map(|i| row.get_ref(i).map_or(Value::Null, sqlite_value))
            .collect();
        if !take(&mut rows, &mut bytes, caps, Value::Array(values)) {
            truncated = true;
            break;
        }
    }
    Ok((columns, rows, truncated))
}

fn sqlite_value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => format!("[blob: {} bytes]", b.len()).into(),
    }
}

fn sqlite_error(e: rusqlite::Error, timeout: Duration) -> Failure {
    use rusqlite::ffi::ErrorCode;
    match &e {
        rusqlite::Error::MultipleStatement => {
            QueryRefused("only one statement may be run per call".into())
        }
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::AuthorizationForStatementDenied
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied => QueryRefused(format!("refused by the database: {e}")),
            ErrorCode::OperationInterrupted => Timeout(format!(
                "the query ran longer than {timeout:?} and was stopped"
            )),
            ErrorCode::TooBig => QueryRefused(format!("a value is too large: {e}")),
            _ => Failed(format!("the query failed: {e}")),
        },
        _ => Failed(format!("the query failed: {e}")),
    }
}

async fn postgres(url: &str, query: &str, timeout: Duration, caps: Caps) -> Result<Table, Failure> {
    let failed = |e: sqlx::Error| postgres_error(e, timeout);
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(|e| {
        Failed(format!(
            "cannot connect to the database: {}",
            without_url(&e)
        ))
    })?;
    let mut tx = conn.begin().await.map_err(failed)?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(timeout.as_millis().max(1).to_string())
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    let query = query.trim().trim_end_matches(';');
    // The agent's SQL is run as it is, on purpose: the read-only
    // transaction, not the text, is what keeps it from writing.
    let sql = |text: String| sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(text));
    let described = sqlx::Executor::describe(&mut *tx, sql(query.to_owned()))
        .await
        .map_err(failed)?;
    let columns: Vec<String> = described
        .columns()
        .iter()
        .map(|c| sqlx::Column::name(c).to_owned())
        .collect();
    // LIMIT one past the cap: the server stops there (a recursive CTE
    // without end included) instead of producing rows nobody reads.
    let wrapped = format!(
        "SELECT row_to_json(palisade_row)::text FROM ({query}\n) AS palisade_row LIMIT {}",
        caps.rows.saturating_add(1)
    );
    let mut rows = Vec::new();
    let mut bytes = 0;
    let mut truncated = false;
    {
        let mut stream = sqlx::query(sqlx::AssertSqlSafe(wrapped)).fetch(&mut *tx);
        while let Some(row) = stream.try_next().await.map_err(failed)? {
            let text: String = row.try_get(0).map_err(failed)?;
            let object: Map<String, Value> = serde_json::from_str(&text).unwrap_or_default();
            let values = columns
                .iter()
                .map(|c| object.get(c).cloned().unwrap_or(Value::Null))
                .collect();
            if !take(&mut rows, &mut bytes, caps, Value::Array(values)) {
                truncated = true;
                break;
            }
        }
    }
    // Nothing was written; the connection closes with the call anyway.
    let _ = tx.rollback().await;
    Ok((columns, rows, truncated))
}

/// PostgreSQL's SQLSTATEs: 25006 read-only transaction, 42501 privilege,
/// 57014 cancelled by the statement timeout, 42601 syntax (incl. several
/// statements in one prepared statement).
fn postgres_error(e: sqlx::Error, timeout: Duration) -> Failure {
    let code = e
        .as_database_error()
        .and_then(|d| d.code().map(|c| c.into_owned()));
    match code.as_deref() {
        Some("25006" | "42501") => QueryRefused(format!("refused by the database: {e}")),
        Some("57014") => Timeout(format!(
            "the query ran longer than {timeout:?} and was cancelled"
        )),
        _ if e.to_string().contains("multiple commands") => {
            QueryRefused("only one statement may be run per call".into())
        }
        _ => Failed(format!("the query failed: {e}")),
    }
}

/// A connect error's message, which must not echo the URL (it holds the
/// password).
fn without_url(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(_) => "the connection URL in the Secret is not valid".into(),
        e => e.to_string(),
    }
}
