//! The end-to-end harness. One [`Harness`] starts what a cluster would run:
//! the in-memory API server (kube-sim), a throwaway PostgreSQL, fake model
//! upstreams, the operator binary and two gateway replicas (real processes,
//! `--kubernetes`, talking to the API server only through its HTTP API),
//! then lets tests act only as users do: `kubectl apply / patch / get`, and
//! HTTP to the gateways.
//!
//! The binaries are the ones `cargo test --workspace` builds next to this
//! test (`target/<profile>/palisade-gateway`, `palisade-operator`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use palisade_audit_suite::TestPostgres;
use palisade_fake_upstreams::{FakeOpenAi, Script};
use palisade_kube_sim::{KubeSim, UserInfo};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The namespace the chart installs into.
pub const SYSTEM_NS: &str = "palisade-system";
/// The intake agent's ServiceAccount token (the example's `intake-agent`).
pub const INTAKE_TOKEN: &str = "token-intake-agent";
/// The scheduler agent's ServiceAccount token.
pub const SCHEDULER_TOKEN: &str = "token-scheduler-agent";

/// The operator's ServiceAccount user (what the chart runs it as).
pub const OPERATOR_USER: &str = "system:serviceaccount:palisade-system:palisade-operator";
/// The gateways' ServiceAccount user.
pub const GATEWAY_USER: &str = "system:serviceaccount:palisade-system:palisade-gateway";

/// How the harness runs the operator.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lease-based leader election (the chart's default with 2 replicas).
    pub leader_election: bool,
    /// `--approval-retention`.
    pub approval_retention: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            leader_election: false,
            approval_retention: "1h",
        }
    }
}

/// A built binary of the workspace, next to the running test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace` (or `cargo build --bins` first)",
        path.display()
    );
    path
}

/// A gateway replica process.
#[derive(Debug)]
pub struct Gateway {
    pub name: String,
    pub addr: String,
    child: Child,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "gateway {} exited with {status}",
            self.name
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything a test drives.
pub struct Harness {
    pub sim: KubeSim,
    pub pg: TestPostgres,
    /// The local model (Ollama's native API).
    pub local: FakeOpenAi,
    /// The cloud model (OpenAI's API).
    pub cloud: FakeOpenAi,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub audit_url: String,
    operator: Option<Child>,
    /// The operator's `/metrics` address.
    pub operator_metrics: String,
    pub gateways: Vec<Gateway>,
    pub http: reqwest::Client,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("api", &self.sim.url())
            .field("audit", &self.audit_url)
            .field("gateways", &self.gateways)
            .finish()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut op) = self.operator.take() {
            let _ = op.kill();
            let _ = op.wait();
        }
    }
}

fn read_listen_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no listen address in {line:?}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

