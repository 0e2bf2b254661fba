//! `palisade-gateway run`: the standalone gateway. Loads the configuration
//! files (and reloads them on change), opens the audit database (an SQLite
//! file next to the first file unless told otherwise), serves HTTP, and on
//! SIGTERM / Ctrl-C stops accepting, finishes in-flight requests and drains
//! the audit queue before exiting.

use crate::audit_cli::default_sqlite_url;
use crate::metrics::GatewayMetrics;
use crate::server::{AppState, app};
use crate::snapshot;
use crate::source;
use clap::Args;
use palisade_audit::{AuditWriter, FailureMode, Migrations, Store, WriterConfig};
use palisade_crds::standalone;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A YAML file with AIPolicy, ToolGrant, Secret and GatewaySettings
    /// documents; repeat to combine files.
    #[arg(long = "config", short = 'c', required_unless_present = "kubernetes")]
    pub config: Vec<PathBuf>,
    /// Take the configuration from the operator's Secret through the
    /// Kubernetes API (in-cluster, or KUBECONFIG) instead of files, and
    /// accept ServiceAccount tokens.
    #[arg(long, conflicts_with = "config")]
    pub kubernetes: bool,
    /// With --kubernetes: the namespace of the configuration Secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "palisade-system")]
    pub namespace: String,
    /// With --kubernetes: the configuration Secret's name.
    #[arg(long, default_value = "palisade-config")]
    pub secret_name: String,
    /// Address to listen on (default: GatewaySettings spec.listen, 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
    /// Audit database: postgres://... or sqlite://PATH (default: the
    /// settings, else palisade-audit.db next to the first config file;
    /// required with --kubernetes).
    #[arg(long, env = "PALISADE_AUDIT_URL")]
    pub audit_url: Option<String>,
    /// Record no decisions: every audit event is dropped and counted in
    /// palisade_audit_discarded_total. Standalone only, for trying the
    /// gateway out and measuring what the audit costs; approvals are still
    /// kept in the audit database.
    #[arg(long, conflicts_with = "kubernetes")]
    pub no_audit: bool,
    /// How often to check the config files for changes.
    #[arg(long, default_value = "1s")]
    pub reload_interval: String,
    /// Close connections whose request headers take longer than this
    /// (slow clients cannot hold connections forever).
    #[arg(long, default_value = "10s")]
    pub header_read_timeout: String,
    /// Answer 408 when a request body takes longer than this to arrive.
    #[arg(long, default_value = "30s")]
    pub body_read_timeout: String,
    /// Threads serving requests (default: the CPUs this process may use,
    /// its cgroup's CPU quota included). With 1, a single-threaded
    /// runtime: no work is handed between threads.
    #[arg(long, env = "PALISADE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

fn spool_dir(audit_url: &str, first_config: &Path) -> PathBuf {
    match audit_url.strip_prefix("sqlite://") {
        Some(path) => {
            let path = Path::new(path.split('?').next().unwrap_or(path));
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("palisade-audit.db");
            path.with_file_name(format!("{name}.spool"))
        }
        None => first_config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("palisade-audit.spool"),
    }
}

