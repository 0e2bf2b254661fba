//! Which models an agent may ask for: what the gateway's `GET /v1/models`
//! lists, from the models each provider offers.

use crate::bundle::{Lookup, Policy, PolicyBundle};
use crate::decision::{Decision, ungoverned};

impl PolicyBundle {
    /// The policy whose `models.allow` and providers say what the agent
    /// may use, or the decision that refuses it everything: no policy, an
    /// invalid one, or a kill switch (which always wins).
    pub fn model_access(&self, namespace: &str, agent: &str) -> Result<&Policy, Decision> {
        match self.lookup(namespace, agent) {
            Lookup::Governed { policy, agent } => match policy.kill_switch(agent) {
                Some(kill) => Err(kill),
                None => Ok(policy),
            },
            Lookup::Invalid(invalid) => Err(ungoverned(Some(invalid))),
            Lookup::None => Err(ungoverned(None)),
        }
    }
}

impl Policy {
    /// Whether the agents of this policy may ask for `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_match(model)
    }
}
