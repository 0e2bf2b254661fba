//! `palisade-gateway audit ...`: migrate, verify and query the audit
//! database from the command line.

use super::CliError;
use crate::config::{default_key_file, default_sqlite_url, load_files};
use clap::{Args, Subcommand, ValueEnum};
use palisade_audit::roles::grant_runtime_role;
use palisade_audit::{AuditKey, ChainedEvent, Filter, Migrations, Store, Usage, UsageFilter};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the audit database is.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// `postgres://...` or `sqlite://PATH`.
    #[arg(long, conflicts_with = "config")]
    pub url: Option<String>,
    /// Take the database from these configuration files (their
    /// GatewaySettings `spec.audit.url`, or the SQLite file next to the
    /// first one).
    #[arg(long, short = 'c')]
    pub config: Vec<PathBuf>,
}

/// The audit chain's key (HMAC-SHA256), which the database never holds.
#[derive(Args, Debug, Clone)]
pub struct KeyArg {
    /// File holding the audit chain's key (default with --config: the
    /// standalone gateway's palisade-audit.key next to the first file).
    #[arg(long, env = "PALISADE_AUDIT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

impl KeyArg {
    /// The key given, or the standalone gateway's next to its
    /// configuration; `create`: make that one if it is not there yet
    /// (for commands that write to the chain).
    pub fn resolve(&self, target: &Target, create: bool) -> Result<Option<AuditKey>, CliError> {
        if let Some(path) = &self.key_file {
            return Ok(Some(AuditKey::from_file(path)?));
        }
        let Some(first) = target.config.first() else {
            return Ok(None);
        };
        let path = default_key_file(first);
        if create {
            return Ok(Some(AuditKey::load_or_create(&path)?.0));
        }
        Ok(path
            .exists()
            .then(|| AuditKey::from_file(&path))
            .transpose()?)
    }
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    target: Target,
    /// PostgreSQL: after migrating, give this role SELECT and INSERT on
    /// the audit table and nothing else (the role gateways and operators
    /// connect as); run migrate as the tables' owner.
    #[arg(long, value_name = "ROLE")]
    runtime_role: Option<String>,
    /// With --runtime-role: the environment variable holding its password;
    /// the role is created (LOGIN) if missing, else its password is set.
    #[arg(long, value_name = "VAR", requires = "runtime_role")]
    runtime_password_env: Option<String>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    key: KeyArg,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Create or upgrade the audit schema (and grant the runtime role).
    Migrate(MigrateArgs),
    /// Check every writer's hash chain, the links between writers and the
    /// keyed hashes; exit 1 at the first broken link, 2 when a check could
    /// not run (keyed rows but no key).
    Verify(VerifyArgs),
    /// List decisions.
    Query(Box<QueryArgs>),
    /// Requests and tokens (input, output, cached) per namespace, agent,
    /// provider and model over a time range.
    Usage(UsageArgs),
}

#[derive(Args, Debug)]
pub struct UsageArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long)]
    agent: Option<String>,
    /// RFC 3339 time, or a duration back from now (e.g. 24h).
    #[arg(long, default_value = "24h")]
    since: String,
    /// RFC 3339 time, or a duration back from now.
    #[arg(long)]
    until: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Jsonl,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    request_id: Option<String>,
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long)]
    agent: Option<String>,
    /// Allow, Deny, RequireApproval, ...
    #[arg(long)]
    decision: Option<String>,
    /// One reason code, e.g. kill_switch.agent.
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    tool: Option<String>,
    /// RFC 3339 time, or a duration back from now (e.g. 15m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time, or a duration back from now.
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    limit: Option<i64>,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    /// Keep printing new decisions as they are recorded.
    #[arg(long)]
    follow: bool,
}

/// The database a target names.
pub fn resolve(target: &Target) -> Result<String, CliError> {
    if let Some(url) = &target.url {
        return Ok(url.clone());
    }
    let Some(first) = target.config.first() else {
        return Err(CliError::NoAuditDatabase);
    };
    let loaded = load_files(&target.config)?;
    Ok(loaded
        .config
        .settings
        .audit
        .url
        .clone()
        .unwrap_or_else(|| default_sqlite_url(first)))
}

fn time_arg(
    flag: &'static str,
    value: Option<&String>,
) -> Result<Option<jiff::Timestamp>, CliError> {
    let Some(v) = value else { return Ok(None) };
    if let Ok(t) = v.parse::<jiff::Timestamp>() {
        return Ok(Some(t));
    }
    let d = palisade_crds::duration::parse_duration(v).map_err(|_| CliError::NotATime {
        flag,
        value: v.clone(),
    })?;
    let out_of_range = |source| CliError::TimeOutOfRange { flag, source };
    let d = jiff::SignedDuration::try_from(d).map_err(out_of_range)?;
    jiff::Timestamp::now()
        .checked_sub(d)
        .map(Some)
        .map_err(out_of_range)
}

/// Each row as one line of JSON.
fn print_jsonl<T: serde::Serialize>(out: &mut impl Write, rows: &[T]) {
    for r in rows {
        let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
    }
}

