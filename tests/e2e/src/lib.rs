//! The end-to-end harness. One [`Harness`] starts what a cluster would run:
//! the real control plane (etcd + kube-apiserver, `tests/control-plane/`),
//! the Helm chart installed into it with the Helm library (CRDs, RBAC,
//! admission policies, ServiceAccounts), a throwaway PostgreSQL, fake model
//! upstreams, the operator binary and two gateway replicas (real processes,
//! `--kubernetes`, each with a token of the chart's own ServiceAccount, so a
//! permission the chart forgot fails a test), then lets tests act only as
//! users do: `kubectl apply / patch / get` as the test users, and HTTP to
//! the gateways with real ServiceAccount tokens.
//!
//! The binaries are the ones `cargo test --workspace` builds next to this
//! test (`target/<profile>/palisade-gateway`, `palisade-operator`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_audit_suite::TestPostgres;
pub use palisade_control_plane::{ControlPlane, User};
use palisade_fake_upstreams::{FakeOpenAi, Script};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The namespace the chart installs into.
pub const SYSTEM_NS: &str = "palisade-system";
/// The operator's ServiceAccount user (the chart's, release `palisade`).
pub const OPERATOR_USER: &str = "system:serviceaccount:palisade-system:palisade-operator";
/// The gateways' ServiceAccount user.
pub const GATEWAY_USER: &str = "system:serviceaccount:palisade-system:palisade-gateway";
/// The intake agent's ServiceAccount user (the example's `intake-agent`).
pub const INTAKE_USER: &str = "system:serviceaccount:clinic:intake-agent";
/// The fake providers listen on plain HTTP on 127.0.0.1, the cloud one
/// with a key: what the chart's `providers.allowedBaseUrls` and
/// `providers.allowPlaintextCredentials` would say for them.
pub const FAKE_PROVIDER_EGRESS: [&str; 3] = [
    "--allowed-provider-urls",
    "http://127.0.0.1",
    "--allow-plaintext-credentials",
];

/// The auditor's token every harness gateway takes (`--audit-read-token-env`).
pub const AUDITOR_TOKEN: &str = "e2e-auditor-token";

/// How the harness runs the operator and installs the chart.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lease-based leader election (the chart's default with 2 replicas).
    pub leader_election: bool,
    /// `--approval-retention`.
    pub approval_retention: &'static str,
    /// `operator.watchNamespaces` (the chart's value, and the binaries'
    /// `--watch-namespaces`); empty: cluster-wide.
    pub watch_namespaces: Vec<&'static str>,
    /// `gateway.console.enabled` (and the gateways' `--console`).
    pub console: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            leader_election: false,
            approval_retention: "1h",
            watch_namespaces: Vec::new(),
            console: false,
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
    pub cp: ControlPlane,
    pub pg: TestPostgres,
    /// The local model (Ollama's native API).
    pub local: FakeOpenAi,
    /// The cloud model (OpenAI's API).
    pub cloud: FakeOpenAi,
    pub dir: PathBuf,
    pub audit_url: String,
    /// The intake agent's ServiceAccount token (`kubectl create token`).
    pub intake: String,
    /// The scheduler agent's ServiceAccount token.
    pub scheduler: String,
    operator: Option<Child>,
    options: Options,
    /// The operator's `/metrics` address.
    pub operator_metrics: String,
    pub gateways: Vec<Gateway>,
    pub http: reqwest::Client,
    /// HTTPS to the API server (trusting its CA), for requests timed from
    /// the moment the API server accepts them; with [`Harness::admin_token`].
    pub api: reqwest::Client,
    pub admin_token: String,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("api", &self.cp.url())
            .field("audit", &self.audit_url)
            .field("gateways", &self.gateways)
            .finish()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.gateways.clear();
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

/// The Helm suites' virtualenv: `target/tmp/helm-venv` (the tests'
/// `CARGO_TARGET_TMPDIR`), found from the running test binary.
pub fn helm_venv() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash> → target/tmp
    let target = exe.ancestors().nth(3).unwrap();
    target.join("tmp/helm-venv")
}

/// Installs `charts/palisade` as release `palisade` into `SYSTEM_NS` of the
/// control plane with the real Helm v4 library (`chart/install.py`), with
/// `values`; returns the release as JSON, or Helm's error.
pub fn helm_install(cp: &ControlPlane, values: &Value) -> Result<Value, String> {
    let venv = helm_venv();
    let python = palisade_fake_upstreams::python::python_with(&venv, HELM_PACKAGES);
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/chart/install.py"))
        .arg(cp.kubeconfig(User::Admin))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../charts/palisade"
        ))
        .arg(SYSTEM_NS)
        .arg(values.to_string())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// An Approval manifest (undecided unless `extra` says more).
