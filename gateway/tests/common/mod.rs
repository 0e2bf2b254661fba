//! Set-up shared by the gateway's integration tests: an audit store and
//! writer in a test directory, a standalone gateway state on top of it, and
//! the real binary started on a free port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::{AuditMetrics, AuditWriter, Migrations, Store, WriterConfig};
use palisade_gateway::approvals::Approvals;
use palisade_gateway::metrics::GatewayMetrics;
use palisade_gateway::snapshot::Current;
use palisade_gateway::state::AppState;
use palisade_policy::Egress;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

/// An SQLite audit store (`DIR/audit.db`, migrated) and a writer spooling to
/// `DIR/spool`.
pub async fn audit_in(dir: &Path) -> (Store, AuditWriter) {
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let store = Store::open(&url, Migrations::Apply).await.unwrap();
    let (audit, _task) = AuditWriter::start(
        store.clone(),
        WriterConfig::new(dir.join("spool")),
        AuditMetrics::unregistered().unwrap(),
    )
    .unwrap();
    (store, audit)
}

/// A standalone gateway's state auditing into `dir`, with one operator
/// (`oncall`) holding `operator_token`. The fake providers listen on plain
/// HTTP on 127.0.0.1: any provider URL is allowed, credentials included.
pub async fn standalone(
    dir: &Path,
    current: Current,
    metrics: Arc<GatewayMetrics>,
    operator_token: &str,
) -> (AppState, Store) {
    standalone_with(dir, current, metrics, operator_token, Egress::any_url(true)).await
}

/// [`standalone`], reaching only the provider URLs `egress` allows.
pub async fn standalone_with(
    dir: &Path,
    current: Current,
    metrics: Arc<GatewayMetrics>,
    operator_token: &str,
    egress: Egress,
) -> (AppState, Store) {
    let (store, audit) = audit_in(dir).await;
    let state = AppState::builder(
        current,
        audit,
        metrics,
        Approvals::local(store.clone(), "gateway-test"),
    )
    .operators(vec![("oncall".into(), operator_token.into())])
    .egress(egress)
    .build();
    (state, store)
}

/// A standalone gateway's state serving the YAML `config` (written to a
/// fresh test directory named after `name`), reaching the provider URLs
/// `egress` allows.
pub async fn standalone_config(name: &str, config: &str, egress: Egress) -> AppState {
    let d = std::env::temp_dir().join(format!("palisade-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join("p.yaml");
    std::fs::write(&path, config).unwrap();
    let metrics = Arc::new(GatewayMetrics::new().unwrap());
    let current = palisade_gateway::snapshot::empty();
    palisade_gateway::config::reload::load_into(&[path], &current, &metrics).unwrap();
    standalone_with(&d, current, metrics, "operator-token", egress)
        .await
        .0
}

/// Starts `palisade-gateway ARGS` and returns it with the address it
/// printed it listens on (`127.0.0.1:PORT`, from `http://` or `https://`).
pub fn spawn_gateway(args: &[&str]) -> (Child, String) {
    spawn_gateway_with_env(args, &[])
}

/// [`spawn_gateway`] with these environment variables set.
pub fn spawn_gateway_with_env(args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("://")
        .nth(1)
        .unwrap_or_else(|| panic!("no listen address in {line:?}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (child, addr)
}

/// Starts `palisade-gateway ARGS`, runs the SDK script `script` with
/// `python` against it (`PALISADE_URL`, `PALISADE_KEY=key`), stops the
/// gateway, and fails with the script's output unless it printed "all
/// checks passed".
pub async fn sdk_checks(
    python: std::path::PathBuf,
    script: &'static str,
    args: &[&str],
    key: &'static str,
) {
    let (mut gateway, addr) = spawn_gateway(args);
    let url = format!("http://{addr}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("PALISADE_URL", url)
            .env("PALISADE_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let _ = gateway.kill();
    let _ = gateway.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