impl Harness {
    /// Starts the API server with the CRDs, the namespaces, the example
    /// policy (pointed at the fake upstreams) applied with kubectl, the
    /// operator, and two gateways; returns once both gateways serve it.
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, Options::default()).await
    }

    /// [`Harness::start`] with the operator run as `options` say.
    pub async fn start_with(name: &str, options: Options) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = palisade_audit_suite::temp_dir(&format!("e2e-{name}"));
        let sim = KubeSim::start().await.unwrap();
        let kubeconfig = dir.join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        for (token, sa) in [
            (INTAKE_TOKEN, "intake-agent"),
            (SCHEDULER_TOKEN, "scheduler-agent"),
        ] {
            sim.add_token(
                token,
                UserInfo {
                    username: format!("system:serviceaccount:clinic:{sa}"),
                    uid: format!("uid-{sa}"),
                    groups: vec![
                        "system:serviceaccounts".into(),
                        "system:serviceaccounts:clinic".into(),
                    ],
                },
            );
        }
        // The operator and the gateways run with ServiceAccount identities of
        // their own, so the access log says who asked for what.
        for (token, user, file) in [
            (
                "token-palisade-operator",
                OPERATOR_USER,
                "kubeconfig-operator",
            ),
            ("token-palisade-gateway", GATEWAY_USER, "kubeconfig-gateway"),
        ] {
            sim.add_token(
                token,
                UserInfo {
                    username: user.into(),
                    uid: format!("uid-{token}"),
                    groups: vec!["system:serviceaccounts".into()],
                },
            );
            std::fs::write(dir.join(file), sim.kubeconfig_with_token(token)).unwrap();
        }
        let pg = TestPostgres::start();
        let audit_url = pg.database("palisade_e2e");
        let local = FakeOpenAi::start(Script::Text("local answer".into()))
            .await
            .unwrap();
        let cloud = FakeOpenAi::start(Script::Text("cloud answer".into()))
            .await
            .unwrap();
        let mut h = Self {
            sim,
            pg,
            local,
            cloud,
            dir,
            kubeconfig,
            audit_url,
            operator: None,
            operator_metrics: String::new(),
            gateways: Vec::new(),
            http: reqwest::Client::new(),
        };
        h.kubectl_ok(&[
            "apply",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/"),
        ]);
        // kube-sim speaks JSON only, so built-in objects go through
        // `apply -f` (kubectl's `create namespace` sends protobuf).
        h.apply_yaml(
            "setup",
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: clinic}}\n---\n\
                 apiVersion: v1\nkind: Namespace\nmetadata: {{name: {SYSTEM_NS}}}\n---\n\
                 apiVersion: v1\nkind: Secret\nmetadata: {{name: openai-credentials, namespace: clinic}}\n\
                 stringData: {{apiKey: sk-e2e}}\n"
            ),
        );
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/clinic-assistant.yaml"
        ))
        .unwrap()
        .replace("http://ollama.ollama:11434", &h.local.base_url())
        .replace("https://api.openai.com", &h.cloud.base_url());
        let manifest = h.dir.join("clinic-assistant.yaml");
        std::fs::write(&manifest, example).unwrap();
        h.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]);
        h.start_operator(&options);
        for name in ["gateway-a", "gateway-b"] {
            let g = h.start_gateway(name);
            h.gateways.push(g);
        }
        for i in 0..h.gateways.len() {
            h.wait_ready(i).await;
        }
        h
    }

    fn start_operator(&mut self, options: &Options) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        self.operator_metrics = format!("127.0.0.1:{port}");
        let mut child = Command::new(binary("palisade-operator"))
            .args([
                "--namespace",
                SYSTEM_NS,
                "--metrics-listen",
                &self.operator_metrics,
                "--audit-url",
                &self.audit_url,
                "--audit-spool-dir",
                self.dir.join("operator-spool").to_str().unwrap(),
                "--approval-retention",
                options.approval_retention,
            ])
            .args(if options.leader_election {
                &[][..]
            } else {
                &["--no-leader-election"][..]
            })
            .env("KUBECONFIG", self.dir.join("kubeconfig-operator"))
            .env("POD_NAME", "palisade-operator-0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the operator exited at start"
        );
        self.operator = Some(child);
    }

    /// Starts a gateway replica named `name` (its pod name).
    pub fn start_gateway(&self, name: &str) -> Gateway {
        let mut child = Command::new(binary("palisade-gateway"))
            .args([
                "run",
                "--kubernetes",
                "--namespace",
                SYSTEM_NS,
                "--listen",
                "127.0.0.1:0",
                "--audit-url",
                &self.audit_url,
            ])
            .env("KUBECONFIG", self.dir.join("kubeconfig-gateway"))
            .env("POD_NAME", name)
            .env("RUST_LOG", "warn")
            .current_dir(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let addr = read_listen_line(&mut child);
        Gateway {
            name: name.into(),
            addr,
            child,
        }
    }

    /// Waits until gateway `i` serves a configuration.
    pub async fn wait_ready(&self, i: usize) {
        let url = self.gateways[i].url("/readyz");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway {} never became ready", self.gateways[i].name);
    }

    /// Runs kubectl against the API server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl is on the PATH (.ci/run installs it)")
    }

    /// `kubectl apply -f` of `yaml` (written to a file named `name`).
    pub fn apply_yaml(&self, name: &str, yaml: &str) -> String {
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        self.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])
    }

    /// Runs kubectl with `plugins/` (kubectl-palisade) on the PATH.
    pub fn kubectl_plugin(&self, args: &[&str]) -> Output {
        let plugins = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins");
        let path = format!("{plugins}:{}", std::env::var("PATH").unwrap_or_default());
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", path)
            .output()
            .unwrap()
    }

    /// `kubectl patch aipolicy clinic-assistant -n clinic --type=TYPE -p PATCH`
    /// (the example policy), as an operator would type it.
    pub fn patch_policy(&self, patch_type: &str, patch: &str) -> String {
        self.kubectl_ok(&[
            "patch",
            "aipolicy",
            "clinic-assistant",
            "-n",
            "clinic",
            &format!("--type={patch_type}"),
            "-p",
            patch,
        ])
    }

    /// `kubectl get aipolicy clinic-assistant -n clinic -o jsonpath=EXPR`.
    pub fn policy_field(&self, jsonpath: &str) -> String {
        self.kubectl_ok(&[
            "get",
            "aipolicy",
            "clinic-assistant",
            "-n",
            "clinic",
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
    }

    /// Runs kubectl and returns its stdout; fails the test if it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A JSON merge patch straight to the API server (the request kubectl
    /// makes), for timing from the moment it is accepted.
    pub async fn merge_patch(&self, path: &str, patch: &Value) {
        let r = self
            .http
            .patch(format!("{}{path}", self.sim.url()))
            .bearer_auth(palisade_kube_sim::ADMIN_TOKEN)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "PATCH {path}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// `POST /v1/tool-calls` on gateway `i` as the agent with `token`.
    pub async fn tool_call(&self, i: usize, token: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.gateways[i].url("/v1/tool-calls"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        status_and_json(r).await
    }

    /// `GET` on gateway `i` as `token`.
    pub async fn get(&self, i: usize, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.gateways[i].url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        status_and_json(r).await
    }

    /// Polls `f` every 20 ms for up to `limit`.
    pub async fn until<T>(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?} waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The audit rows in Postgres.
    pub async fn audit_rows(
        &self,
        filter: palisade_audit::Filter,
    ) -> Vec<palisade_audit::ChainedEvent> {
        let store =
            palisade_audit::Store::open(&self.audit_url, palisade_audit::Migrations::VerifyOnly)
                .await
                .unwrap();
        store.query(&filter).await.unwrap()
    }
}

/// An answer's status and JSON body (`null` when it is not JSON).
async fn status_and_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The error code or reason code of a gateway answer.
pub fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .or(body["reasonCode"].as_str())
        .unwrap_or("")
}

/// What the Helm suites import: the Helm v4 library and the Kubernetes
/// API schemas.
pub const HELM_PACKAGES: &[(&str, &str)] = &[
    ("helm-python-sdk>=0.2", "helm_python"),
    ("kubernetes-validate>=1.34", "kubernetes_validate"),
];

/// `charts/palisade` rendered and linted with the real Helm v4 library
/// (`tests/e2e/chart/render.py`, helm-python-sdk in the virtualenv `venv`):
/// `{"lint": .., "cases": {case: {template: manifest}}, "refused": ..}`.
pub fn render_chart(venv: &Path) -> Value {
    // The Kubernetes API schemas come with kubernetes-validate, offline
    // (for validating what renders).
    let python = palisade_fake_upstreams::python::python_with(venv, HELM_PACKAGES);
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/chart/render.py"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../charts/palisade"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every YAML document one rendered case holds (NOTES.txt left out).
pub fn rendered_documents(case: &Value) -> Vec<Value> {
    case.as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| !path.ends_with("NOTES.txt"))
        .flat_map(|(_, manifest)| {
            serde_yaml::Deserializer::from_str(manifest.as_str().unwrap())
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .filter(|v: &Value| !v.is_null())
                .collect::<Vec<_>>()
        })
        .collect()
}
