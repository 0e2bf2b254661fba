//! `palisade-operator`: compiles AIPolicies and ToolGrants into the
//! configuration the gateways watch.

use clap::Parser;
use palisade_operator::{OperatorConfig, run};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "palisade-operator", version, about = "Palisade operator")]
struct Args {
    /// How to log to stderr: `text`, or `json` (one object per line, for
    /// log pipelines). The level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "PALISADE_LOG_FORMAT", default_value = "text")]
    log_format: palisade_crds::logging::LogFormat,
    /// Namespace of the compiled configuration Secret (default: $POD_NAMESPACE, else palisade-system).
    #[arg(long)]
    namespace: Option<String>,
    /// Name of the compiled configuration Secret.
    #[arg(long, default_value = palisade_crds::bundle_secret::DEFAULT_SECRET_NAME)]
    secret_name: String,
    /// Run without leader election (only for a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8081")]
    metrics_listen: String,
    /// Audit database for approval outcomes: postgres://... (the gateways'
    /// database) or sqlite://PATH. Without it, outcomes are only logged.
    #[arg(long, env = "PALISADE_AUDIT_URL")]
    audit_url: Option<String>,
    /// File holding the audit chain's key (HMAC-SHA256), which the
    /// database never holds; the chart mounts it from a Secret. Without
    /// it, approval outcomes are hashed unkeyed (`audit verify` says so).
    #[arg(long, env = "PALISADE_AUDIT_KEY_FILE")]
    audit_key_file: Option<std::path::PathBuf>,
    /// Where audit events wait while the database is unreachable.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("palisade-operator-spool"))]
    audit_spool_dir: std::path::PathBuf,
    /// Delete decided, expired and consumed Approvals this long after they
    /// finished (e.g. 24h, 7d is 168h).
    #[arg(long, default_value = "24h")]
    approval_retention: String,
    /// Read AIPolicies, ToolGrants and Approvals only in these namespaces
    /// (comma-separated, e.g. clinic,billing); empty or unset: every
    /// namespace. With a list, nothing is listed or watched cluster-wide,
    /// so RoleBindings in those namespaces are enough.
    #[arg(long, env = "PALISADE_WATCH_NAMESPACES", value_name = "NS1,NS2")]
    watch_namespaces: Option<String>,
    /// Provider base URLs policies may use (comma-separated
    /// SCHEME://HOST[:PORT] patterns, `*.` for subdomains, `*` for any);
    /// default: the chart's list (api.openai.com, api.anthropic.com over
    /// https, *.svc and *.svc.cluster.local over http).
    #[arg(long, env = "PALISADE_ALLOWED_PROVIDER_URLS", value_name = "URL,URL")]
    allowed_provider_urls: Option<String>,
    /// Let policies send provider credentials over plain http://.
    #[arg(long, env = "PALISADE_ALLOW_PLAINTEXT_CREDENTIALS")]
    allow_plaintext_credentials: bool,
    /// The bytes one compiled policy may take in the configuration Secret
    /// (its JSON, before compression). A policy over it is refused on its
    /// own (its status and an Event say so) and the others are written.
    #[arg(long, value_name = "BYTES", default_value_t = palisade_crds::bundle_secret::DEFAULT_POLICY_BUDGET as u32, value_parser = clap::value_parser!(u32).range(1024..))]
    policy_size_budget: u32,
}

