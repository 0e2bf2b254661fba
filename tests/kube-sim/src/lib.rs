//! `palisade-kube-sim`: an in-memory Kubernetes API server for tests.
//!
//! It speaks the real HTTP/JSON API well enough for kube-rs (clients,
//! watchers, controllers) and the real `kubectl`: discovery, CRDs that are
//! served at once, CRUD with resourceVersions, watches with resume / 410 /
//! bookmarks, the status subresource, server-side apply with field
//! managers, merge and JSON patch, finalizers, selectors, schema and CEL
//! validation of custom resources, and TokenReview / SubjectAccessReview
//! from fixtures. See the crate's README for what it deliberately does not
//! do. Start one with [`KubeSim::start`]; the `kube-sim` binary serves one
//! for people who want to poke at it with kubectl.

mod auth;
mod errors;
mod objects;
mod openapi;
mod patch;
mod registry;
mod selectors;
mod server;
mod state;
mod store;
mod table;
mod validation;
mod watch;

pub use server::router;
pub use state::{ADMIN_TOKEN, Access, AccessRule, UserInfo};

use serde_json::json;
use state::State;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running in-memory API server; stops when dropped.
#[derive(Debug)]
pub struct KubeSim {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl KubeSim {
    /// Starts on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::bind("127.0.0.1:0").await
    }

    /// Starts on `addr` (`host:port`; port 0 picks a free one).
    pub async fn bind(addr: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new());
        seed(&state);
        let app = router(Arc::clone(&state));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            state,
            shutdown: Some(tx),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server (user `kube-sim:admin`).
    pub fn kubeconfig(&self) -> String {
        kubeconfig_for(&self.url())
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// TokenReview fixture: `token` authenticates as `user`.
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.state.fixtures().tokens.insert(token.to_string(), user);
    }

    /// SubjectAccessReview fixture: allow what `rule` describes.
    pub fn allow(&self, rule: AccessRule) {
        self.state.fixtures().rules.push(rule);
    }

    /// Every resource request so far, with its user, verb, resource,
    /// namespace and name (what an RBAC rule would be matched against).
    pub fn access_log(&self) -> Vec<Access> {
        self.state.fixtures().access_log.clone()
    }

    /// A kubeconfig for this server that authenticates with `token` (one
    /// added with [`KubeSim::add_token`]).
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        self.kubeconfig().replace(ADMIN_TOKEN, token)
    }

    /// Forgets all watch history (like etcd compaction): watches resuming
    /// from an older resourceVersion get 410 Gone.
    pub fn compact(&self) {
        self.state.lock().store.compact();
    }

    /// How often idle watches that asked for bookmarks get one (default 1 s).
    pub fn set_bookmark_interval(&self, interval: Duration) {
        *self
            .state
            .bookmark_interval
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = interval;
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The namespaces every cluster starts with.
fn seed(state: &State) {
    let mut inner = state.lock();
    for ns in ["default", "kube-system", "kube-public"] {
        let rv = inner.store.next_rv();
        let object = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string(), "resourceVersion": rv.to_string(),
                         "creationTimestamp": objects::now(), "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        });
        inner.store.put(
            &(String::new(), "namespaces".into()),
            (String::new(), ns.into()),
            object,
            rv,
        );
    }
}

/// A kubeconfig that points kubectl and kube-rs at `url`.
pub fn kubeconfig_for(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kube-sim
  cluster:
    server: {url}
users:
- name: kube-sim-admin
  user:
    token: {ADMIN_TOKEN}
contexts:
- name: kube-sim
  context:
    cluster: kube-sim
    user: kube-sim-admin
    namespace: default
current-context: kube-sim
"
    )
}