pub fn approval_manifest(ns: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: Approval\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{agent: intake, tool: send_email, argumentsDigest: 'sha256:{}', requestId: r-1,\n\
         \x20 policy: clinic-assistant, policyGeneration: 1, requestedAt: '2026-01-01T00:00:00Z', expiresAt: '2099-01-01T00:00:00Z'{extra}}}\n",
        "a".repeat(64)
    )
}

/// Waits until the chart's approval guard (and, with `stamp`, the decider
/// stamp) is in force: an API server loads admission policies a moment
/// after they are created, as any cluster does.
pub fn wait_for_approval_admission(cp: &ControlPlane, stamp: bool) {
    let started = Instant::now();
    let until = |what: &str, ok: &mut dyn FnMut() -> bool| {
        while !ok() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the {what} was not in force within 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let probe_ns = "palisade-admission-probe";
    cp.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {probe_ns}}}\n"
    ));
    let decided = cp.dir().join("probe-decided.yaml");
    std::fs::write(
        &decided,
        approval_manifest(
            probe_ns,
            "probe",
            ", decision: Approved, decidedBy: someone",
        ),
    )
    .unwrap();
    until("approval guard", &mut || {
        let out = cp.kubectl(
            User::Admin,
            &[
                "create",
                "--dry-run=server",
                "-f",
                decided.to_str().unwrap(),
            ],
        );
        String::from_utf8_lossy(&out.stderr).contains("an Approval is created undecided")
    });
    if stamp {
        cp.apply(&approval_manifest(probe_ns, "probe", ""));
        until("decider stamp", &mut || {
            cp.kubectl(
                User::Admin,
                &[
                    "patch",
                    "approval",
                    "probe",
                    "-n",
                    probe_ns,
                    "--dry-run=server",
                    "--type=merge",
                    "-p",
                    r#"{"spec":{"decision":"Approved","reason":"probe","decidedBy":"someone"}}"#,
                ],
            )
            .status
            .success()
        });
        cp.kubectl_ok(
            User::Admin,
            &["delete", "approval", "probe", "-n", probe_ns],
        );
    }
}

