//! `palisade-operator`: compiles AIPolicies and ToolGrants into the
//! configuration the gateways watch.

use clap::Parser;
use palisade_operator::{OperatorConfig, run};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "palisade-operator", version, about = "Palisade operator")]
struct Args {
    /// Namespace of the compiled configuration Secret (default: $POD_NAMESPACE, else palisade-system).
    #[arg(long)]
    namespace: Option<String>,
    /// Name of the compiled configuration Secret.
    #[arg(long, default_value = "palisade-config")]
    secret_name: String,
    /// Run without leader election (only for a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8081")]
    metrics_listen: String,
}

fn config_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("palisade-operator-{}", std::process::id()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let args = Args::parse();
    let namespace = args
        .namespace
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "palisade-system".into());
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("palisade-operator: cannot reach the Kubernetes API: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = OperatorConfig::new(namespace.clone());
    config.secret_name = args.secret_name;
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
            work().await
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
            palisade_operator::leader::run_while_leader(client, lease, tx, work).await
        }
    };
    tokio::select! {
        result = leading => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("palisade-operator: {e}");
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}
