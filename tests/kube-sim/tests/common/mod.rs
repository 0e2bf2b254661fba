//! What both conformance suites share: a cluster to talk to (a fresh
//! kube-sim, or a real cluster when `PALISADE_TEST_KUBECONFIG` is set), a
//! namespace per test, kubectl, and a test CRD that exercises every
//! validation feature.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use palisade_kube_sim::KubeSim;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Cluster {
    pub sim: Option<KubeSim>,
    pub kubeconfig: PathBuf,
    dir: PathBuf,
}

fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{}", std::process::id(), nanos % 100_000)
}

impl Cluster {
    /// A fresh kube-sim, or the real cluster `PALISADE_TEST_KUBECONFIG`
    /// names (the same suite then checks the simulator against the real
    /// thing).
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(unique("kube-sim-test"));
        std::fs::create_dir_all(&dir).unwrap();
        match std::env::var("PALISADE_TEST_KUBECONFIG") {
            Ok(path) if !path.is_empty() => Cluster {
                sim: None,
                kubeconfig: PathBuf::from(path),
                dir,
            },
            _ => {
                let sim = KubeSim::start().await.unwrap();
                sim.set_bookmark_interval(std::time::Duration::from_millis(200));
                let kubeconfig = dir.join("kubeconfig");
                sim.write_kubeconfig(&kubeconfig).unwrap();
                Cluster {
                    sim: Some(sim),
                    kubeconfig,
                    dir,
                }
            }
        }
    }

    /// Tests of fixtures only the simulator has say so and stop when run
    /// against a real cluster. In CI the simulator is always used.
    pub fn sim_only(&self, what: &str) -> Option<&KubeSim> {
        if self.sim.is_none() {
            eprintln!("not applicable against a real cluster: {what}");
        }
        self.sim.as_ref()
    }

    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl is on the PATH")
    }

    /// kubectl with YAML/JSON on stdin (`-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl is on the PATH");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and returns stdout, failing the test with stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// A fresh namespace for one test.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = unique(prefix);
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(self.client().await);
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        api.create(&Default::default(), &ns).await.unwrap();
        name
    }

    /// Installs the test CRD `widgets.conformance.palisade.dev` and waits
    /// until it is Established.
    pub async fn install_widget_crd(&self) {
        use kube::runtime::wait::{await_condition, conditions};
        let api: kube::Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            kube::Api::all(self.client().await);
        let crd = serde_json::from_value(widget_crd()).unwrap();
        match api.create(&Default::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("{e}"),
        }
        let established = await_condition(
            api,
            "widgets.conformance.palisade.dev",
            conditions::is_crd_established(),
        );
        tokio::time::timeout(std::time::Duration::from_secs(10), established)
            .await
            .unwrap()
            .unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CRD with every validation feature the simulator implements.
pub fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.conformance.palisade.dev"},
        "spec": {
            "group": "conformance.palisade.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}
                ],
                "selectableFields": [{"jsonPath": ".spec.color"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "description": "What the widget should be.",
                            "required": ["size"],
                            "properties": {
                                "size": {"type": "integer", "minimum": 1, "maximum": 10, "description": "How big."},
                                "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
                                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                                "tags": {"type": "array", "maxItems": 3, "items": {"type": "string"}},
                                "parts": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["name"],
                                    "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}
                                },
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                                "locked": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "locked is immutable"}]}
                            },
                            "x-kubernetes-validations": [
                                {"rule": "!has(self.name) || self.size >= size(self.name)", "message": "size must be at least the length of name", "fieldPath": ".size"}
                            ]
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "phase": {"type": "string"},
                                "observedGeneration": {"type": "integer"},
                                "conditions": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["type"],
                                    "items": {"type": "object", "required": ["type", "status"], "properties": {"type": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": "string"}}}
                                }
                            }
                        }
                    }
                }}
            }]
        }
    })
}

/// A Widget object.
pub fn widget(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "conformance.palisade.dev/v1", "kind": "Widget", "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A small kube-runtime controller for Widgets in one namespace: it owns a
/// `{name}-config` ConfigMap per Widget and sets `status.phase: Ready`
/// and `status.observedGeneration`, both with server-side apply. Runs until
/// the task is aborted.
pub async fn widget_controller(client: kube::Client, ns: String) {
    use futures_util::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
    use kube::runtime::controller::{Action, Controller};
    use kube::runtime::watcher;
    use std::sync::Arc;

    struct Ctx {
        client: kube::Client,
        ar: ApiResource,
    }
    async fn reconcile(w: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
        let ns = w.metadata.namespace.clone().unwrap();
        let name = w.metadata.name.clone().unwrap();
        let owner = json!({"apiVersion": "conformance.palisade.dev/v1", "kind": "Widget", "name": name, "uid": w.metadata.uid, "controller": true});
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("{name}-config"), "ownerReferences": [owner]},
                        "data": {"size": w.data["spec"]["size"].to_string()}});
        let ssa = PatchParams::apply("widget-controller").force();
        Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
            .patch(&format!("{name}-config"), &ssa, &Patch::Apply(cm))
            .await?;
        let status = json!({"apiVersion": "conformance.palisade.dev/v1", "kind": "Widget",
                            "status": {"phase": "Ready", "observedGeneration": w.metadata.generation}});
        Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &ns, &ctx.ar)
            .patch_status(&name, &ssa, &Patch::Apply(status))
            .await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<DynamicObject>, _: &kube::Error, _: Arc<Ctx>) -> Action {
        Action::requeue(std::time::Duration::from_millis(200))
    }
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("conformance.palisade.dev", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    Controller::new_with(widgets, watcher::Config::default(), ar.clone())
        .owns(configs, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Ctx { client, ar }))
        .for_each(|_| async {})
        .await;
}
