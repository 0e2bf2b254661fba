//! The first stage of a bundle pass: what it needs, read. The AIPolicies,
//! ToolGrants and gateway Leases come from the watch caches; the Secrets
//! the policies reference are fetched one by one, each in its policy's
//! namespace (never listed or watched).

use crate::scope::{self, Stores};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use palisade_crds::{AIPolicy, SecretKeyRef, Secrets, ToolGrant, labels};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a pass read from the API.
#[derive(Default)]
pub struct Snapshot {
    pub policies: Vec<AIPolicy>,
    pub grants: Vec<ToolGrant>,
    /// Credentials: never printed.
    pub secrets: Secrets,
    pub gateways: Vec<Lease>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("policies", &self.policies.len())
            .field("grants", &self.grants.len())
            .field("gateways", &self.gateways.len())
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Reads the caches and the referenced Secrets. Only watched
    /// namespaces: a policy of another namespace never reaches the bundle.
    pub async fn read(
        client: &Client,
        policies: &Stores<AIPolicy>,
        grants: &Stores<ToolGrant>,
        gateways: &Store<Lease>,
        namespaces: &[String],
    ) -> Result<Self, kube::Error> {
        let policies: Vec<AIPolicy> = scope::in_scope(namespaces, cloned(policies.state()));
        let grants: Vec<ToolGrant> = scope::in_scope(namespaces, cloned(grants.state()));
        let secrets = read_secrets(client, &policies).await?;
        Ok(Self {
            policies,
            grants,
            secrets,
            gateways: cloned(gateways.state()),
        })
    }
}

fn cloned<K: Clone>(objects: Vec<Arc<K>>) -> Vec<K> {
    objects.iter().map(|o| K::clone(o)).collect()
}

/// Reads only the Secrets policies reference, in their own namespaces.
async fn read_secrets(client: &Client, policies: &[AIPolicy]) -> Result<Secrets, kube::Error> {
    let mut secrets = Secrets::default();
    let mut fetched: BTreeMap<(String, String), Option<Secret>> = BTreeMap::new();
    for (ns, r) in referenced_secrets(policies) {
        let key = (ns.clone(), r.name.clone());
        if !fetched.contains_key(&key) {
            let s = Api::<Secret>::namespaced(client.clone(), &ns)
                .get_opt(&r.name)
                .await?;
            fetched.insert(key.clone(), s);
        }
        if let Some(Some(secret)) = fetched.get(&key)
            && let Some(v) = secret.data.as_ref().and_then(|d| d.get(&r.key))
        {
            if secret.labels().get(labels::CREDENTIALS).map(String::as_str)
                == Some(labels::CREDENTIALS_OPT_IN)
            {
                secrets.allow_as_credentials(&ns, &r.name);
            }
            secrets.insert(
                &ns,
                &r.name,
                &r.key,
                String::from_utf8_lossy(&v.0).into_owned(),
            );
        }
    }
    Ok(secrets)
}

fn referenced_secrets(policies: &[AIPolicy]) -> BTreeSet<(String, SecretKeyRef)> {
    let mut refs = BTreeSet::new();
    for p in policies {
        let ns = p.namespace().unwrap_or_default();
        for r in p.spec.secret_refs() {
            refs.insert((ns.clone(), r.clone()));
        }
    }
    refs
}
