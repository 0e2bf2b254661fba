//! The compiled [`PolicyBundle`]: every valid policy and grant of an
//! installation, indexed by namespace and agent for the hot path.
//!
//! A bundle serializes to plain JSON (globs, regexes and CEL as their source
//! text) and deserializing recompiles and re-validates it, so the operator
//! can ship it in a Secret and a gateway can never load one that is
//! inconsistent. Its `revision` is a digest of the content: equal bundles
//! have equal revisions.

use crate::fingerprint::sha256_hex;
use crate::{Grant, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

mod model;
pub use model::{
    Agent, ApprovalSettings, ArgumentCapture, AuditSettings, Enforcement, Policy, PromptCapture,
    Provider, ProviderKind, SecretString, ToolCalling,
};

/// A policy with no valid generation yet: its agents are denied
/// (`policy.invalid`) until it compiles, rather than falling through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvalidPolicy {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    /// Agent names the policy lists, as far as they could be read.
    pub agents: Vec<String>,
}

/// A bundle whose parts contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error(
        "agent {agent:?} in namespace {namespace:?} is named by both policy {first:?} and policy {second:?}"
    )]
    DuplicateAgent {
        namespace: String,
        agent: String,
        first: String,
        second: String,
    },
    #[error(
        "policy {namespace}/{policy}: {field} names provider {provider:?}, which the policy does not define"
    )]
    UnknownProvider {
        namespace: String,
        policy: String,
        field: String,
        provider: String,
    },
    #[error("toolgrant {namespace}/{grant}: action must be Allow or RequireApproval, not {action}")]
    GrantAction {
        namespace: String,
        grant: String,
        action: Outcome,
    },
    #[error(
        "bundle revision {stored} does not match its content ({computed}): refusing a tampered or truncated bundle"
    )]
    Revision { stored: String, computed: String },
    #[error("bundle cannot be serialized: {0}")]
    Serialize(String),
}

#[derive(Clone, Debug, Default)]
struct NamespaceIndex {
    agents: HashMap<String, Slot>,
    /// Indexes into `grants`, ordered by grant name.
    grants: Vec<usize>,
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Valid { policy: usize, agent: usize },
    Invalid(usize),
}

pub(crate) enum Lookup<'a> {
    Governed {
        policy: &'a Policy,
        agent: &'a Agent,
    },
    Invalid(&'a InvalidPolicy),
    None,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BundleData {
    revision: String,
    policies: Vec<Policy>,
    #[serde(default)]
    invalid: Vec<InvalidPolicy>,
    #[serde(default)]
    grants: Vec<Grant>,
}

/// Everything a gateway needs to decide, compiled and indexed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "BundleData", into = "BundleData")]
pub struct PolicyBundle {
    revision: String,
    policies: Vec<Policy>,
    invalid: Vec<InvalidPolicy>,
    grants: Vec<Grant>,
    index: HashMap<String, NamespaceIndex>,
}

/// The kill switches one edit of a policy sets: read from an edit that
/// is refused (it does not compile) so that they still apply over the
/// version being served — a kill switch always wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillSwitches {
    pub namespace: String,
    pub policy: String,
    /// `spec.suspend: true`.
    pub suspend: bool,
    /// The agents with `suspended: true`.
    pub suspended_agents: Vec<String>,
}

impl PolicyBundle {
    /// Builds and validates a bundle. Order does not matter: policies and
    /// grants are sorted by namespace and name so the revision is stable.
    pub fn new(
        mut policies: Vec<Policy>,
        mut invalid: Vec<InvalidPolicy>,
        mut grants: Vec<Grant>,
    ) -> Result<Self, BundleError> {
        policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        invalid.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        grants.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        for policy in &policies {
            validate_providers(policy)?;
        }
        for grant in &grants {
            if grant.action == Outcome::Deny {
                return Err(BundleError::GrantAction {
                    namespace: grant.namespace.clone(),
                    grant: grant.name.clone(),
                    action: grant.action,
                });
            }
        }
        let index = build_index(&policies, &invalid, &grants)?;
        let content = serde_json::to_vec(&(&policies, &invalid, &grants))
            .map_err(|e| BundleError::Serialize(e.to_string()))?;
        let revision = sha256_hex(&content)[..16].to_owned();
        Ok(Self {
            revision,
            policies,
            invalid,
            grants,
            index,
        })
    }

    /// This bundle with `edits`' kill switches turned on over the policies
    /// they name (a switch is only ever turned on; an edit for a policy
    /// that is not served changes nothing). The revision changes exactly
    /// when a switch did.
    pub fn with_switches_on(&self, edits: &[KillSwitches]) -> Result<Self, BundleError> {
        let mut policies = self.policies.clone();
        for policy in &mut policies {
            for edit in edits {
                policy.switch_on_from(edit);
            }
        }
        Self::new(policies, self.invalid.clone(), self.grants.clone())
    }