impl Harness {
    /// Starts the control plane with the chart installed, the example
    /// policy (pointed at the fake upstreams) applied with kubectl by the
    /// namespace editor, the operator, and two gateways; returns once both
    /// gateways serve it.
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, Options::default()).await
    }

    /// [`Harness::start`] with the operator and chart as `options` say.
    pub async fn start_with(name: &str, options: Options) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = palisade_audit_suite::temp_dir(&format!("e2e-{name}"));
        let cp = tokio::task::spawn_blocking({
            let name = format!("e2e-{name}");
            move || ControlPlane::start(&name)
        })
        .await
        .unwrap();
        cp.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {SYSTEM_NS}}}\n"
        ));
        let mut values = json!({});
        if !options.watch_namespaces.is_empty() {
            values["operator"] = json!({"watchNamespaces": options.watch_namespaces});
        }
        if options.console {
            values["gateway"] = json!({
                "console": {"enabled": true},
                "auditorToken": {"secretName": "palisade-auditor"},
            });
        }
        let release = helm_install(&cp, &values).unwrap_or_else(|e| panic!("helm install: {e}"));
        assert_eq!(release["status"], "deployed", "{release}");
        wait_for_approval_admission(&cp, true);

        let intake = cp.token("clinic", "intake-agent");
        let scheduler = cp.token("clinic", "scheduler-agent");
        cp.apply(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: openai-credentials, namespace: clinic, \
             labels: {palisade.dev/credentials: \"true\"}}\nstringData: {apiKey: sk-e2e}\n",
        );
        let pg = TestPostgres::start();
        let audit_url = pg.database("palisade_e2e");
        let local = FakeOpenAi::start(Script::Text("local answer".into()))
            .await
            .unwrap();
        let cloud = FakeOpenAi::start(Script::Text("cloud answer".into()))
            .await
            .unwrap();
        let api = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(cp.ca_file()).unwrap()).unwrap(),
            )
            .build()
            .unwrap();
        let admin_token = cp.user_token(User::Admin);
        let mut h = Self {
            cp,
            pg,
            local,
            cloud,
            dir,
            audit_url,
            intake,
            scheduler,
            operator: None,
            options: options.clone(),
            operator_metrics: String::new(),
            gateways: Vec::new(),
            http: reqwest::Client::new(),
            api,
            admin_token,
        };
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/clinic-assistant.yaml"
        ))
        .unwrap()
        .replace("http://ollama.ollama.svc:11434", &h.local.base_url())
        .replace("https://api.openai.com", &h.cloud.base_url());
        let manifest = h.dir.join("clinic-assistant.yaml");
        std::fs::write(&manifest, example).unwrap();
        // A namespace editor writes the team's policy.
        h.cp.kubectl_ok(User::Editor, &["apply", "-f", manifest.to_str().unwrap()]);
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

    /// `--watch-namespaces` for both binaries, as the chart passes it.
    fn watch_args(&self) -> Vec<String> {
        if self.options.watch_namespaces.is_empty() {
            Vec::new()
        } else {
            vec![
                "--watch-namespaces".into(),
                self.options.watch_namespaces.join(","),
            ]
        }
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
            .args(FAKE_PROVIDER_EGRESS)
            .args(if options.leader_election {
                &[][..]
            } else {
                &["--no-leader-election"][..]
            })
            .args(self.watch_args())
            .env(
                "KUBECONFIG",
                self.cp
                    .service_account_kubeconfig(SYSTEM_NS, "palisade-operator"),
            )
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

    /// Starts a gateway replica named `name` (its pod name), with a token of
    /// the chart's gateway ServiceAccount bound to a Pod of that name, as
    /// the kubelet would give it.
    pub fn start_gateway(&self, name: &str) -> Gateway {
        let kubeconfig = self.cp.pod_kubeconfig(SYSTEM_NS, "palisade-gateway", name);
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
                // As the chart passes gateway.auditorToken.
                "--audit-read-token-env",
                "PALISADE_AUDITOR_TOKEN",
            ])
            .args(FAKE_PROVIDER_EGRESS)
            .args(self.watch_args())
            .args(if self.options.console {
                &["--console"][..]
            } else {
                &[][..]
            })
            .env("KUBECONFIG", kubeconfig)
            .env("PALISADE_AUDITOR_TOKEN", AUDITOR_TOKEN)
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

    /// Runs kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.cp.kubectl(User::Admin, args)
    }

    /// Runs kubectl as a test user.
    pub fn kubectl_as(&self, user: User, args: &[&str]) -> Output {
        self.cp.kubectl(user, args)
    }

    /// `kubectl patch approval NAME -n clinic --type=merge -p PATCH` as `user`.
    pub fn patch_approval(&self, user: User, name: &str, patch: &serde_json::Value) -> Output {
        let patch = patch.to_string();
        self.kubectl_as(user, &approval_patch_args(name, &patch, false))
    }

    /// Decides Approval `name` in `clinic` (`Approved` or `Denied`, for
    /// `reason`) as the approver; panics with kubectl's error if refused.
    pub fn decide(&self, name: &str, decision: &str, reason: &str) {
        let patch = serde_json::json!({"spec": {"decision": decision, "reason": reason}});
        let out = self.patch_approval(User::Approver, name, &patch);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl apply -f` of `yaml` (written to a file named `name`), as the admin.
    pub fn apply_yaml(&self, name: &str, yaml: &str) -> String {
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        self.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])
    }

    /// Runs kubectl as `user` with the built `kubectl-palisade` on the PATH.
    pub fn kubectl_plugin(&self, user: User, args: &[&str]) -> Output {
        let plugin = binary("kubectl-palisade");
        let plugins = plugin.parent().unwrap().display();
        // The plugin runs `kubectl` from the PATH with the caller's
        // KUBECONFIG (kubectl passes its flags' kubeconfig to no plugin).
        let bin = self
            .cp
            .kubectl_path()
            .parent()
            .unwrap()
            .display()
            .to_string();
        let path = format!(
            "{plugins}:{bin}:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(self.cp.kubectl_path())
            .args(args)
            .env("KUBECONFIG", self.cp.kubeconfig(user))
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

    /// Runs kubectl as the admin and returns its stdout; fails the test if it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.cp.kubectl_ok(User::Admin, args)
    }

    /// A request to the API server as the admin: `method path` with a JSON
    /// body of `content_type`; the answer's JSON, or the failure.
    pub async fn api_request(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .api
            .request(method, format!("{}{path}", self.cp.url()))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            req = req
                .header("content-type", content_type)
                .body(body.to_string());
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if !ok {
            return Err(text);
        }
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// A JSON merge patch straight to the API server (the request kubectl
    /// makes), for timing from the moment it is accepted.
    pub async fn merge_patch(&self, path: &str, patch: &Value) {
        if let Err(e) = self
            .api_request(
                reqwest::Method::PATCH,
                path,
                "application/merge-patch+json",
                Some(patch),
            )
            .await
        {
            panic!("PATCH {path}: {e}");
        }
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

/// The kubectl arguments of `kubectl patch approval NAME -n clinic
/// --type=merge -p PATCH`, on the status subresource when `status`.
pub fn approval_patch_args<'a>(name: &'a str, patch: &'a str, status: bool) -> Vec<&'a str> {
    let mut args = vec![
        "patch",
        "approval",
        name,
        "-n",
        "clinic",
        "--type=merge",
        "-p",
        patch,
    ];
    if status {
        args.push("--subresource=status");
    }
    args
}
