//! `palisade-gateway approvals list|show NAME|approve NAME|deny NAME`: decide held
//! tool calls of a standalone gateway from the command line, straight in
//! its database (the gateway notices at once: it reads the approval when
//! the agent polls or retries). Each decision is audited with who made it
//! (`cli:$USER`). In a cluster, decide with `kubectl patch approval` instead.

use super::CliError;
use super::audit::{KeyArg, Target, resolve};
use crate::approvals::{View, decide_and_audit};
use clap::{Args, Subcommand};
use palisade_audit::approvals::{ApprovalRow, ApprovalStore, DecideRefused};
use palisade_audit::{AuditMetrics, AuditWriter, Migrations, Store, WriterConfig};
use palisade_crds::ApprovalDecision;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ApprovalsCommand {
    /// List approvals, newest first.
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Only those waiting for a decision.
        #[arg(long)]
        pending: bool,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one approval: what was held, with the preview of its arguments.
    Show {
        /// The approval's name (from `approvals list` or the agent's 202).
        name: String,
        /// The approval's namespace (default: found by name).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Approve a held call: the agent may then run it once.
    Approve(DecideArgs),
    /// Deny a held call.
    Deny(DecideArgs),
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    /// The approval's name (from `approvals list` or the agent's 202).
    pub name: String,
    /// Why (recorded with the decision and in the audit).
    #[arg(long, short = 'r')]
    pub reason: Option<String>,
    /// The approval's namespace (default: found by name).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub key: KeyArg,
}

fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

fn print_table(views: &[View]) {
    println!(
        "{:<28} {:<24} {:<20} {:<9} {:<20} {:<21} DECIDED-BY",
        "NAME", "NAMESPACE/AGENT", "TOOL", "PHASE", "REQUEST", "EXPIRES"
    );
    for v in views {
        let expires = v
            .expires_at
            .round(jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default();
        println!(
            "{:<28} {:<24} {:<20} {:<9} {:<20} {:<21} {}",
            v.name,
            format!("{}/{}", v.namespace, v.call.agent),
            v.call.tool,
            v.phase.as_str(),
            v.call.request_id,
            expires,
            v.decided_by.as_deref().unwrap_or("-")
        );
    }
}

/// One approval, for a human deciding it: every field, then the
/// arguments as the preview shows them, saying whether they were cut.
fn print_one(v: &View) {
    let call = &v.call;
    let field = |k: &str, val: &str| println!("{k:<12} {val}");
    field("name:", &v.name);
    field("namespace:", &v.namespace);
    field("agent:", &call.agent);
    field("tool:", &call.tool);
    field("phase:", v.phase.as_str());
    let rule = call.rule.as_deref().map(|r| format!(", rule {r}"));
    let policy = format!(
        "{} (generation {}{})",
        call.policy,
        call.policy_generation,
        rule.unwrap_or_default()
    );
    field("policy:", &policy);
    field("request:", &call.request_id);
    field("digest:", &call.arguments_digest);
    field("expires:", &v.expires_at.to_string());
    field("decided by:", v.decided_by.as_deref().unwrap_or("-"));
    if call.arguments_truncated {
        println!(
            "arguments (truncated: only their start is shown; the approval is for the full arguments, by their digest):"
        );
    } else {
        println!("arguments:");
    }
    println!("{}", call.arguments_preview);
}

pub fn run(command: ApprovalsCommand) -> Result<ExitCode, CliError> {
    super::runtime()?.block_on(async move {
        match command {
            ApprovalsCommand::List {
                target,
                namespace,
                pending,
                json,
            } => {
                let store = open(&target).await?;
                let now = jiff::Timestamp::now();
                let rows = store.list(namespace.as_deref(), pending, now, 1000).await?;
                let views: Vec<View> = rows.into_iter().map(|r| View::of_row(r, now)).collect();
                if json {
                    for v in &views {
                        println!("{}", v.to_json());
                    }
                } else if views.is_empty() {
                    println!("no approvals{}", if pending { " pending" } else { "" });
                } else {
                    print_table(&views);
                }
                Ok(ExitCode::SUCCESS)
            }
            ApprovalsCommand::Show {
                name,
                namespace,
                target,
                json,
            } => {
                let store = open(&target).await?;
                let row = locate(&store, &name, namespace).await?;
                let view = View::of_row(row, jiff::Timestamp::now());
                if json {
                    println!("{}", view.to_json());
                } else {
                    print_one(&view);
                }
                Ok(ExitCode::SUCCESS)
            }
            ApprovalsCommand::Approve(args) => decide(args, ApprovalDecision::Approved).await,
            ApprovalsCommand::Deny(args) => decide(args, ApprovalDecision::Denied).await,
        }
    })
}

async fn open_store(target: &Target) -> Result<Store, CliError> {
    let url = resolve(target)?;
    Ok(Store::open(&url, Migrations::VerifyOnly).await?)
}

async fn open(target: &Target) -> Result<ApprovalStore, CliError> {
    Ok(ApprovalStore::new(open_store(target).await?))
}

/// The approval `name`, in `namespace` or, without one, the only
/// approval of that name.
async fn locate(
    approvals: &ApprovalStore,
    name: &str,
    namespace: Option<String>,
) -> Result<ApprovalRow, CliError> {
    let found = match namespace {
        Some(ns) => match approvals.get(&ns, name).await? {
            Some(row) => vec![row],
            None => return Err(CliError::NoApproval(format!("{ns}/{name}"))),
        },
        None => approvals.find(name).await?,
    };
    match <[ApprovalRow; 1]>::try_from(found) {
        Ok([one]) => Ok(one),
        Err(found) if found.is_empty() => Err(CliError::NoApprovalNamed(name.to_owned())),
        Err(_) => Err(CliError::AmbiguousApproval(name.to_owned())),
    }
}

async fn decide(args: DecideArgs, decision: ApprovalDecision) -> Result<ExitCode, CliError> {
    let store = open_store(&args.target).await?;
    let approvals = ApprovalStore::new(store.clone());
    let namespace = match args.namespace {
        Some(ns) => ns,
        None => locate(&approvals, &args.name, None).await?.namespace,
    };
    let spool = std::env::temp_dir().join(format!("palisade-approvals-cli-{}", std::process::id()));
    let mut config = WriterConfig::new(&spool);
    config.key = args.key.resolve(&args.target, true)?;
    if config.key.is_none() {
        eprintln!(
            "warning: no audit key (--key-file or PALISADE_AUDIT_KEY_FILE): this decision's audit row is hashed without it, and `audit verify` will report it"
        );
    }
    let (audit, task) = AuditWriter::start(store, config, AuditMetrics::unregistered()?)?;
    let by = who();
    let outcome = decide_and_audit(
        &approvals,
        &audit,
        &namespace,
        &args.name,
        decision,
        args.reason.as_deref(),
        &by,
    )
    .await?;
    drop(audit);
    task.join().await;
    let _ = std::fs::remove_dir(&spool);
    let approval = format!("{namespace}/{}", args.name);
    match outcome {
        Ok(v) => {
            println!(
                "approval {}/{} {} by {by}: {} may {}run {} once, until {}",
                v.namespace,
                v.name,
                decision.as_str().to_lowercase(),
                v.call.agent,
                if decision == ApprovalDecision::Approved {
                    "now "
                } else {
                    "not "
                },
                v.call.tool,
                v.expires_at
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(DecideRefused::NotFound) => Err(CliError::NoApproval(approval)),
        Err(DecideRefused::AlreadyDecided(decision)) => {
            Err(CliError::AlreadyDecided { approval, decision })
        }
        Err(DecideRefused::Expired) => Err(CliError::ExpiredUndecided(approval)),
    }
}
