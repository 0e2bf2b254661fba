//! What an evaluation returns: the [`Decision`] and its [`Outcome`], with
//! the policy that made it ([`Evaluated`]).

use crate::ReasonCode;
use crate::bundle::{InvalidPolicy, Policy};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the policy says about a tool call or a chat request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Allow,
    Deny,
    RequireApproval,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
            Self::RequireApproval => "RequireApproval",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy object that produced a decision.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
}

/// One decision with everything an auditor needs to explain it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// What the policy decided.
    pub outcome: Outcome,
    /// `false` when the policy runs in `Audit` enforcement: the outcome is
    /// recorded but never blocks (see [`Decision::effective_outcome`]).
    /// Kill-switch decisions are always enforced.
    pub enforced: bool,
    /// The decisive reason.
    pub reason_code: ReasonCode,
    /// The rule that produced the decision, e.g. `spec.tools.rules[2]`,
    /// `deny-bulk-export` (a named rule) or `toolgrant/oncall-email`.
    pub rule: Option<String>,
    /// The policy (and its generation) that governed the agent, if any.
    pub policy: Option<PolicyRef>,
}

impl Decision {
    /// What the gateway must do: in `Audit` enforcement everything is
    /// allowed, except what a kill switch stopped.
    pub fn effective_outcome(&self) -> Outcome {
        // A kill switch is enforced even on a decision that says otherwise
        // (say, one deserialized from an older gateway's audit or cache).
        if self.enforced || self.reason_code.is_kill_switch() {
            self.outcome
        } else {
            Outcome::Allow
        }
    }

    /// The policy generation, for audit rows.
    pub fn generation(&self) -> Option<i64> {
        self.policy.as_ref().map(|p| p.generation)
    }
}

/// What an evaluation returns: the decision and the policy that made it
/// (`None` when no valid policy governs the agent), so a caller that needs
/// the policy's settings (audit capture, approval TTL) never looks it up a
/// second time.
#[derive(Clone, Debug)]
pub struct Evaluated<'b, D> {
    pub decision: D,
    pub policy: Option<&'b Policy>,
}

impl<D: From<Decision>> Evaluated<'_, D> {
    /// The refusal for an agent no valid policy governs.
    pub(crate) fn ungoverned(invalid: Option<&InvalidPolicy>) -> Self {
        Self {
            decision: ungoverned(invalid).into(),
            policy: None,
        }
    }
}

/// The refusal for an agent no valid policy governs: `policy.invalid`
/// naming the policy that does not compile, or `policy.none`.
pub(crate) fn ungoverned(invalid: Option<&InvalidPolicy>) -> Decision {
    Decision {
        outcome: Outcome::Deny,
        enforced: true,
        reason_code: match invalid {
            Some(_) => ReasonCode::PolicyInvalid,
            None => ReasonCode::PolicyNone,
        },
        rule: None,
        policy: invalid.map(|invalid| PolicyRef {
            namespace: invalid.namespace.clone(),
            name: invalid.name.clone(),
            generation: invalid.generation,
        }),
    }
}
