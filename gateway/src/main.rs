//! `palisade-gateway`: the gateway's command line.

use clap::{Args, Parser, Subcommand};
use palisade_gateway::cli::CliError;
use palisade_gateway::config::{Loaded, load_files};
use palisade_policy::{ChatRequest, ToolCall};
use std::path::PathBuf;
use std::process::ExitCode;

// mimalloc instead of the system allocator: glibc's malloc/free were ~14% of
// the gateway's CPU under load (bench/profile.sh, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "palisade-gateway",
    version,
    about = "Policy gateway for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the gateway from configuration files.
    Run(Box<palisade_gateway::run::RunArgs>),
    /// Validate configuration files and summarise what they define.
    #[command(alias = "check")]
    Validate(ConfigArgs),
    /// Ask what the configuration decides, without running a server.
    #[command(subcommand)]
    Decide(Decide),
    /// Migrate, verify and query the audit database.
    #[command(subcommand)]
    Audit(palisade_gateway::cli::audit::AuditCommand),
    /// List, approve and deny held tool calls (standalone gateway).
    #[command(subcommand)]
    Approvals(palisade_gateway::cli::approvals::ApprovalsCommand),
    /// Check a running gateway as an agent would: ready, and one tool
    /// call decided with the expected reason code (the chart's helm test).
    Smoke(palisade_gateway::cli::smoke::SmokeArgs),
}

