//! The test control plane as a library: [`ControlPlane::start`] runs
//! `start.sh` (etcd + kube-apiserver built from the Go module proxy, RBAC,
//! ServiceAccount tokens, admission policies, the test users) in a fresh
//! directory, and dropping it runs `stop.sh`. A watchdog started with it
//! stops it when the test process exits, however it exits, so nothing is
//! left running. See `tests/README.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const HERE: &str = env!("CARGO_MANIFEST_DIR");

/// The users `start.sh` creates (static bearer tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    /// `palisade-test-admin`, in `system:masters`.
    Admin,
    /// `approver`: the chart's `palisade-approver` role in the test namespaces.
    Approver,
    /// `editor`: edits palisade.dev resources in the test namespaces; no `approve`.
    Editor,
    /// `agent`: no rights of its own.
    Agent,
}

impl User {
    /// The user name the API server sees.
    pub fn name(self) -> &'static str {
        match self {
            User::Admin => "palisade-test-admin",
            User::Approver => "approver",
            User::Editor => "editor",
            User::Agent => "agent",
        }
    }

    fn file(self) -> &'static str {
        match self {
            User::Admin => "admin.kubeconfig",
            User::Approver => "approver.kubeconfig",
            User::Editor => "editor.kubeconfig",
            User::Agent => "agent.kubeconfig",
        }
    }
}

/// How to start it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra kube-apiserver flags (`PALISADE_APISERVER_ARGS`).
    pub apiserver_args: Vec<String>,
    /// Namespaces created with the test users' rights (default `clinic`).
    pub namespaces: Option<Vec<String>>,
    /// Serve no MutatingAdmissionPolicy API (as clusters before 1.36 do).
    pub without_mutating_admission_policy: bool,
}