    /// This bundle with `agents` (namespace, agent, why) quarantined, in
    /// whichever policy governs each (one not governed changes nothing).
    /// The revision changes exactly when a quarantine was added.
    pub fn with_quarantines<'a>(
        &self,
        agents: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Self, BundleError> {
        let mut policies = self.policies.clone();
        for (namespace, agent, why) in agents {
            for policy in policies.iter_mut().filter(|p| p.namespace == namespace) {
                policy.quarantine(agent, why);
            }
        }
        Self::new(policies, self.invalid.clone(), self.grants.clone())
    }

    /// A bundle that governs nobody: every request is denied `policy.none`.
    pub fn empty() -> Self {
        let revision = sha256_hex(b"[[],[],[]]")[..16].to_owned();
        Self {
            revision,
            policies: Vec::new(),
            invalid: Vec::new(),
            grants: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Content digest: equal content, equal revision.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    pub fn policy(&self, namespace: &str, name: &str) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    /// The policy that governs an agent, if one does and is valid.
    pub fn policy_for(&self, namespace: &str, agent: &str) -> Option<(&Policy, &Agent)> {
        match self.lookup(namespace, agent) {
            Lookup::Governed { policy, agent } => Some((policy, agent)),
            _ => None,
        }
    }

    pub(crate) fn lookup(&self, namespace: &str, agent: &str) -> Lookup<'_> {
        let Some(ns) = self.index.get(namespace) else {
            return Lookup::None;
        };
        match ns.agents.get(agent) {
            Some(Slot::Valid { policy, agent }) => Lookup::Governed {
                policy: &self.policies[*policy],
                agent: &self.policies[*policy].agents[*agent],
            },
            Some(Slot::Invalid(i)) => Lookup::Invalid(&self.invalid[*i]),
            None => Lookup::None,
        }
    }

    pub(crate) fn grants_in(&self, namespace: &str) -> impl Iterator<Item = &Grant> {
        self.index
            .get(namespace)
            .into_iter()
            .flat_map(|ns| ns.grants.iter().map(|&i| &self.grants[i]))
    }
}

fn validate_providers(policy: &Policy) -> Result<(), BundleError> {
    let unknown = |field: String, provider: &str| BundleError::UnknownProvider {
        namespace: policy.namespace.clone(),
        policy: policy.name.clone(),
        field,
        provider: provider.to_owned(),
    };
    let routing = &policy.routing;
    if policy.provider(routing.default_provider()).is_none() {
        return Err(unknown(
            "spec.routing.defaultProvider".into(),
            routing.default_provider(),
        ));
    }
    if let Some(f) = routing.fallback_provider()
        && policy.provider(f).is_none()
    {
        return Err(unknown("spec.routing.fallbackProvider".into(), f));
    }
    for (i, rule) in routing.rules().iter().enumerate() {
        if policy.provider(&rule.provider).is_none() {
            return Err(unknown(
                format!("spec.routing.rules[{i}].provider"),
                &rule.provider,
            ));
        }
    }
    Ok(())
}

fn build_index(
    policies: &[Policy],
    invalid: &[InvalidPolicy],
    grants: &[Grant],
) -> Result<HashMap<String, NamespaceIndex>, BundleError> {
    let mut index: HashMap<String, NamespaceIndex> = HashMap::new();
    for (p, policy) in policies.iter().enumerate() {
        let ns = index.entry(policy.namespace.clone()).or_default();
        for (a, agent) in policy.agents.iter().enumerate() {
            if let Some(Slot::Valid { policy: first, .. }) = ns.agents.get(&agent.name) {
                return Err(BundleError::DuplicateAgent {
                    namespace: policy.namespace.clone(),
                    agent: agent.name.clone(),
                    first: policies[*first].name.clone(),
                    second: policy.name.clone(),
                });
            }
            ns.agents.insert(
                agent.name.clone(),
                Slot::Valid {
                    policy: p,
                    agent: a,
                },
            );
        }
    }
    for (i, bad) in invalid.iter().enumerate() {
        let ns = index.entry(bad.namespace.clone()).or_default();
        for agent in &bad.agents {
            // A valid policy that names the agent keeps governing it.
            ns.agents.entry(agent.clone()).or_insert(Slot::Invalid(i));
        }
    }
    for (i, grant) in grants.iter().enumerate() {
        index
            .entry(grant.namespace.clone())
            .or_default()
            .grants
            .push(i);
    }
    Ok(index)
}

impl TryFrom<BundleData> for PolicyBundle {
    type Error = BundleError;
    fn try_from(d: BundleData) -> Result<Self, Self::Error> {
        let bundle = Self::new(d.policies, d.invalid, d.grants)?;
        if bundle.revision != d.revision {
            return Err(BundleError::Revision {
                stored: d.revision,
                computed: bundle.revision,
            });
        }
        Ok(bundle)
    }
}

impl From<PolicyBundle> for BundleData {
    fn from(b: PolicyBundle) -> Self {
        Self {
            revision: b.revision,
            policies: b.policies,
            invalid: b.invalid,
            grants: b.grants,
        }
    }
}

impl fmt::Debug for PolicyBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBundle")
            .field("revision", &self.revision)
            .field("policies", &self.policies.len())
            .field("invalid", &self.invalid.len())
            .field("grants", &self.grants.len())
            .finish()
    }
}
