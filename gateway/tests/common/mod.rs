//! Set-up shared by the gateway's integration tests: an audit store and
//! writer in a test directory, a standalone gateway state on top of it, and
//! the real binary started on a free port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod console;
pub mod tools;

use palisade_audit::{AuditMetrics, AuditWriter, Migrations, Store, WriterConfig};
use palisade_gateway::approvals::Approvals;
use palisade_gateway::metrics::GatewayMetrics;
use palisade_gateway::snapshot::Current;
use palisade_gateway::state::{AppState, AppStateBuilder};
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
    standalone_built(dir, current, metrics, operator_token, |b| b.egress(egress)).await
}

/// [`standalone`], with the rest of the state as `build` sets it.
pub async fn standalone_built(
    dir: &Path,
    current: Current,
    metrics: Arc<GatewayMetrics>,
    operator_token: &str,
    build: impl FnOnce(AppStateBuilder) -> AppStateBuilder,
) -> (AppState, Store) {
    let (store, audit) = audit_in(dir).await;
    let builder = AppState::builder(
        current,
        audit,
        metrics,
        Approvals::local(store.clone(), "gateway-test"),
    )
    .operators(vec![("oncall".into(), operator_token.into())]);
    (build(builder).build(), store)
}

/// A standalone gateway's state serving the YAML `config` (written to a
/// fresh test directory named after `name`), reaching the provider URLs
/// `egress` allows.
pub async fn standalone_config(name: &str, config: &str, egress: Egress) -> AppState {
    standalone_config_built(name, config, |b| b.egress(egress)).await
}

/// [`standalone_config`], with the rest of the state as `build` sets it.
pub async fn standalone_config_built(
    name: &str,
    config: &str,
    build: impl FnOnce(AppStateBuilder) -> AppStateBuilder,
) -> AppState {
    let d = std::env::temp_dir().join(format!("palisade-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join("p.yaml");
    std::fs::write(&path, config).unwrap();
    let metrics = Arc::new(GatewayMetrics::new().unwrap());
    let current = palisade_gateway::snapshot::empty();
    palisade_gateway::config::reload::load_into(&[path], &current, &metrics).unwrap();
    standalone_built(&d, current, metrics, "operator-token", build)
        .await
        .0
}

/// `palisade-gateway run --config PATH --listen 127.0.0.1:0 EXTRA...` with
/// `env` set: the process (killed when dropped) and its base URL.
pub fn run_config(path: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Stopped, String) {
    let base = [
        "run",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    let (child, addr) = spawn_gateway_with_env(&[&base[..], extra].concat(), env);
    (Stopped(child), format!("http://{addr}"))
}

/// Starts `palisade-gateway ARGS` and returns it with the address it
/// printed it listens on (`127.0.0.1:PORT`, from `http://` or `https://`).
pub fn spawn_gateway(args: &[&str]) -> (Child, String) {
    spawn_gateway_with_env(args, &[])
}

/// [`spawn_gateway`] with these environment variables set.
pub fn spawn_gateway_with_env(args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    spawn_gateway_logging(args, env, Stdio::null())
}

/// [`spawn_gateway_with_env`] with its log (stderr) going to `log`.
pub fn spawn_gateway_logging(
    args: &[&str],
    env: &[(&str, &str)],
    log: impl Into<Stdio>,
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade-gateway"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
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

/// A Python with the official `openai` package (PyPI), set up once per
/// target directory.
pub async fn openai_python() -> std::path::PathBuf {
    tokio::task::spawn_blocking(|| {
        palisade_fake_upstreams::python::python_with_openai(
            &std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openai-venv"),
        )
    })
    .await
    .unwrap()
}

/// Starts `palisade-gateway run --config CONFIG --listen 127.0.0.1:0
/// EXTRA...`, runs the SDK script `script` with `python` against it
/// (`PALISADE_URL`, `PALISADE_KEY=key`), stops the gateway, and fails with
/// the script's output unless it printed "all checks passed". Returns
/// what the gateway logged (at `debug`).
pub async fn sdk_checks(
    python: std::path::PathBuf,
    script: &'static str,
    (config, extra): (&Path, &[&str]),
    key: &'static str,
) -> String {
    let config_path = config;
    let config = config.to_str().unwrap();
    let mut args = vec!["run", "--config", config, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let log_path = config_path.with_extension("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let (mut gateway, addr) = spawn_gateway_logging(&args, &[("RUST_LOG", "debug")], log);
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
    std::fs::read_to_string(log_path).unwrap()
}

/// Sends `body` as JSON to `path` with `key` as the bearer token, through
/// the gateway's router: the status, the response headers and the body
/// as JSON (`null` if it is not).
pub async fn post_json(
    state: &AppState,
    path: &str,
    key: &str,
    body: &serde_json::Value,
) -> (u16, axum::http::HeaderMap, serde_json::Value) {
    use tower::ServiceExt;
    let req = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = palisade_gateway::router::app(state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// A gateway process, killed when dropped (however the test ends).
pub struct Stopped(pub Child);

impl Stopped {
    /// Stops the gateway as an operator would (SIGTERM: it finishes its
    /// requests and writes everything it answered to the audit database),
    /// killing it after 30 s.
    pub fn stop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.kill();
    }
}
