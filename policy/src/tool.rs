//! Tool-call evaluation: rules, grants, and the precedence between them.
//!
//! Precedence (first that applies wins):
//! 1. no policy names the agent → deny (`policy.none`, or `policy.invalid`
//!    when the only policy naming it has never compiled);
//! 2. kill switches: policy `suspend`, then agent `suspended`;
//! 3. explicit deny: any matching `Deny` rule, whatever its position;
//! 4. a failing CEL condition on a matching rule or grant → deny;
//! 5. an active ToolGrant (expired ones are inert);
//! 6. the policy's `Allow` / `RequireApproval` rules, in order;
//! 7. `tool.grant_expired` if only an expired grant matched, else the
//!    policy's default (`Deny` unless it says otherwise).

use crate::bundle::{Lookup, Policy, PolicyBundle};
use crate::condition::ConditionInput;
use crate::{Condition, Decision, NameGlobs, Outcome, PolicyRef, ReasonCode};
use globset::{GlobSet, GlobSetBuilder};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// "May this agent run this tool with these arguments?"
#[derive(Debug, Clone, Copy)]
pub struct ToolCall<'a> {
    pub namespace: &'a str,
    pub agent: &'a str,
    pub tool: &'a str,
    pub arguments: &'a Value,
}

/// One ordered tool rule of a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolRule {
    /// How decisions name this rule: its `name`, or `spec.tools.rules[i]`.
    pub rule: String,
    /// Tool-name globs.
    pub tools: Vec<String>,
    pub action: Outcome,
    /// Optional CEL condition; the rule applies only when it is true.
    pub when: Option<Condition>,
}

/// A tool glob in a rule does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tool rule {rule}: {source}")]
pub struct ToolRulesError {
    /// Index of the rule.
    pub rule: usize,
    #[source]
    pub source: crate::GlobError,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ToolRulesData {
    default: Outcome,
    rules: Vec<ToolRule>,
}

/// A policy's tool rules with all their globs in one `GlobSet`, so a
/// decision matches every rule in one pass instead of one glob at a time.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "ToolRulesData", into = "ToolRulesData")]
pub struct ToolRules {
    default: Outcome,
    rules: Vec<ToolRule>,
    matcher: GlobSet,
    /// Glob index in `matcher` → rule index.
    owner: Vec<usize>,
}

impl ToolRules {
    pub fn new(default: Outcome, rules: Vec<ToolRule>) -> Result<Self, ToolRulesError> {
        let mut builder = GlobSetBuilder::new();
        let mut owner = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            for (j, pattern) in rule.tools.iter().enumerate() {
                let glob = crate::globs::compile_glob(j, pattern)
                    .map_err(|source| ToolRulesError { rule: i, source })?;
                builder.add(glob);
                owner.push(i);
            }
        }
        let matcher = builder.build().map_err(|e| ToolRulesError {
            rule: 0,
            source: crate::GlobError {
                index: 0,
                pattern: String::new(),
                message: e.to_string(),
            },
        })?;
        Ok(Self {
            default,
            rules,
            matcher,
            owner,
        })
    }

    pub fn default_action(&self) -> Outcome {
        self.default
    }

    pub fn rules(&self) -> &[ToolRule] {
        &self.rules
    }

    /// Indexes of the rules whose globs match `tool`, in rule order.
    fn matching(&self, tool: &str) -> Vec<usize> {
        let mut hits: Vec<usize> = self
            .matcher
            .matches(tool)
            .into_iter()
            .map(|g| self.owner[g])
            .collect();
        hits.sort_unstable();
        hits.dedup();
        hits
    }
}

impl TryFrom<ToolRulesData> for ToolRules {
    type Error = ToolRulesError;
    fn try_from(d: ToolRulesData) -> Result<Self, Self::Error> {
        Self::new(d.default, d.rules)
    }
}

impl From<ToolRules> for ToolRulesData {
    fn from(r: ToolRules) -> Self {
        Self {
            default: r.default,
            rules: r.rules,
        }
    }
}

/// A compiled ToolGrant: a time-boxed exception for some agents and tools
/// in one namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grant {
    pub namespace: String,
    pub name: String,
    pub agents: NameGlobs,
    pub tools: NameGlobs,
    /// `Allow` or `RequireApproval`; a grant never denies.
    pub action: Outcome,
    pub when: Option<Condition>,
    pub expires_at: Timestamp,
    pub reason: String,
}

impl Grant {
    /// How decisions name this grant.
    pub fn rule(&self) -> String {
        format!("toolgrant/{}", self.name)
    }

