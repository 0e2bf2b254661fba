//! Agent names (per namespace) and API keys (everywhere) that compiled
//! policies have claimed: the older policy keeps them.

use super::*;

/// What the policies compiled so far have claimed: agent names (per
/// namespace) and API keys (everywhere: a key identifies one agent).
#[derive(Default)]
pub(super) struct Claims {
    /// (namespace, agent) → policy.
    agents: HashMap<(String, String), String>,
    /// Key digest → (namespace, policy, agent).
    keys: HashMap<String, (String, String, String)>,
}

impl Claims {
    pub(super) fn record(&mut self, policy: &Policy) {
        for agent in &policy.agents {
            self.agents.insert(
                (policy.namespace.clone(), agent.name.clone()),
                policy.name.clone(),
            );
            if let Some(key) = &agent.api_key_sha256 {
                self.keys.insert(
                    key.clone(),
                    (
                        policy.namespace.clone(),
                        policy.name.clone(),
                        agent.name.clone(),
                    ),
                );
            }
        }
    }
}

pub(super) fn claim_agents(
    policy: &Policy,
    object: &ObjectRef,
    claimed: &Claims,
) -> Result<(), Vec<Diagnostic>> {
    let mut conflicts = Vec::new();
    for (i, agent) in policy.agents.iter().enumerate() {
        if let Some(owner) = claimed
            .agents
            .get(&(policy.namespace.clone(), agent.name.clone()))
        {
            conflicts.push(Diagnostic::new(
                object,
                format!("spec.agents[{i}].name"),
                format!("agent {:?} is already governed by AIPolicy {owner:?} in this namespace", agent.name),
                format!("remove it from one of the two policies (an agent has exactly one policy); {owner:?} is older and keeps it"),
            ));
        }
        let owner = agent
            .api_key_sha256
            .as_ref()
            .and_then(|k| claimed.keys.get(k));
        if let Some((namespace, owner, owner_agent)) = owner {
            conflicts.push(Diagnostic::new(
                object,
                format!("spec.agents[{i}].apiKeySecretRef"),
                format!(
                    "agent {:?} has the same API key as agent {owner_agent:?} of AIPolicy {namespace}/{owner}; a key identifies exactly one agent, so requests with it would be answered as that agent, under that policy",
                    agent.name
                ),
                format!(
                    "give agent {:?} a key of its own (e.g. kubectl create secret generic ... --from-literal=key=\"$(openssl rand -hex 32)\"); AIPolicy {namespace}/{owner} is older and keeps the key. If that policy is not your team's, the key is known outside its team: tell its owners to rotate it",
                    agent.name
                ),
            ));
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(conflicts)
    }
}