/// This replica's name in reports and `consumedBy` (the pod name).
fn instance_name() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!(
            "{}-{}",
            host.trim().trim_end_matches('.'),
            std::process::id()
        )
        .trim_start_matches('-')
        .to_owned()
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode, String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let interval = palisade_crds::duration::parse_duration(&args.reload_interval)
        .map_err(|e| format!("--reload-interval: {e}"))?;
    let header_timeout = palisade_crds::duration::parse_duration(&args.header_read_timeout)
        .map_err(|e| format!("--header-read-timeout: {e}"))?;
    let body_timeout = palisade_crds::duration::parse_duration(&args.body_read_timeout)
        .map_err(|e| format!("--body-read-timeout: {e}"))?;
    let threads = args.worker_threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let rt = builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    tracing::debug!(threads, "runtime started");
    rt.block_on(serve(args, interval, header_timeout, body_timeout))
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for
/// in-flight requests (streams included). Connections whose headers do
/// not arrive within `header_timeout` are closed.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Small writes (an SSE event, a JSON answer) go out at once
                // instead of waiting for the previous segment's ACK.
                let _ = stream.set_nodelay(true);
                let service = hyper::service::service_fn({
                    let app = app.clone();
                    move |request: hyper::Request<hyper::body::Incoming>| app.clone().oneshot(request.map(axum::body::Body::new))
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn serve(
    args: RunArgs,
    interval: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
) -> Result<ExitCode, String> {
    let metrics = Arc::new(GatewayMetrics::new().map_err(|e| format!("metrics: {e}"))?);
    let current = snapshot::empty();
    // Where the configuration comes from: files, or the operator's Secret.
    let (settings, watcher, tokens, first, revision, client) = if args.kubernetes {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
        let source = crate::kubernetes::ClusterSource {
            namespace: args.namespace.clone(),
            secret_name: args.secret_name.clone(),
            instance: instance_name(),
        };
        let watcher = crate::kubernetes::watch(
            client.clone(),
            source,
            current.clone(),
            Arc::clone(&metrics),
        );
        let settings = standalone::GatewaySettings {
            listen: "0.0.0.0:8080".into(),
            ..Default::default()
        };
        let tokens = Some(crate::kubernetes::TokenReviewer::new(
            client.clone(),
            Vec::new(),
        ));
        let revision = format!(
            "(waiting for Secret {}/{})",
            args.namespace, args.secret_name
        );
        (
            settings,
            watcher,
            tokens,
            PathBuf::from("."),
            revision,
            Some(client),
        )
    } else {
        let (revision, settings) = source::load_into(&args.config, &current, &metrics)?;
        let watcher = source::watch(
            args.config.clone(),
            current.clone(),
            Arc::clone(&metrics),
            interval,
        );
        let first = args.config.first().cloned().unwrap_or_default();
        (settings, watcher, None, first, revision, None)
    };
    let audit_url = match (args.audit_url.clone().or_else(|| settings.audit.url.clone()), args.kubernetes) {
        (Some(url), _) => url,
        (None, false) => default_sqlite_url(&first),
        (None, true) => return Err("--kubernetes needs --audit-url (or PALISADE_AUDIT_URL), e.g. postgres://palisade@postgres/palisade".into()),
    };
    let store = Store::open(&audit_url, Migrations::Apply)
        .await
        .map_err(|e| e.to_string())?;
    let read_token = match &settings.audit.read_token_env {
        None => None,
        Some(var) => Some(std::env::var(var).map_err(|_| {
            format!("GatewaySettings spec.audit.readTokenEnv names {var}, which is not set; export it or remove readTokenEnv")
        })?),
    };
    let query_store = store.clone();
    let mut operator_tokens = Vec::new();
    for op in &settings.approvals.operators {
        let token = std::env::var(&op.token_env).map_err(|_| {
            format!("GatewaySettings spec.approvals.operators[{}].tokenEnv names {}, which is not set; export it or remove the operator", op.name, op.token_env)
        })?;
        if let Some(snapshot) = current.load_full() {
            use sha2::{Digest, Sha256};
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if let Some(k) = snapshot.keys.iter().find(|k| k.sha256 == digest) {
                return Err(format!(
                    "GatewaySettings spec.approvals.operators[{}]: the token in {} is also the API key of agent {}/{}; an agent must never decide approvals, give the operator a different token",
                    op.name, op.token_env, k.namespace, k.agent
                ));
            }
        }
        operator_tokens.push((op.name.clone(), token));
    }
    let instance: std::sync::Arc<str> = instance_name().into();
    let approvals = match client {
        Some(client) => crate::approvals::Approvals::Cluster { client, instance },
        None => crate::approvals::Approvals::Local {
            store: palisade_audit::approvals::ApprovalStore::new(store.clone()),
            instance,
        },
    };
    let mut writer_config = WriterConfig::new(spool_dir(&audit_url, &first));
    writer_config.discard = args.no_audit;
    if args.no_audit {
        tracing::warn!(
            "--no-audit: decisions are NOT recorded; never run a shared gateway like this"
        );
    }
    writer_config.failure_mode = match settings.audit.failure_mode {
        standalone::FailureMode::Spool => FailureMode::Spool,
        standalone::FailureMode::FailClosed => FailureMode::FailClosed,
    };
    let (audit, audit_task) = AuditWriter::start(store, writer_config, metrics.audit.clone())
        .map_err(|e| e.to_string())?;
    let listen = args.listen.clone().unwrap_or(settings.listen);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "palisade-gateway listening on http://{addr} (configuration revision {revision}, audit {})",
        if args.no_audit {
            "OFF (--no-audit)".to_string()
        } else {
            palisade_audit::store::redact_url(&audit_url)
        }
    );
    let state = AppState::from(crate::server::StateParts {
        config: current,
        audit,
        metrics,
        http: crate::upstream::HttpClient::new(),
        tokens,
        approvals,
        operators: Arc::new(crate::approvals_api::Operators::new(operator_tokens)),
        body_timeout,
    });
    // Standalone: nobody else expires approvals, so this process audits
    // each expiry once (the operator does it in a cluster).
    let sweeper = tokio::spawn(crate::approvals_api::sweep_expired(state.clone()));
    let router = match read_token {
        Some(token) => crate::server::app_with_audit_query(state, query_store, token),
        None => app(state),
    };
    serve_connections(listener, router, header_timeout, shutdown_signal()).await;
    watcher.abort();
    sweeper.abort();
    // Every request is done and every handle to the writer is gone: wait
    // until everything accepted is durable.
    audit_task.join().await;
    tracing::info!("stopped; audit queue drained");
    Ok(ExitCode::SUCCESS)
}