fn print_rows(rows: &[ChainedEvent], output: Output, header: bool) {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Jsonl => print_jsonl(&mut out, rows),
        Output::Table => {
            if header {
                let _ = writeln!(
                    out,
                    "{:<24} {:<18} {:<24} {:<9} {:<15} {:<36} {:<16} RULE",
                    "TIME",
                    "REQUEST",
                    "NAMESPACE/AGENT",
                    "KIND",
                    "DECISION",
                    "REASONS",
                    "TOOL/PROVIDER"
                );
            }
            for r in rows {
                let e = &r.event;
                let time = e
                    .time
                    .round(jiff::Unit::Millisecond)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| e.time.to_string());
                let decision = if e.enforced {
                    e.decision.clone()
                } else {
                    format!("{} (dry-run)", e.decision)
                };
                let _ = writeln!(
                    out,
                    "{:<24} {:<18} {:<24} {:<9} {:<15} {:<36} {:<16} {}",
                    time,
                    e.request_id,
                    format!("{}/{}", e.namespace, e.agent),
                    e.kind.as_str(),
                    decision,
                    e.reason_codes.join(","),
                    e.tool.as_deref().or(e.provider.as_deref()).unwrap_or("-"),
                    e.rule.as_deref().unwrap_or("-")
                );
            }
        }
    }
    let _ = out.flush();
}

fn print_usage(rows: &[Usage], output: Output) {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Jsonl => print_jsonl(&mut out, rows),
        Output::Table => {
            let _ = writeln!(
                out,
                "{:<32} {:<16} {:<28} {:>9} {:>12} {:>12} {:>12}",
                "NAMESPACE/AGENT", "PROVIDER", "MODEL", "REQUESTS", "INPUT", "OUTPUT", "CACHED"
            );
            for r in rows {
                let _ = writeln!(
                    out,
                    "{:<32} {:<16} {:<28} {:>9} {:>12} {:>12} {:>12}",
                    format!("{}/{}", r.namespace, r.agent),
                    r.provider,
                    r.model,
                    r.requests,
                    r.input_tokens,
                    r.output_tokens,
                    r.cached_tokens
                );
            }
        }
    }
    let _ = out.flush();
}

/// Runs an audit command to completion (or, with `--follow`, until killed).
pub fn run(command: AuditCommand) -> Result<ExitCode, CliError> {
    super::runtime()?.block_on(async move {
        match command {
            AuditCommand::Migrate(args) => {
                let url = resolve(&args.target)?;
                let store = Store::open(&url, Migrations::Apply).await?;
                println!(
                    "audit schema is up to date ({})",
                    palisade_audit::store::redact_url(&url)
                );
                if let Some(role) = &args.runtime_role {
                    let password = match &args.runtime_password_env {
                        None => None,
                        Some(var) => Some(
                            std::env::var(var)
                                .map_err(|_| CliError::PasswordEnvUnset(var.clone()))?,
                        ),
                    };
                    grant_runtime_role(&store, role, password.as_deref()).await?;
                    println!("role {role} may SELECT and INSERT audit rows, nothing else");
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Verify(args) => {
                let url = resolve(&args.target)?;
                let key = args.key.resolve(&args.target, false)?;
                let store = Store::open(&url, Migrations::VerifyOnly).await?;
                let report = store.verify(key.as_ref()).await?;
                print!("{}", palisade_audit::verify::render(&report));
                Ok(if report.broken.is_some() {
                    ExitCode::FAILURE
                } else if report.complete() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                })
            }
            AuditCommand::Usage(u) => {
                let url = resolve(&u.target)?;
                let store = Store::open(&url, Migrations::VerifyOnly).await?;
                let filter = UsageFilter {
                    namespace: u.namespace,
                    agent: u.agent,
                    since: time_arg("since", Some(&u.since))?,
                    until: time_arg("until", u.until.as_ref())?,
                };
                print_usage(&store.usage(&filter).await?, u.output);
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Query(q) => {
                let q = *q;
                let url = resolve(&q.target)?;
                let store = Store::open(&url, Migrations::VerifyOnly).await?;
                let mut filter = Filter {
                    request_id: q.request_id,
                    namespace: q.namespace,
                    agent: q.agent,
                    decision: q.decision,
                    reason: q.reason,
                    tool: q.tool,
                    since: time_arg("since", q.since.as_ref())?,
                    until: time_arg("until", q.until.as_ref())?,
                    limit: q.limit,
                    ..Filter::default()
                };
                let mut header = true;
                loop {
                    let rows = store.query(&filter).await?;
                    if !rows.is_empty() || header {
                        print_rows(&rows, q.output, header);
                        header = false;
                    }
                    if let Some(last) = rows.last() {
                        filter.after =
                            Some((last.event.time.as_millisecond(), last.event.id.clone()));
                    }
                    if !q.follow {
                        return Ok(ExitCode::SUCCESS);
                    }
                    filter.limit = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    })
}