/// A running control plane; stopped on drop.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    env: HashMap<String, String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl ControlPlane {
    /// Starts one with the defaults; panics with the logs if it cannot.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, Options::default())
    }

    /// Starts one as `options` say.
    pub fn start_with(name: &str, options: Options) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "palisade-cp-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(Path::new(HERE).join("start.sh"))
            .arg(&dir)
            .env(
                "PALISADE_CONTROL_PLANE_OWNER",
                std::process::id().to_string(),
            )
            .env("PALISADE_APISERVER_ARGS", options.apiserver_args.join(" "));
        if options.without_mutating_admission_policy {
            cmd.env("PALISADE_MUTATING_ADMISSION_POLICY", "off");
        }
        if let Some(ns) = &options.namespaces {
            cmd.env("PALISADE_TEST_NAMESPACES", ns.join(" "));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "tests/control-plane/start.sh {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self { dir, env }
    }

    /// Where its state, logs and kubeconfigs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.env["API_URL"]
    }

    /// The CA that signed the API server's certificate.
    pub fn ca_file(&self) -> &Path {
        Path::new(&self.env["CA_FILE"])
    }

    /// The kubectl built with the API server.
    pub fn kubectl_path(&self) -> &Path {
        Path::new(&self.env["KUBECTL"])
    }

    /// The kubeconfig of a test user.
    pub fn kubeconfig(&self, user: User) -> PathBuf {
        self.dir.join(user.file())
    }

    /// The bearer token of a test user.
    pub fn user_token(&self, user: User) -> String {
        std::fs::read_to_string(self.kubeconfig(user))
            .unwrap()
            .lines()
            .find_map(|l| l.trim().strip_prefix("token: "))
            .unwrap()
            .to_owned()
    }

    /// A kube client with the admin's identity.
    pub async fn client(&self) -> kube::Client {
        self.client_from(&self.kubeconfig(User::Admin)).await
    }

    /// A kube client with the identity a kubeconfig holds.
    pub async fn client_from(&self, kubeconfig: &Path) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// Runs kubectl with a kubeconfig.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(self.kubectl_path())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs kubectl as a test user.
    pub fn kubectl(&self, user: User, args: &[&str]) -> Output {
        self.kubectl_as(&self.kubeconfig(user), args)
    }

    /// Runs kubectl as a test user and returns its stdout; panics with its
    /// stderr if it fails.
    pub fn kubectl_ok(&self, user: User, args: &[&str]) -> String {
        ok(self.kubectl(user, args), args)
    }

    /// `kubectl apply -f -` of `yaml`, as the admin.
    pub fn apply(&self, yaml: &str) -> String {
        let path = self.dir.join(format!(
            "apply-{}.yaml",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, yaml).unwrap();
        self.kubectl_ok(User::Admin, &["apply", "-f", path.to_str().unwrap()])
    }

    /// Creates namespace `ns` with the test users' rights in it.
    pub fn namespace(&self, ns: &str) {
        let out = Command::new("bash")
            .arg(Path::new(HERE).join("namespace.sh"))
            .arg(&self.dir)
            .arg(ns)
            .output()
            .unwrap();
        ok(out, &["namespace.sh", ns]);
    }

    /// A token of ServiceAccount `ns/sa` from the API server's token issuer
    /// (`kubectl create token`), creating the ServiceAccount if missing.
    pub fn token(&self, ns: &str, sa: &str) -> String {
        self.ensure_service_account(ns, sa);
        self.kubectl_ok(
            User::Admin,
            &["create", "token", sa, "-n", ns, "--duration", "2h"],
        )
        .trim()
        .to_owned()
    }

    fn ensure_service_account(&self, ns: &str, sa: &str) {
        let exists = self
            .kubectl(User::Admin, &["get", "serviceaccount", sa, "-n", ns])
            .status
            .success();
        if !exists {
            self.kubectl_ok(User::Admin, &["create", "serviceaccount", sa, "-n", ns]);
        }
    }

    /// A kubeconfig holding a fresh token of ServiceAccount `ns/sa` (what a
    /// process running as it would use).
    pub fn service_account_kubeconfig(&self, ns: &str, sa: &str) -> PathBuf {
        let token = self.token(ns, sa);
        self.token_kubeconfig(&format!("sa-{ns}-{sa}"), &token, ns)
    }

    /// A kubeconfig holding a token of ServiceAccount `ns/sa` bound to Pod
    /// `pod` (created if missing; nothing runs it), as the kubelet gives a
    /// pod: the API server then knows the pod's name from the token
    /// (`authentication.kubernetes.io/pod-name`).
    pub fn pod_kubeconfig(&self, ns: &str, sa: &str, pod: &str) -> PathBuf {
        self.ensure_service_account(ns, sa);
        let exists = self
            .kubectl(User::Admin, &["get", "pod", pod, "-n", ns])
            .status
            .success();
        if !exists {
            let path = self.dir.join(format!("pod-{ns}-{pod}.yaml"));
            std::fs::write(
                &path,
                format!(
                    "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {ns}}}\n\
                     spec:\n  serviceAccountName: {sa}\n  containers: [{{name: main, image: palisade/never-runs}}]\n"
                ),
            )
            .unwrap();
            let args = ["apply", "-f", path.to_str().unwrap()];
            // The ServiceAccount admission plugin reads ServiceAccounts from
            // a cache: a Pod of one created a moment ago is refused until the
            // cache has it (as on any cluster).
            let started = std::time::Instant::now();
            loop {
                let out = self.kubectl(User::Admin, &args);
                let stderr = String::from_utf8_lossy(&out.stderr);
                if out.status.success()
                    || !stderr.contains("service account")
                    || started.elapsed() > std::time::Duration::from_secs(10)
                {
                    ok(out, &args);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let token = self
            .kubectl_ok(
                User::Admin,
                &[
                    "create",
                    "token",
                    sa,
                    "-n",
                    ns,
                    "--duration",
                    "2h",
                    "--bound-object-kind",
                    "Pod",
                    "--bound-object-name",
                    pod,
                ],
            )
            .trim()
            .to_owned();
        self.token_kubeconfig(&format!("pod-{ns}-{pod}"), &token, ns)
    }

    /// Writes `DIR/<name>.kubeconfig` for a bearer token.
    pub fn token_kubeconfig(&self, name: &str, token: &str, ns: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: palisade-test\n  cluster:\n    \
                 server: {}\n    certificate-authority: {}\nusers:\n- name: {name}\n  user:\n    \
                 token: {token}\ncontexts:\n- name: {name}\n  context: {{cluster: palisade-test, user: {name}, namespace: {ns}}}\n\
                 current-context: {name}\n",
                self.url(),
                self.ca_file().display()
            ),
        )
        .unwrap();
        path
    }

    /// The API server's audit log so far: one JSON object per request
    /// (`user.username`, `verb`, `objectRef`, `responseStatus.code`, ...).
    pub fn audit_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(HERE).join("stop.sh"))
            .arg(&self.dir)
            .status();
        if std::thread::panicking() {
            eprintln!(
                "the control plane's state and logs are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
