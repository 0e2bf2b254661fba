//! Set-up shared by the gateway's integration tests: an audit store and
//! writer in a test directory, a standalone gateway state on top of it, and
//! the real binary started on a free port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use palisade_audit::{AuditMetrics, AuditWriter, Migrations, Store, WriterConfig};
use palisade_gateway::approvals::Approvals;
use palisade_gateway::metrics::GatewayMetrics;
use palisade_gateway::snapshot::Current;
use palisade_gateway::state::AppState;
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
/// (`oncall`) holding `operator_token`.
pub async fn standalone(
    dir: &Path,
    current: Current,
    metrics: Arc<GatewayMetrics>,
    operator_token: &str,
) -> (AppState, Store) {
    let (store, audit) = audit_in(dir).await;
    let state = AppState::builder(
        current,
        audit,
        metrics,
        Approvals::local(store.clone(), "gateway-test"),
    )
    .operators(vec![("oncall".into(), operator_token.into())])
    .build();
    (state, store)
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
