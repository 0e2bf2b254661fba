//! `palisade-gateway run`: the standalone gateway. Loads the configuration
//! files (and reloads them on change), opens the audit database (an SQLite
//! file next to the first file unless told otherwise), serves HTTP, and on
//! SIGTERM / Ctrl-C stops accepting, finishes in-flight requests and drains
//! the audit queue before exiting.

mod startup;

pub use startup::StartupError;
use startup::{at_least_one, body_budget, duration};

use crate::approvals::Approvals;
use crate::config::{default_sqlite_url, reload};
use crate::kubernetes::token_review::ReviewRate;
use crate::kubernetes::{ClusterSource, TokenReviewer, WatchNamespaces};
use crate::metrics::GatewayMetrics;
use crate::router::{MetricsRoute, metrics_app, routes};
use crate::security::quarantine::{self, Overlay, Quarantines};
use crate::snapshot::{self, Current};
use crate::state::AppState;
use clap::Args;
use palisade_audit::quarantines::QuarantineStore;
use palisade_audit::{AuditKey, AuditWriter, FailureMode, Migrations, Store, WriterConfig};
use palisade_crds::standalone;
use palisade_policy::Egress;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// How to log to stderr: `text`, or `json` (one object per line, for
    /// log pipelines). The level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "PALISADE_LOG_FORMAT", default_value = "text")]
    pub log_format: palisade_crds::logging::LogFormat,
    /// Send a trace span of every routed request to this OTLP/HTTP
    /// collector endpoint (e.g. `http://otel-collector:4318`; `/v1/traces`
    /// is added). Off by default.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
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
    #[arg(long, default_value = palisade_crds::bundle_secret::DEFAULT_SECRET_NAME)]
    pub secret_name: String,
    /// With --kubernetes: create and read Approvals only in these
    /// namespaces (comma-separated; the operator's --watch-namespaces);
    /// empty or unset: every namespace. A held call of another namespace
    /// is refused (403 approvals.namespace_not_watched).
    #[arg(long, env = "PALISADE_WATCH_NAMESPACES", value_name = "NS1,NS2")]
    pub watch_namespaces: Option<String>,
    /// Address to listen on (default: GatewaySettings spec.listen, 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
    /// The environment variable holding the auditor's token, which may
    /// read the audit over HTTP (`/v1/audit/*`, `/v1/security/alerts`);
    /// overrides GatewaySettings `spec.audit.readTokenEnv`. In a cluster,
    /// the only way to serve those routes.
    #[arg(long, value_name = "VAR")]
    pub audit_read_token_env: Option<String>,
    /// Serve the web console at `/console` (also GatewaySettings
    /// `spec.console.enabled`); it needs the auditor token
    /// (--audit-read-token-env), with which its viewers log in.
    #[arg(long, env = "PALISADE_CONSOLE")]
    pub console: bool,
    /// Serve `/metrics` only on this address (plain HTTP, with
    /// `/healthz`), not on --listen: agents that can call the gateway
    /// cannot read other tenants' counters. Unset: `/metrics` on --listen.
    #[arg(long, env = "PALISADE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Audit database: postgres://... or sqlite://PATH (default: the
    /// settings, else palisade-audit.db next to the first config file;
    /// required with --kubernetes).
    #[arg(long, env = "PALISADE_AUDIT_URL")]
    pub audit_url: Option<String>,
    /// File holding the audit chain's key (HMAC-SHA256; at least 32
    /// bytes), which the database never holds. Default standalone:
    /// palisade-audit.key next to the first config file, created at the
    /// first start. With --kubernetes the chart mounts it from a Secret;
    /// without it rows are hashed unkeyed (and `audit verify` says so).
    #[arg(long, env = "PALISADE_AUDIT_KEY_FILE")]
    pub audit_key_file: Option<PathBuf>,
    /// Record no decisions: every audit event is dropped and counted in
    /// palisade_audit_discarded_total. Standalone only, for trying the
    /// gateway out and measuring what the audit costs; approvals are still
    /// kept in the audit database.
    #[arg(long, conflicts_with = "kubernetes")]
    pub no_audit: bool,
    /// When a chat request's routing event is recorded: `durable` (the
    /// answer waits until it is committed or spooled, like every tool-call
    /// decision) or `buffered` (answered at once, written moments later,
    /// lost if the process dies first; counted in
    /// palisade_audit_buffered_total).
    #[arg(long, env = "PALISADE_AUDIT_CHAT_EVENTS", value_enum, default_value_t = crate::decisions::ChatEvents::Durable)]
    pub audit_chat_events: crate::decisions::ChatEvents,
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
    /// Serve at most this many connections at once; more wait in the
    /// accept backlog until one closes.
    #[arg(long, env = "PALISADE_MAX_CONNECTIONS", default_value_t = crate::listener::MAX_CONNECTIONS, value_parser = at_least_one, value_name = "N")]
    pub max_connections: usize,
    /// Hold at most this many bytes of request bodies at once, all
    /// requests together (at least 1048576, the largest body); a body that
    /// does not fit is answered 503 gateway.overloaded.
    #[arg(long, env = "PALISADE_MAX_IN_FLIGHT_BODY_BYTES", default_value_t = crate::limits::BODY_BUDGET, value_parser = body_budget, value_name = "BYTES")]
    pub max_in_flight_body_bytes: usize,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// With --kubernetes: accept only ServiceAccount tokens for these
    /// audiences (comma-separated, e.g. `palisade` for projected tokens);
    /// unset: the API server's own audiences.
    #[arg(
        long = "token-audience",
        env = "PALISADE_TOKEN_AUDIENCES",
        value_delimiter = ',',
        value_name = "AUDIENCE"
    )]
    pub token_audiences: Vec<String>,
    /// With --kubernetes: TokenReviews per second this process may make
    /// for tokens it has no cached answer for; past it, 429.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub token_reviews_per_second: u32,
    /// With --kubernetes: TokenReviews that may be made at once after a
    /// quiet spell.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub token_review_burst: u32,
    /// Threads serving requests (default: the CPUs this process may use,
    /// its cgroup's CPU quota included). With 1, a single-threaded
    /// runtime: no work is handed between threads.
    #[arg(long, env = "PALISADE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// Provider base URLs the gateway may connect to (comma-separated
    /// SCHEME://HOST[:PORT] patterns, `*.` for subdomains, `*` for any),
    /// checked before every provider call. Default: with --kubernetes the
    /// chart's list (api.openai.com, api.anthropic.com over https, *.svc
    /// and *.svc.cluster.local over http); standalone any URL.
    #[arg(long, env = "PALISADE_ALLOWED_PROVIDER_URLS", value_name = "URL,URL")]
    pub allowed_provider_urls: Option<String>,
    /// Send provider credentials over plain http:// (refused otherwise).
    #[arg(long, env = "PALISADE_ALLOW_PLAINTEXT_CREDENTIALS")]
    pub allow_plaintext_credentials: bool,
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

