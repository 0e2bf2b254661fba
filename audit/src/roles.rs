//! The runtime role: gateways and the operator connect as a PostgreSQL
//! role that may only add and read audit rows. The tables belong to the
//! role that migrates (the chart's migration job), so a compromised
//! gateway cannot rewrite or delete history. (It may update the limits'
//! shared counters, `budget_usage` and `stream_slots`, which are not
//! history.)

use crate::error::AuditError;
use crate::store::{Backend, Store};
use sqlx::Row;

/// What the runtime role may do, table by table: add and read audit
/// rows, read which migrations are applied (the schema check at start).
const GRANTS: &[&str] = &[
    "GRANT SELECT, INSERT ON audit_events TO %I",
    "GRANT SELECT ON _sqlx_migrations TO %I",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON budget_usage TO %I",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON stream_slots TO %I",
];

/// Tables the runtime role loses every other privilege on.
const TABLES: &[&str] = &[
    "audit_events",
    "approvals",
    "quarantines",
    "_sqlx_migrations",
    "budget_usage",
    "stream_slots",
];

fn plain_role_name(role: &str) -> bool {
    let mut chars = role.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && role.len() <= 63
}

/// Gives `role` exactly SELECT and INSERT on the audit table (and SELECT
/// on the migrations table), nothing else on any Palisade table. With a
/// `password`, the role is created (LOGIN) if missing, or its password
/// set; without one it must exist. Run as the tables' owner, after
/// migrating.
pub async fn grant_runtime_role(
    store: &Store,
    role: &str,
    password: Option<&str>,
) -> Result<(), AuditError> {
    if store.backend() != Backend::Postgres {
        return Err(AuditError::RolesNeedPostgres);
    }
    if !plain_role_name(role) {
        return Err(AuditError::RoleName(role.to_owned()));
    }
    let pool = store.pool();
    let exists = sqlx::query("SELECT COUNT(*) AS n FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_one(pool)
        .await?
        .try_get::<i64, _>("n")?
        > 0;
    // Identifiers and the password are quoted by the server (format's %I
    // and %L): no statement is built from them here.
    let mut statements: Vec<String> = Vec::new();
    let formatted = |template: &str, password: Option<&str>| {
        let q = sqlx::query("SELECT format($1::text, $2::text, $3::text) AS sql")
            .bind(template.to_owned())
            .bind(role.to_owned())
            .bind(password.map(str::to_owned));
        async move {
            let row = q.fetch_one(pool).await?;
            Ok::<String, AuditError>(row.try_get("sql")?)
        }
    };
    match (exists, password) {
        (false, None) => return Err(AuditError::NoSuchRole(role.to_owned())),
        (false, Some(pw)) => {
            statements.push(formatted("CREATE ROLE %I LOGIN PASSWORD %L", Some(pw)).await?)
        }
        (true, Some(pw)) => {
            statements.push(formatted("ALTER ROLE %I LOGIN PASSWORD %L", Some(pw)).await?)
        }
        (true, None) => {}
    }
    for table in TABLES {
        statements.push(formatted(&format!("REVOKE ALL ON {table} FROM %I"), None).await?);
    }
    for grant in GRANTS {
        statements.push(formatted(grant, None).await?);
    }
    let mut tx = pool.begin().await?;
    for sql in statements {
        // Quoted by the server above.
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_role_names_are_taken() {
        for ok in ["palisade_writer", "_w", "w1"] {
            assert!(super::plain_role_name(ok), "{ok}");
        }
        for bad in ["", "Writer", "1w", "w;drop", "w\"x", &"w".repeat(64)] {
            assert!(!super::plain_role_name(bad), "{bad}");
        }
    }
}
