//! `spec.tools.run` and `spec.tools.results`: the tools Palisade runs
//! itself. Paths must be absolute and plain (no `..`), names unique, HTTP
//! tools' URLs on the platform's egress allow-list, and every Secret they
//! read opted in by its owner (the [`crate::labels::CREDENTIALS`] label),
//! as for provider credentials.

use super::Diags;
use super::secrets::Secrets;
use crate::resources::{
    FileAccessSpec, HttpMethodSpec, ToolOfferSpec, ToolResultsSpec, ToolRunSpec, ToolsSpec,
};
use palisade_policy::{
    Egress, FileAccess, FileRoot, FileTools, HttpMethod, HttpTool, READ_FILE, ResultSettings,
    RunnableTools, SQL_QUERY, SecretString, SqlDatabase, SqlEngine, SqlTool, ToolOffer, WRITE_FILE,
};
use serde_json::json;
use std::time::Duration;

pub(super) fn compile_runnable(
    d: &mut Diags<'_>,
    spec: &ToolsSpec,
    secrets: &Secrets,
    egress: &Egress,
) -> Option<RunnableTools> {
    let run = spec.run.clone().unwrap_or_default();
    let mut ok = true;
    let sql = run
        .sql_query
        .as_ref()
        .map(|s| compile_sql(d, s, secrets, &mut ok));
    let files = run.files.as_ref().map(|f| compile_files(d, f, &mut ok));
    let http = compile_http(d, &run, secrets, egress, &mut ok);
    let results = compile_results(spec.results.as_ref());
    ok.then(|| RunnableTools {
        sql,
        files,
        http,
        max_steps: run.max_steps.unwrap_or(RunnableTools::DEFAULT_MAX_STEPS),
        offer: match run.offer.unwrap_or_default() {
            ToolOfferSpec::WhenRequested => ToolOffer::WhenRequested,
            ToolOfferSpec::Always => ToolOffer::Always,
        },
        results,
    })
}

fn compile_results(spec: Option<&ToolResultsSpec>) -> ResultSettings {
    let defaults = ResultSettings::default();
    ResultSettings {
        sanitize: spec.and_then(|r| r.sanitize).unwrap_or(defaults.sanitize),
        max_bytes: spec.and_then(|r| r.max_bytes).unwrap_or(defaults.max_bytes),
    }
}

fn compile_sql(
    d: &mut Diags<'_>,
    s: &crate::resources::SqlQuerySpec,
    secrets: &Secrets,
    ok: &mut bool,
) -> SqlTool {
    let mut databases = Vec::with_capacity(s.databases.len());
    for (i, db) in s.databases.iter().enumerate() {
        let field = format!("spec.tools.run.sqlQuery.databases[{i}]");
        *ok &= unique(
            d,
            &field,
            &db.name,
            s.databases[..i].iter().map(|q| &q.name),
        );
        let engine = match (&db.sqlite_path, &db.postgres_secret_ref) {
            (Some(path), None) => {
                *ok &= plain_absolute(d, &format!("{field}.sqlitePath"), path);
                Some(SqlEngine::Sqlite { path: path.clone() })
            }
            (None, Some(r)) => d
                .credentials(&format!("{field}.postgresSecretRef"), secrets, r)
                .map(|url| SqlEngine::Postgres {
                    url: SecretString::new(url),
                }),
            _ => {
                d.push(
                    field.clone(),
                    "a database needs exactly one of sqlitePath and postgresSecretRef",
                    "set sqlitePath: /path/to/file.db, or postgresSecretRef: {name: ..., key: url}",
                );
                None
            }
        };
        match engine {
            Some(engine) => databases.push(SqlDatabase {
                name: db.name.clone(),
                engine,
            }),
            None => *ok = false,
        }
    }
    let timeout = d.duration(
        "spec.tools.run.sqlQuery.timeout",
        s.timeout.as_deref(),
        Duration::from_millis(SqlTool::DEFAULT_TIMEOUT_MS),
        "5s",
    );
    *ok &= timeout.is_some();
    SqlTool {
        databases,
        max_rows: s.max_rows.unwrap_or(SqlTool::DEFAULT_MAX_ROWS),
        max_result_bytes: s
            .max_result_bytes
            .unwrap_or(SqlTool::DEFAULT_MAX_RESULT_BYTES),
        timeout_ms: millis(timeout.unwrap_or_default()),
    }
}

