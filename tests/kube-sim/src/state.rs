//! Shared server state: the store and registry behind one lock, the
//! change notifier watches wait on, and the test fixtures for
//! authentication and authorization.

use crate::registry::Registry;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// Who a bearer token belongs to (TokenReview fixtures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// One SubjectAccessReview answer; `*` matches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    pub user: String,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: String,
}

impl AccessRule {
    pub fn matches(
        &self,
        user: &str,
        groups: &[String],
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
    ) -> bool {
        let m = |want: &str, got: &str| want == "*" || want == got;
        (m(&self.user, user) || groups.iter().any(|g| self.user == format!("group:{g}")))
            && m(&self.verb, verb)
            && m(&self.group, group)
            && m(&self.resource, resource)
            && m(&self.namespace, namespace)
    }
}

#[derive(Debug, Default)]
pub struct Fixtures {
    pub tokens: HashMap<String, UserInfo>,
    pub rules: Vec<AccessRule>,
    /// Every resource request, with who made it (see [`Access`]).
    pub access_log: Vec<Access>,
}

/// One resource request as an authorizer would see it: the attributes an
/// RBAC rule matches on. The server has no RBAC; tests compare this log
/// with the RBAC a chart grants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Access {
    /// The bearer token's user (`anonymous` without a known token).
    pub user: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`.
    pub verb: String,
    pub group: String,
    /// The plural, with `/status` for the subresource.
    pub resource: String,
    pub namespace: Option<String>,
    /// The object's name; for a list or watch, the name its
    /// `fieldSelector=metadata.name=...` selects, if any.
    pub name: Option<String>,
}

#[derive(Debug)]
pub struct Inner {
    pub store: Store,
    pub registry: Registry,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct State {
    inner: Mutex<Inner>,
    fixtures: Mutex<Fixtures>,
    pub changes: watch::Sender<u64>,
    pub bookmark_interval: Mutex<Duration>,
}

/// The token the generated kubeconfig uses; it maps to `kube-sim:admin`.
pub const ADMIN_TOKEN: &str = "kube-sim-admin-token";

impl State {
    pub fn new() -> Self {
        let (changes, _) = watch::channel(0);
        let mut fixtures = Fixtures::default();
        fixtures.tokens.insert(
            ADMIN_TOKEN.into(),
            UserInfo {
                username: "kube-sim:admin".into(),
                uid: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            },
        );
        fixtures.rules.push(AccessRule {
            user: "group:system:masters".into(),
            verb: "*".into(),
            group: "*".into(),
            resource: "*".into(),
            namespace: "*".into(),
        });
        Self {
            inner: Mutex::new(Inner {
                store: Store::new(),
                registry: Registry::with_builtins(),
            }),
            fixtures: Mutex::new(fixtures),
            changes,
            bookmark_interval: Mutex::new(Duration::from_secs(1)),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fixtures(&self) -> MutexGuard<'_, Fixtures> {
        self.fixtures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every watch after a write.
    pub fn notify(&self, rv: u64) {
        self.changes.send_replace(rv);
    }

    pub fn bookmark_interval(&self) -> Duration {
        *self
            .bookmark_interval
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}
