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
    let mut config = OperatorConfig::new(namespace);
    config.secret_name = args.secret_name;
    tokio::select! {
        result = run(client, config) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("palisade-operator: {e}");
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}
