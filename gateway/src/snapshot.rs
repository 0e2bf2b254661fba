//! The configuration a gateway serves: the compiled bundle plus what the
//! hot path derives from it (the API-key index, the providers' parsed
//! endpoints), swapped atomically. A request loads one `Arc<Snapshot>` and
//! uses it throughout, so it sees the old or the new configuration, never
//! a mix; loading takes no lock.

use crate::credentials::{Identity, Tokens};
use crate::providers::Endpoints;
use arc_swap::ArcSwapOption;
use palisade_policy::PolicyBundle;
use std::sync::Arc;

/// One loaded configuration.
#[derive(Debug)]
pub struct Snapshot {
    pub bundle: PolicyBundle,
    /// Every agent's API key (by its SHA-256), naming the agent.
    pub agent_keys: Tokens<Identity>,
    pub endpoints: Endpoints,
    pub loaded_at: jiff::Timestamp,
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Snapshot {
    pub fn new(bundle: PolicyBundle) -> Self {
        let agent_keys = bundle
            .policies()
            .iter()
            .flat_map(|p| {
                p.agents.iter().filter_map(move |a| {
                    let identity = Identity {
                        namespace: p.namespace.clone(),
                        agent: a.name.clone(),
                    };
                    Some((unhex(a.api_key_sha256.as_deref()?)?, identity))
                })
            })
            .collect();
        Self {
            endpoints: Endpoints::of(&bundle),
            bundle,
            agent_keys,
            loaded_at: jiff::Timestamp::now(),
        }
    }

    pub fn revision(&self) -> &str {
        self.bundle.revision()
    }
}

/// The swappable slot. Empty until a first configuration loads: the
/// gateway is not ready and serves nothing.
pub type Current = Arc<ArcSwapOption<Snapshot>>;

pub fn empty() -> Current {
    Arc::new(ArcSwapOption::empty())
}

/// For unit tests: the bundle a standalone YAML file compiles to (its
/// Secrets resolved from the file only).
#[cfg(test)]
pub(crate) fn bundle_of(yaml: &str) -> PolicyBundle {
    let sources = [palisade_crds::standalone::Source {
        name: "p.yaml",
        text: yaml,
    }];
    match palisade_crds::standalone::load(&sources, &|_| None, jiff::Timestamp::now()) {
        Ok((_, compiled, _)) => compiled.bundle,
        Err(e) => panic!("the test's YAML does not load: {e:?}"),
    }
}