    pub fn is_active(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

// === impl PolicyBundle: tool decisions ===

impl PolicyBundle {
    /// Decides a tool call at time `now` (grants expire against it).
    pub fn evaluate_tool(&self, call: &ToolCall<'_>, now: Timestamp) -> Decision {
        let (policy, agent) = match self.lookup(call.namespace, call.agent) {
            Lookup::Governed { policy, agent } => (policy, agent),
            Lookup::Invalid(invalid) => {
                return Decision {
                    outcome: Outcome::Deny,
                    enforced: true,
                    reason_code: ReasonCode::PolicyInvalid,
                    rule: None,
                    policy: Some(PolicyRef {
                        namespace: invalid.namespace.clone(),
                        name: invalid.name.clone(),
                        generation: invalid.generation,
                    }),
                };
            }
            Lookup::None => {
                return Decision {
                    outcome: Outcome::Deny,
                    enforced: true,
                    reason_code: ReasonCode::PolicyNone,
                    rule: None,
                    policy: None,
                };
            }
        };
        let decide = |outcome, reason_code, rule: Option<String>| Decision {
            outcome,
            enforced: policy.enforces(),
            reason_code,
            rule,
            policy: Some(policy.reference()),
        };
        if policy.suspend {
            return decide(
                Outcome::Deny,
                ReasonCode::KillSwitchPolicy,
                Some("spec.suspend".into()),
            );
        }
        if agent.suspended {
            return decide(
                Outcome::Deny,
                ReasonCode::KillSwitchAgent,
                Some(format!("spec.agents[{}].suspended", agent.name)),
            );
        }
        let input = ConditionInput {
            args: call.arguments,
            tool: call.tool,
            agent: call.agent,
            namespace: call.namespace,
        };
        let rules = policy.tools.matching(call.tool);
        let all = policy.tools.rules();

        // Explicit deny, whatever its position.
        for &i in &rules {
            let rule = &all[i];
            if rule.action != Outcome::Deny {
                continue;
            }
            match holds(rule.when.as_ref(), &input) {
                Ok(true) => {
                    return decide(
                        Outcome::Deny,
                        ReasonCode::ToolDeniedByRule,
                        Some(rule.rule.clone()),
                    );
                }
                Ok(false) => {}
                Err(()) => {
                    return decide(
                        Outcome::Deny,
                        ReasonCode::ToolConditionError,
                        Some(rule.rule.clone()),
                    );
                }
            }
        }

        // Grants: the active one that matches first (by name) wins.
        let mut expired_match = None;
        for grant in self.grants_in(call.namespace) {
            if !grant.agents.is_match(call.agent) || !grant.tools.is_match(call.tool) {
                continue;
            }
            if !grant.is_active(now) {
                expired_match.get_or_insert_with(|| grant.rule());
                continue;
            }
            match holds(grant.when.as_ref(), &input) {
                Ok(true) => {
                    let reason = match grant.action {
                        Outcome::RequireApproval => ReasonCode::ToolApprovalRequiredByGrant,
                        _ => ReasonCode::ToolAllowedByGrant,
                    };
                    return decide(grant.action, reason, Some(grant.rule()));
                }
                Ok(false) => {}
                Err(()) => {
                    return decide(
                        Outcome::Deny,
                        ReasonCode::ToolConditionError,
                        Some(grant.rule()),
                    );
                }
            }
        }

        // The policy's own rules, in order.
        for &i in &rules {
            let rule = &all[i];
            let reason = match rule.action {
                Outcome::Deny => continue,
                Outcome::Allow => ReasonCode::ToolAllowedByRule,
                Outcome::RequireApproval => ReasonCode::ToolApprovalRequiredByRule,
            };
            match holds(rule.when.as_ref(), &input) {
                Ok(true) => return decide(rule.action, reason, Some(rule.rule.clone())),
                Ok(false) => {}
                Err(()) => {
                    return decide(
                        Outcome::Deny,
                        ReasonCode::ToolConditionError,
                        Some(rule.rule.clone()),
                    );
                }
            }
        }

        if let Some(rule) = expired_match {
            return decide(Outcome::Deny, ReasonCode::ToolGrantExpired, Some(rule));
        }
        default_decision(policy, decide)
    }
}

fn default_decision(
    policy: &Policy,
    decide: impl Fn(Outcome, ReasonCode, Option<String>) -> Decision,
) -> Decision {
    let default = policy.tools.default_action();
    let reason = match default {
        Outcome::Deny => ReasonCode::ToolDefaultDeny,
        Outcome::Allow => ReasonCode::ToolDefaultAllow,
        Outcome::RequireApproval => ReasonCode::ToolDefaultApprovalRequired,
    };
    decide(default, reason, Some("spec.tools.default".into()))
}

/// `Ok(true)` when there is no condition or it holds; `Err` on any failure.
fn holds(when: Option<&Condition>, input: &ConditionInput<'_>) -> Result<bool, ()> {
    match when {
        None => Ok(true),
        Some(c) => c.evaluate(input).map_err(|_| ()),
    }
}
