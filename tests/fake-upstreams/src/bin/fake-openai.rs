//! `fake-openai --port N [--delay-ms D]`: an OpenAI-compatible upstream for
//! load tests (answers every chat completion with "ok", optionally after a
//! delay; streams when asked). Prints its URL and serves until killed.
//!
//! `fake-openai --bench [--stream-chunks 64] [--chunk-interval-ms 20]`: the
//! peer benchmarks' upstream: instant answers, `slow-<N>ms` models answer
//! after N ms, streams send 64 content chunks 20 ms apart.

use palisade_fake_upstreams::{FakeOpenAi, Script};
use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
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
