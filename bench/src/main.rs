//! `loadgen`: open-loop load at a fixed rate. Requests are scheduled at
//! `1/rate` intervals whatever the server does, and each latency is
//! measured from its scheduled send time, so a slow server cannot hide its
//! queueing (no coordinated omission). With `--ttft` the latency is the
//! time to the first server-sent event (`data:`) of a streamed answer,
//! the rest of the stream still read. Prints one JSON object.
//!
//! The same latencies are also reported from each request's actual send
//! (`sent_p50_ms`, …): tokio's timers have millisecond granularity, so a
//! request starts up to ~1 ms after its scheduled time whatever the
//! server does; that lateness (`late_p50_ms`, `late_p99_ms`) is the load
//! generator's own jitter, the same for every target, and comparing two
//! targets on the from-send figures leaves it out. A large `late_p99_ms`
//! means the generator fell behind, and only the from-schedule figures
//! then tell the truth.

use clap::Parser;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    url: String,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// JSON body to POST.
    #[arg(long)]
    body: String,
    /// `Name: value` headers.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Measure time to the first `data:` event instead of the full answer.
    #[arg(long)]
    ttft: bool,
    /// Also write every request as a JSON line to this file: when it was
    /// scheduled and sent (ms from the start) and its latency from each.
    #[arg(long)]
    samples: Option<std::path::PathBuf>,
}

/// Reads a streamed answer to its end; returns when its first event came.
async fn first_event(mut resp: reqwest::Response) -> Option<Instant> {
    let mut first = None;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if first.is_none() && c.windows(5).any(|w| w == b"data:") {
                    first = Some(Instant::now());
                }
            }
            Ok(None) => return first,
            Err(_) => return None,
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    };
    let total = (args.rate * args.duration).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut headers = reqwest::header::HeaderMap::new();
    for h in &args.headers {
        if let Some((k, v)) = h.split_once(':')
            && let (Ok(k), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()),
                reqwest::header::HeaderValue::from_str(v.trim()),
            )
        {
            headers.insert(k, v);
        }
    }
    let body = Arc::new(args.body.clone());
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let client = client.clone();
        let headers = headers.clone();
        let body = Arc::clone(&body);
        let latencies = Arc::clone(&latencies);
        let errors = Arc::clone(&errors);
        let url = args.url.clone();
        let ttft = args.ttft;
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let r = client
                .post(&url)
                .headers(headers)
                .header("content-type", "application/json")
                .body(body.as_str().to_owned())
                .send()
                .await;
            let done = match r {
                Ok(resp) if resp.status().is_success() && ttft => first_event(resp).await,
                Ok(resp) if resp.status().is_success() => {
                    resp.bytes().await.ok().map(|_| Instant::now())
                }
                _ => None,
            };
            if let Some(at) = done {
                let micros = |from: Instant| at.duration_since(from).as_micros() as u64;
                let late = sent.duration_since(scheduled).as_micros() as u64;
                latencies.lock().await.push((
                    micros(scheduled),
                    micros(sent),
                    late,
                    scheduled.duration_since(start).as_micros() as u64,
                ));
            } else {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let all = latencies.lock().await.clone();
    if let Some(path) = &args.samples {
        let lines: String = all
            .iter()
            .map(|(l, s, late, at)| {
                format!(
                    "{}\n",
                    json!({"scheduled_ms": *at as f64 / 1000.0, "late_ms": *late as f64 / 1000.0,
                           "ms": *l as f64 / 1000.0, "sent_ms": *s as f64 / 1000.0})
                )
            })
            .collect();
        if let Err(e) = std::fs::write(path, lines) {
            eprintln!("loadgen: {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    let sorted = |f: fn(&(u64, u64, u64, u64)) -> u64| {
        let mut v: Vec<u64> = all.iter().map(f).collect();
        v.sort_unstable();
        v
    };
    let (l, from_send, late) = (sorted(|x| x.0), sorted(|x| x.1), sorted(|x| x.2));
    let ok = l.len();
    println!(
        "{}",
        json!({
            "rate": args.rate, "sent": total, "ok": ok,
            "errors": errors.load(std::sync::atomic::Ordering::Relaxed),
            "achieved_rate": ok as f64 / elapsed,
            "p50_ms": pct(&l, 0.50), "p90_ms": pct(&l, 0.90), "p99_ms": pct(&l, 0.99), "max_ms": pct(&l, 1.0),
            "sent_p50_ms": pct(&from_send, 0.50), "sent_p99_ms": pct(&from_send, 0.99),
            "late_p50_ms": pct(&late, 0.50), "late_p99_ms": pct(&late, 0.99)
        })
    );
}