fn config_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("palisade-operator-{}", std::process::id()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    palisade_crds::logging::init(args.log_format);
    let namespace = args
        .namespace
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "palisade-system".into());
    let watch_namespaces =
        match palisade_operator::scope::parse(args.watch_namespaces.as_deref().unwrap_or("")) {
            Ok(namespaces) => namespaces,
            Err(e) => {
                eprintln!("palisade-operator: --watch-namespaces: {e}");
                return ExitCode::FAILURE;
            }
        };
    let egress = match palisade_policy::Egress::from_flag(
        args.allowed_provider_urls.as_deref(),
        args.allow_plaintext_credentials,
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("palisade-operator: --allowed-provider-urls: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("palisade-operator: cannot reach the Kubernetes API: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = OperatorConfig::new(namespace.clone());
    config.secret_name = args.secret_name;
    config.watch_namespaces = watch_namespaces;
    tracing::info!("provider base URLs allowed: {egress}");
    config.egress = egress;
    config.policy_size_budget = args.policy_size_budget as usize;
    tracing::info!(
        "watching AIPolicies, ToolGrants and Approvals in {}",
        palisade_operator::scope::describe(&config.watch_namespaces)
    );
    config.approval_retention =
        match palisade_crds::duration::parse_duration(&args.approval_retention) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("palisade-operator: --approval-retention: {e}; use e.g. 24h");
                return ExitCode::FAILURE;
            }
        };
    let mut audit_task = None;
    match &args.audit_url {
        Some(url) => {
            let opened = async {
                let store = palisade_audit::Store::open(url, palisade_audit::Migrations::Apply)
                    .await
                    .map_err(|e| e.to_string())?;
                let audit_metrics =
                    palisade_audit::AuditMetrics::register(&config.metrics.registry)
                        .map_err(|e| e.to_string())?;
                let mut writer_config = palisade_audit::WriterConfig::new(&args.audit_spool_dir);
                writer_config.key = match &args.audit_key_file {
                    Some(path) => {
                        Some(palisade_audit::AuditKey::from_file(path).map_err(|e| e.to_string())?)
                    }
                    None => {
                        tracing::warn!(
                            "no --audit-key-file (PALISADE_AUDIT_KEY_FILE): approval outcomes are hashed without a key"
                        );
                        None
                    }
                };
                palisade_audit::AuditWriter::start(store, writer_config, audit_metrics)
                    .map_err(|e| e.to_string())
            };
            match opened.await {
                Ok((writer, task)) => {
                    config.audit = Some(writer);
                    audit_task = Some(task);
                }
                Err(e) => {
                    eprintln!("palisade-operator: audit: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => tracing::warn!("no --audit-url: approval outcomes are logged, not audited"),
    }
    let metrics = std::sync::Arc::clone(&config.metrics);
    match tokio::net::TcpListener::bind(&args.metrics_listen).await {
        Ok(listener) => {
            let router = palisade_operator::metrics::router(std::sync::Arc::clone(&metrics));
            tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
        }
        Err(e) => {
            eprintln!(
                "palisade-operator: cannot listen on {}: {e}",
                args.metrics_listen
            );
            return ExitCode::FAILURE;
        }
    }
    let work = {
        let client = client.clone();
        move || run(client.clone(), config.clone())
    };
    let leading = async {
        if args.no_leader_election {
            tokio::select! {
                result = work() => result,
                () = shutdown_signal() => Ok(()),
            }
        } else {
            let identity = config_identity();
            let lease = palisade_operator::leader::LeaseConfig::new(namespace, identity);
            let (tx, mut rx) = tokio::sync::watch::channel(false);
            let gauge = std::sync::Arc::clone(&metrics);
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let leading = *rx.borrow();
                    gauge.leader.set(i64::from(leading));
                    if !leading {
                        // A standby replica is healthy and ready to take over.
                        gauge
                            .ready
                            .store(true, std::sync::atomic::Ordering::Release);
                    }
                }
            });
            // On SIGTERM the leader stops its work, then releases the
            // Lease, so a standby takes over at once.
            palisade_operator::leader::run_while_leader_until(
                client,
                lease,
                tx,
                work,
                shutdown_signal(),
            )
            .await
        }
    };
    let code = match leading.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade-operator: {e}");
            ExitCode::FAILURE
        }
    };
    // Every handle to the audit writer is gone with the loops: wait until
    // what they recorded is durable.
    if let Some(task) = audit_task {
        task.join().await;
    }
    code
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}