/// The audit chain's key: the file given; standalone, the one next to
/// the configuration (created at the first start); in a cluster without
/// one, none (rows are hashed unkeyed, loudly).
fn audit_key(args: &RunArgs, first_config: &Path) -> Result<Option<AuditKey>, StartupError> {
    if let Some(path) = &args.audit_key_file {
        return Ok(Some(AuditKey::from_file(path)?));
    }
    if args.no_audit {
        return Ok(None);
    }
    if args.kubernetes {
        tracing::warn!(
            "no --audit-key-file (PALISADE_AUDIT_KEY_FILE): audit rows are hashed without a key, so anyone who can write to the database could rewrite them undetected; the chart mounts one from a Secret"
        );
        return Ok(None);
    }
    let path = crate::config::default_key_file(first_config);
    let (key, created) = AuditKey::load_or_create(&path)?;
    if created {
        tracing::info!(path = %path.display(), "created the audit chain's key; keep it apart from the database and back it up: `audit verify` needs it");
    }
    Ok(Some(key))
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

pub fn run(args: RunArgs) -> Result<ExitCode, StartupError> {
    let interval = duration("reload-interval", &args.reload_interval)?;
    let header_timeout = duration("header-read-timeout", &args.header_read_timeout)?;
    let body_timeout = duration("body-read-timeout", &args.body_read_timeout)?;
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
        .map_err(StartupError::Runtime)?;
    rt.block_on(async move {
        let telemetry = crate::telemetry::init(args.log_format, args.otlp_endpoint.as_deref())
            .map_err(StartupError::Telemetry)?;
        tracing::debug!(threads, "runtime started");
        let served = serve(args, interval, header_timeout, body_timeout).await;
        telemetry.shutdown();
        served
    })
}

/// Where the configuration comes from: files, or the operator's Secret.
struct Source {
    settings: standalone::GatewaySettings,
    watcher: tokio::task::JoinHandle<()>,
    /// In a cluster.
    client: Option<kube::Client>,
    /// Where the audit database and its spool go by default.
    first_config: PathBuf,
    /// What the start-up line says is served.
    revision: String,
    /// Standalone operators (name, token); none in a cluster.
    operators: Vec<(String, String)>,
}

async fn source(
    args: &RunArgs,
    current: &Current,
    metrics: &Arc<GatewayMetrics>,
    (interval, overlay): (Duration, &Overlay),
) -> Result<Source, StartupError> {
    if !args.kubernetes {
        let (snapshot, settings) = reload::compile(&args.config)?;
        let operators = operators(&settings)?;
        let keys: Vec<reload::OperatorKey> = settings
            .approvals
            .operators
            .iter()
            .zip(&operators)
            .map(|(op, (_, token))| reload::OperatorKey::new(&op.name, &op.token_env, token))
            .collect();
        // The first load and every reload: no agent key may be an
        // operator's token.
        let revision = reload::serve(snapshot, current, metrics, &keys, overlay)?;
        let watcher = reload::watch(
            args.config.clone(),
            current.clone(),
            Arc::clone(metrics),
            interval,
            (keys, overlay.clone()),
        );
        return Ok(Source {
            settings,
            watcher,
            client: None,
            first_config: args.config.first().cloned().unwrap_or_default(),
            revision,
            operators,
        });
    }
    let client = kube::Client::try_default()
        .await
        .map_err(StartupError::Kubernetes)?;
    let cluster = ClusterSource {
        namespace: args.namespace.clone(),
        secret_name: args.secret_name.clone(),
        instance: instance_name(),
    };
    let watcher = crate::kubernetes::watch(
        client.clone(),
        cluster,
        current.clone(),
        Arc::clone(metrics),
    );
    Ok(Source {
        settings: standalone::GatewaySettings {
            listen: "0.0.0.0:8080".into(),
            ..Default::default()
        },
        watcher,
        client: Some(client),
        first_config: PathBuf::from("."),
        revision: format!(
            "(waiting for Secret {}/{})",
            args.namespace, args.secret_name
        ),
        // In a cluster, approvals are decided through Kubernetes RBAC.
        operators: Vec::new(),
    })
}

/// The operators of `settings` (name, token, from the environment).
fn operators(
    settings: &standalone::GatewaySettings,
) -> Result<Vec<(String, String)>, StartupError> {
    let mut operators = Vec::new();
    for op in &settings.approvals.operators {
        let token = std::env::var(&op.token_env).map_err(|_| StartupError::OperatorTokenUnset {
            operator: op.name.clone(),
            var: op.token_env.clone(),
        })?;
        let field = format!(
            "GatewaySettings spec.approvals.operators[{}].tokenEnv",
            op.name
        );
        let token = startup::strong_token(token, &field, &op.token_env)?;
        operators.push((op.name.clone(), token));
    }
    Ok(operators)
}

/// A listener on `address`, and the address it got (port 0: the one
/// the system chose).
async fn bind(
    address: &str,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), StartupError> {
    let failed = |source| StartupError::Listen {
        address: address.to_owned(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    Ok((listener, addr))
}

async fn serve(
    args: RunArgs,
    interval: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
) -> Result<ExitCode, StartupError> {
    let shutdown = crate::listener::shutdown_signal();
    let metrics = Arc::new(GatewayMetrics::new()?);
    let watch_namespaces = WatchNamespaces::parse(args.watch_namespaces.as_deref().unwrap_or(""))?;
    if !args.kubernetes && !watch_namespaces.is_all() {
        return Err(StartupError::WatchNamespacesStandalone);
    }
    let egress = match (&args.allowed_provider_urls, args.kubernetes) {
        // Standalone, the files are the admin's: any URL unless told.
        (None, false) => Egress::any_url(args.allow_plaintext_credentials),
        (list, _) => Egress::from_flag(list.as_deref(), args.allow_plaintext_credentials)?,
    };
    tracing::info!("provider base URLs allowed: {egress}");
    let current = snapshot::empty();
    // Standalone quarantines, laid over every configuration served.
    let overlay = Overlay::default();
    let Source {
        settings,
        watcher,
        client,
        first_config: first,
        revision,
        operators: operator_tokens,
    } = source(&args, &current, &metrics, (interval, &overlay)).await?;
    let audit_url = match (
        args.audit_url
            .clone()
            .or_else(|| settings.audit.url.clone()),
        args.kubernetes,
    ) {
        (Some(url), _) => url,
        (None, false) => default_sqlite_url(&first),
        (None, true) => return Err(StartupError::AuditUrlRequired),
    };
    let store = Store::open(&audit_url, Migrations::Apply).await?;
    let read_token = match args
        .audit_read_token_env
        .as_ref()
        .or(settings.audit.read_token_env.as_ref())
    {
        None => None,
        Some(var) => {
            let token =
                std::env::var(var).map_err(|_| StartupError::ReadTokenUnset(var.clone()))?;
            let field = "GatewaySettings spec.audit.readTokenEnv (--audit-read-token-env)";
            Some(startup::strong_token(token, field, var)?)
        }
    };
    let console = args.console || settings.console.enabled;
    if console && read_token.is_none() {
        return Err(StartupError::ConsoleWithoutAuditor);
    }
    let instance: Arc<str> = instance_name().into();
    let approvals = match &client {
        Some(client) => {
            tracing::info!(
                "approvals: created and read in {}",
                watch_namespaces.describe()
            );
            Approvals::cluster(client.clone(), instance, watch_namespaces)
        }
        None => Approvals::local(store.clone(), instance),
    };
    let mut writer_config = WriterConfig::new(spool_dir(&audit_url, &first));
    writer_config.key = audit_key(&args, &first)?;
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
    let (audit, audit_task) =
        AuditWriter::start(store.clone(), writer_config, metrics.audit.clone())?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::listener::tls_acceptor(cert, key)?),
        _ => None,
    };
    let listen = args.listen.clone().unwrap_or(settings.listen);
    let (listener, addr) = bind(&listen).await?;
    // Bound before the first line is printed: whoever waits for it can
    // reach both ports.
    let metrics_listener = match &args.metrics_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    println!(
        "palisade-gateway listening on {}://{addr} (configuration revision {revision}, audit {})",
        if tls.is_some() { "https" } else { "http" },
        if args.no_audit {
            "OFF (--no-audit)".to_string()
        } else {
            palisade_audit::store::redact_url(&audit_url)
        }
    );
    let quarantines = match &client {
        Some(client) => Quarantines::cluster(client.clone(), instance_name()),
        None => {
            let store = QuarantineStore::new(store.clone());
            quarantine::reload(&store, &overlay, &current, &metrics).await;
            Quarantines::Local { store, overlay }
        }
    };
    let mut state = AppState::builder(current, audit, metrics, approvals)
        .quarantines(quarantines)
        .chat_events(args.audit_chat_events)
        .operators(operator_tokens)
        .body_timeout(body_timeout)
        .body_budget(args.max_in_flight_body_bytes)
        .egress(egress)
        // Limits shared by the replicas when the audit is PostgreSQL.
        .shared_budgets(store.clone());
    let console_cluster = client.as_ref().map(|c| (c.clone(), args.namespace.clone()));
    if let Some(client) = client {
        let rate = ReviewRate {
            per_second: args.token_reviews_per_second,
            burst: args.token_review_burst,
        };
        // Security alerts become Events on their AIPolicy.
        let reporter = kube::runtime::events::Reporter {
            controller: "palisade-gateway".into(),
            instance: Some(instance_name()),
        };
        state = state.events(kube::runtime::events::Recorder::new(
            client.clone(),
            reporter,
        ));
        let reviewer = TokenReviewer::new(client, args.token_audiences.clone()).rate(rate);
        state = state.service_accounts(reviewer);
    }
    if console {
        state = state.console(crate::console::Console {
            secure_cookie: args.tls_cert.is_some(),
            instance: instance_name(),
            cluster: console_cluster,
        });
        tracing::info!("console: served at /console");
    }
    if let Some(token) = read_token {
        state = state.audit_reader(store, token);
    }
    let state = state.build();
    let (metrics_route, metrics_server) = match metrics_listener {
        None => (MetricsRoute::Here, None),
        Some((listener, addr)) => (
            MetricsRoute::Elsewhere,
            Some(crate::listener::serve_metrics(
                listener,
                addr,
                metrics_app(state.clone()),
            )),
        ),
    };
    // Standalone: nobody else expires approvals, so this process audits
    // each expiry once (the operator does it in a cluster).
    let sweeper = tokio::spawn(crate::decisions::held::sweep_expired(state.clone()));
    let listening = crate::listener::Listening {
        header_timeout,
        max_connections: args.max_connections,
        tls,
    };
    crate::listener::serve(listener, routes(state, metrics_route), listening, shutdown).await;
    watcher.abort();
    sweeper.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    // Every request is done and every handle to the writer is gone: wait
    // until everything accepted is durable.
    audit_task.join().await;
    tracing::info!("stopped; audit queue drained");
    Ok(ExitCode::SUCCESS)
}
