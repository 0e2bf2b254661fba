//! Is kube-sim responsive with 1,000 objects and 100 open watches?
//!
//! `cargo bench -p palisade-kube-sim --bench responsiveness` prints:
//! start-up time, list latency of 1,000 ConfigMaps (idle and with 100
//! watches open), write latency with 100 watches, and the time until all
//! 100 watches have seen a write. Figures go to docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use palisade_kube_sim::KubeSim;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn report(label: &str, samples: &mut [Duration]) {
    let p50 = percentile(samples, 0.50);
    let p99 = percentile(samples, 0.99);
    println!(
        "{label:<48} n={:<4} p50={:>9.3?} p99={:>9.3?}",
        samples.len(),
        p50,
        p99
    );
}

async fn list_latency(api: &Api<ConfigMap>, rounds: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let list = api.list(&ListParams::default()).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(list.items.len(), 1000);
    }
    samples
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Start-up: bind on port 0 until the first answered request.
    let mut startup = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let sim = KubeSim::start().await.unwrap();
        let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
        client.apiserver_version().await.unwrap();
        startup.push(t.elapsed());
    }
    report("start-up to first answered request", &mut startup);

    let sim = KubeSim::start().await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let t = Instant::now();
    for i in 0..1000 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:04}"), "labels": {"bench": "yes"}}, "data": {"payload": "x".repeat(256)}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    println!(
        "{:<48} {:>9.3?} ({:.0} creates/s)",
        "create 1,000 ConfigMaps (sequential)",
        t.elapsed(),
        1000.0 / t.elapsed().as_secs_f64()
    );

    let mut idle = list_latency(&api, 50).await;
    report("list 1,000 objects, no watches", &mut idle);

    // 100 concurrent watches, each counting the events it receives.
    let seen = Arc::new(AtomicU64::new(0));
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let api = api.clone();
        let seen = Arc::clone(&seen);
        let rv = rv.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .unwrap()
                .boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                if matches!(event, WatchEvent::Modified(_)) {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut busy = list_latency(&api, 50).await;
    report("list 1,000 objects, 100 watches open", &mut busy);

    let mut writes = Vec::new();
    let mut fanout = Vec::new();
    for i in 0..100 {
        let before = seen.load(Ordering::SeqCst);
        let t = Instant::now();
        api.patch(
            &format!("cm-{:04}", i * 7),
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": i.to_string()}})),
        )
        .await
        .unwrap();
        writes.push(t.elapsed());
        while seen.load(Ordering::SeqCst) < before + 100 {
            tokio::task::yield_now().await;
        }
        fanout.push(t.elapsed());
    }
    report("patch one object, 100 watches open", &mut writes);
    report("patch until all 100 watches saw it", &mut fanout);
    for w in watchers {
        w.abort();
    }
}
