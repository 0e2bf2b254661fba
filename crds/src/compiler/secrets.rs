//! The Secret values one compilation may read: by namespace, name and
//! key, and which of them their owners let be provider credentials.

use crate::resources::SecretKeyRef;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Secret values the compiler may read, keyed by namespace, name and key.
/// Only Secrets in a policy's own namespace are ever looked up.
#[derive(Clone, Default)]
pub struct Secrets {
    map: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Secrets whose owner let them be sent to a provider (labelled
    /// [`crate::labels::CREDENTIALS`]).
    credentials: BTreeSet<(String, String)>,
    /// Standalone: every Secret is the gateway admin's own.
    all_credentials: bool,
}

impl Secrets {
    pub fn insert(&mut self, namespace: &str, name: &str, key: &str, value: impl Into<String>) {
        self.map
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .insert(key.to_owned(), value.into());
    }

    /// Lets Secret `namespace/name` be a provider credential: its owner
    /// labelled it [`crate::labels::CREDENTIALS`]` = "true"`.
    pub fn allow_as_credentials(&mut self, namespace: &str, name: &str) {
        self.credentials
            .insert((namespace.to_owned(), name.to_owned()));
    }

    /// Secrets that may all be provider credentials: the standalone
    /// gateway's own files, written by whoever runs it.
    pub fn all_allowed_as_credentials() -> Self {
        Self {
            all_credentials: true,
            ..Self::default()
        }
    }

    pub(super) fn allowed_as_credentials(&self, namespace: &str, name: &str) -> bool {
        self.all_credentials
            || self
                .credentials
                .contains(&(namespace.to_owned(), name.to_owned()))
    }

    pub(super) fn lookup(&self, namespace: &str, reference: &SecretKeyRef) -> Result<&str, String> {
        let secret = self
            .map
            .get(&(namespace.to_owned(), reference.name.clone()))
            .ok_or_else(|| format!("Secret {namespace}/{} does not exist", reference.name))?;
        secret
            .get(&reference.key)
            .map(String::as_str)
            .ok_or_else(|| {
                format!(
                    "Secret {namespace}/{} has no key {:?}",
                    reference.name, reference.key
                )
            })
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.map.iter().map(|((ns, name), keys)| {
                format!("{ns}/{name}: {:?}", keys.keys().collect::<Vec<_>>())
            }))
            .finish()
    }
}
