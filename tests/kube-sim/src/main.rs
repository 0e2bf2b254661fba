//! `kube-sim`: serve an in-memory Kubernetes API server for kubectl.
//!
//! `kube-sim --port 0 --kubeconfig ./kubeconfig` prints its URL on one line
//! and serves until killed; then `KUBECONFIG=./kubeconfig kubectl get ns`.

use clap::Parser;
use palisade_kube_sim::KubeSim;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "kube-sim",
    version,
    about = "In-memory Kubernetes API server for tests"
)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on. Plain HTTP: keep it on loopback.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Write a kubeconfig for this server here.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let sim = match KubeSim::bind(&format!("{}:{}", args.host, args.port)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "kube-sim: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.kubeconfig
        && let Err(e) = sim.write_kubeconfig(path)
    {
        eprintln!("kube-sim: cannot write kubeconfig {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("{}", sim.url());
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