#[derive(Args, Debug)]
struct ConfigArgs {
    /// A YAML file with AIPolicy, ToolGrant, Secret and GatewaySettings
    /// documents; repeat to combine files.
    #[arg(long = "config", short = 'c', required = true)]
    config: Vec<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Decide {
    /// Decide a tool call: prints the decision as JSON.
    Tool {
        #[command(flatten)]
        config: ConfigArgs,
        /// The agent's namespace (default: GatewaySettings spec.namespace).
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        tool: String,
        /// The tool's arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
    },
    /// Route a chat request: prints the decision and route as JSON.
    Chat {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        agent: String,
        #[arg(long, default_value = "")]
        model: String,
        /// The prompt text (it is scanned, not stored).
        #[arg(long)]
        prompt: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &ConfigArgs) -> Result<Loaded, CliError> {
    let loaded = load_files(&args.config)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    Ok(loaded)
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Audit(command) => palisade_gateway::cli::audit::run(command),
        Command::Approvals(command) => palisade_gateway::cli::approvals::run(command),
        Command::Smoke(args) => palisade_gateway::cli::smoke::run(args),
        Command::Run(args) => Ok(palisade_gateway::run::run(*args)?),
        Command::Validate(args) => {
            let loaded = load(&args)?;
            print_summary(
                &loaded,
                args.config
                    .first()
                    .map(PathBuf::as_path)
                    .unwrap_or(std::path::Path::new(".")),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Decide(Decide::Tool {
            config,
            namespace,
            agent,
            tool,
            args,
        }) => {
            let loaded = load(&config)?;
            let arguments: serde_json::Value =
                serde_json::from_str(&args).map_err(CliError::ArgsNotJson)?;
            if !arguments.is_object() {
                return Err(CliError::ArgsNotAnObject);
            }
            let namespace = namespace.unwrap_or_else(|| loaded.config.settings.namespace.clone());
            let decision = loaded
                .compilation
                .bundle
                .evaluate_tool(
                    &ToolCall {
                        namespace: &namespace,
                        agent: &agent,
                        tool: &tool,
                        arguments: &arguments,
                    },
                    jiff::Timestamp::now(),
                )
                .decision;
            print_json(&decision)
        }
        Command::Decide(Decide::Chat {
            config,
            namespace,
            agent,
            model,
            prompt,
        }) => {
            let loaded = load(&config)?;
            let namespace = namespace.unwrap_or_else(|| loaded.config.settings.namespace.clone());
            let decision = loaded
                .compilation
                .bundle
                .evaluate_chat(&ChatRequest {
                    namespace: &namespace,
                    agent: &agent,
                    model: &model,
                    prompt: &prompt,
                    provider_text: &prompt,
                })
                .decision;
            print_json(&decision)
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<ExitCode, CliError> {
    let json = serde_json::to_string_pretty(value).map_err(CliError::Print)?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

fn globs_of(rules: &[&palisade_policy::ToolRule], action: palisade_policy::Outcome) -> String {
    let globs: Vec<&str> = rules
        .iter()
        .filter(|r| r.action == action)
        .flat_map(|r| r.tools.iter().map(String::as_str))
        .collect();
    if globs.is_empty() {
        "-".into()
    } else {
        globs.join(", ")
    }
}

/// What a reviewer wants to see at a glance: who, which tools, where chat
/// goes, and where the audit goes.
fn print_summary(loaded: &Loaded, first_config: &std::path::Path) {
    use palisade_policy::Outcome;
    let bundle = &loaded.compilation.bundle;
    println!("configuration OK: revision {}", bundle.revision());
    for p in bundle.policies() {
        println!(
            "  AIPolicy {}/{}: {} agent(s), {} provider(s), {} routing rule(s), {} tool rule(s), default {}, {:?}{}",
            p.namespace,
            p.name,
            p.agents.len(),
            p.providers.len(),
            p.routing.rules().len(),
            p.tools.rules().len(),
            p.tools.default_action(),
            p.enforcement,
            if p.suspend { ", SUSPENDED" } else { "" }
        );
        let agents: Vec<String> = p
            .agents
            .iter()
            .map(|a| {
                let mut ids = Vec::new();
                if let Some(sa) = &a.service_account {
                    ids.push(format!("sa {sa}"));
                }
                if a.api_key_sha256.is_some() {
                    ids.push("API key".into());
                }
                format!(
                    "{} ({}){}",
                    a.name,
                    ids.join(", "),
                    if a.suspended { " SUSPENDED" } else { "" }
                )
            })
            .collect();
        println!("    agents:    {}", agents.join("; "));
        println!("    models:    {}", p.models.patterns().join(", "));
        let rules: Vec<&palisade_policy::ToolRule> = p.tools.rules().iter().collect();
        println!(
            "    tools:     allow [{}]  approval [{}]  deny [{}]  otherwise {}",
            globs_of(&rules, Outcome::Allow),
            globs_of(&rules, Outcome::RequireApproval),
            globs_of(&rules, Outcome::Deny),
            p.tools.default_action()
        );
        if !p.runnable.is_empty() {
            let runs: Vec<String> = p.runnable.all().map(|t| t.name().to_owned()).collect();
            println!(
                "    runs:      {} (tool loop: at most {} rounds, offered {:?})",
                runs.join(", "),
                p.runnable.max_steps,
                p.runnable.offer
            );
        }
        for r in p.routing.rules() {
            println!(
                "    route:     {} -> {} ({})",
                r.rule,
                r.provider,
                r.reason_code()
            );
        }
        println!(
            "    route:     otherwise -> {}{}",
            p.routing.default_provider(),
            p.routing
                .fallback_provider()
                .map(|f| format!(", fallback {f}"))
                .unwrap_or_default()
        );
        for pr in &p.providers {
            println!(
                "    provider:  {} ({:?}, {}{})",
                pr.name,
                pr.kind,
                pr.base_url,
                if pr.api_key.is_some() {
                    ", with credentials"
                } else {
                    ""
                }
            );
        }
        println!(
            "    audit:     prompts {:?}, arguments {:?}",
            p.audit.prompts, p.audit.arguments
        );
    }
    for g in &loaded.compilation.grants {
        println!(
            "  ToolGrant {}/{}: {:?}",
            g.object.namespace, g.object.name, g.state
        );
    }
    let s = &loaded.config.settings;
    let audit = s
        .audit
        .url
        .clone()
        .unwrap_or_else(|| palisade_gateway::config::default_sqlite_url(first_config));
    println!(
        "  gateway: listen {}, namespace {}, audit {} ({:?})",
        s.listen,
        s.namespace,
        palisade_audit::store::redact_url(&audit),
        s.audit.failure_mode
    );
}
