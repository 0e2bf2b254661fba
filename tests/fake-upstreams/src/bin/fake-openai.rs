//! `fake-openai --port N [--delay-ms D]`: an OpenAI-compatible upstream for
//! load tests (answers every chat completion with "ok", optionally after a
//! delay; streams when asked). Prints its URL and serves until killed.
//!
//! `fake-openai --bench [--stream-chunks 64] [--chunk-interval-ms 20]`: the
//! peer benchmarks' upstream: instant answers, `slow-<N>ms` models answer
//! after N ms, streams send 64 content chunks 20 ms apart.
//!
//! `--threads N` (default 1): runtime worker threads, for load tests that
//! give the upstream more than one core (`SCALE=1 bench/run.sh`).

use palisade_fake_upstreams::{FakeOpenAi, Script};
use std::time::Duration;

fn main() {
    let threads = std::env::args()
        .skip_while(|a| a != "--threads")
        .nth(1)
        .map_or(Ok(1), |n| n.parse::<usize>())
        .unwrap_or_else(|e| {
            eprintln!("fake-openai: --threads must be a positive number: {e}");
            std::process::exit(2);
        });
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(serve()),
        Err(e) => {
            eprintln!("fake-openai: cannot start its runtime: {e}");
            std::process::exit(1);
        }
    }
}

async fn serve() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let delay = arg("--delay-ms")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0u64);
    let script = if args.iter().any(|a| a == "--bench") {
        Script::Bench {
            chunks: arg("--stream-chunks")
                .and_then(|n| n.parse().ok())
                .unwrap_or(64),
            interval: Duration::from_millis(
                arg("--chunk-interval-ms")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(20),
            ),
        }
    } else if delay > 0 {
        Script::Slow(Duration::from_millis(delay))
    } else {
        Script::Text("ok".into())
    };
    let port = arg("--port").unwrap_or_else(|| "0".into());
    let fake = match FakeOpenAi::start_on(&format!("127.0.0.1:{port}"), script).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-openai: {e}");
            std::process::exit(1);
        }
    };
    fake.quiet();
    println!("{}", fake.base_url());
    let _ = tokio::signal::ctrl_c().await;
}