fn compile_files(d: &mut Diags<'_>, f: &crate::resources::FilesSpec, ok: &mut bool) -> FileTools {
    let mut roots = Vec::with_capacity(f.roots.len());
    for (i, r) in f.roots.iter().enumerate() {
        let field = format!("spec.tools.run.files.roots[{i}]");
        *ok &= unique(d, &field, &r.name, f.roots[..i].iter().map(|q| &q.name));
        *ok &= plain_absolute(d, &format!("{field}.path"), &r.path);
        let globs = if r.globs.is_empty() {
            Some(None)
        } else {
            d.globs(&format!("{field}.globs"), &r.globs).map(Some)
        };
        let Some(globs) = globs else {
            *ok = false;
            continue;
        };
        roots.push(FileRoot {
            name: r.name.clone(),
            path: r.path.trim_end_matches('/').to_owned(),
            access: match r.access {
                FileAccessSpec::Read => FileAccess::Read,
                FileAccessSpec::ReadWrite => FileAccess::ReadWrite,
            },
            globs,
        });
    }
    FileTools {
        roots,
        max_bytes: f.max_bytes.unwrap_or(FileTools::DEFAULT_MAX_BYTES),
    }
}

fn compile_http(
    d: &mut Diags<'_>,
    run: &ToolRunSpec,
    secrets: &Secrets,
    egress: &Egress,
    ok: &mut bool,
) -> Vec<HttpTool> {
    let mut out = Vec::with_capacity(run.http.len());
    for (i, t) in run.http.iter().enumerate() {
        let field = format!("spec.tools.run.http[{i}]");
        *ok &= unique(d, &field, &t.name, run.http[..i].iter().map(|q| &q.name));
        if [SQL_QUERY, READ_FILE, WRITE_FILE].contains(&t.name.as_str()) {
            d.push(
                format!("{field}.name"),
                format!("{:?} is the name of a built-in tool", t.name),
                "give the HTTP tool another name",
            );
            *ok = false;
        }
        if let Err(refusal) = egress.check_url(&t.url, t.credentials_secret_ref.is_some()) {
            d.push(
                format!("{field}.url"),
                refusal.to_string(),
                "use an allowed https:// URL, or ask the platform admin to add it to providers.allowedBaseUrls in the chart's values",
            );
            *ok = false;
        }
        let credentials = match &t.credentials_secret_ref {
            None => None,
            Some(r) => match d.credentials(&format!("{field}.credentialsSecretRef"), secrets, r) {
                Some(v) => Some(SecretString::new(v)),
                None => {
                    *ok = false;
                    None
                }
            },
        };
        let parameters = t
            .parameters
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}));
        if !parameters.is_object() {
            d.push(
                format!("{field}.parameters"),
                "is not a JSON schema object",
                "write e.g. {type: object, properties: {title: {type: string}}}",
            );
            *ok = false;
        }
        let timeout = d.duration(
            &format!("{field}.timeout"),
            t.timeout.as_deref(),
            Duration::from_millis(HttpTool::DEFAULT_TIMEOUT_MS),
            "10s",
        );
        *ok &= timeout.is_some();
        out.push(HttpTool {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters,
            url: t.url.clone(),
            method: match t.method {
                HttpMethodSpec::Get => HttpMethod::Get,
                HttpMethodSpec::Post => HttpMethod::Post,
                HttpMethodSpec::Put => HttpMethod::Put,
                HttpMethodSpec::Delete => HttpMethod::Delete,
            },
            credentials,
            timeout_ms: millis(timeout.unwrap_or_default()),
            max_response_bytes: t
                .max_response_bytes
                .unwrap_or(HttpTool::DEFAULT_MAX_RESPONSE_BYTES),
        });
    }
    out
}

fn millis(t: Duration) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
}

fn unique<'a>(
    d: &mut Diags<'_>,
    field: &str,
    name: &str,
    mut earlier: impl Iterator<Item = &'a String>,
) -> bool {
    if earlier.any(|q| q == name) {
        d.push(
            format!("{field}.name"),
            format!("{name:?} is defined twice"),
            "give each one its own name",
        );
        return false;
    }
    true
}

/// An absolute path without `.`/`..` components or NUL: what the file is
/// must not depend on how it is normalised.
fn plain_absolute(d: &mut Diags<'_>, field: &str, path: &str) -> bool {
    let plain = path.starts_with('/')
        && !path.contains('\0')
        && path.split('/').all(|c| c != ".." && c != ".");
    if !plain {
        d.push(
            field,
            format!("{path:?} is not a plain absolute path"),
            "write an absolute path without . or .. components, e.g. /var/lib/palisade/tools/notes",
        );
    }
    plain
}
