//! Tool-call evaluation: rules, grants, and the precedence between them.
//!
//! Precedence (first that applies wins):
//! 1. no policy names the agent → deny (`policy.none`, or `policy.invalid`
//!    when the only policy naming it has never compiled);
//! 2. kill switches: policy `suspend`, then agent `suspended` — enforced
//!    in every mode, `Audit` included;
//!    then a tool name longer than [`MAX_TOOL_NAME_BYTES`] → deny
//!    (`tool.name_too_long`, in every mode: names are audited and
//!    counted, and no tool needs a longer one);
//!    then arguments that are not a JSON object → deny
//!    (`tool.arguments_invalid`, in every mode too) unless an unconditional
//!    `Deny` rule names the tool (`tool.denied_by_rule`);
//! 3. explicit deny: any matching `Deny` rule, whatever its position;
//! 4. a failing CEL condition on a matching rule or grant → deny;
//! 5. an active ToolGrant (expired ones are inert);
//! 6. the policy's `Allow` / `RequireApproval` rules, in order;
//! 7. `tool.grant_expired` if only an expired grant matched, else the
//!    policy's default (`Deny` unless it says otherwise).

use crate::bundle::{Agent, Lookup, Policy, PolicyBundle};
use crate::condition::ConditionInput;
use crate::{Arguments, Condition, Decision, Evaluated, NameGlobs, Outcome, ReasonCode};
use globset::{GlobSet, GlobSetBuilder};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest tool name decided (bytes); a longer one is denied
/// `tool.name_too_long`.
pub const MAX_TOOL_NAME_BYTES: usize = 256;

/// "May this agent run this tool with these arguments?"
///
/// `arguments` is a [`crate::ToolArguments`] parsed from the text received
/// (preferred: it also gives the canonical JSON to forward and the digest)
/// or a `serde_json::Value` parsed by the caller. Anything but a JSON
/// object is denied `tool.arguments_invalid`.
#[derive(Debug)]
pub struct ToolCall<'a, A: ?Sized = Value> {
    pub namespace: &'a str,
    pub agent: &'a str,
    pub tool: &'a str,
    pub arguments: &'a A,
}

// By hand: derived impls would ask `A: Clone`, and a call only borrows.
impl<A: ?Sized> Clone for ToolCall<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: ?Sized> Copy for ToolCall<'_, A> {}

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
    /// Decides a tool call at time `now` (grants expire against it), and
    /// says which policy decided it.
    pub fn evaluate_tool<A: Arguments + ?Sized>(
        &self,
        call: &ToolCall<'_, A>,
        now: Timestamp,
    ) -> Evaluated<'_, Decision> {
        let (policy, agent) = match self.lookup(call.namespace, call.agent) {
            Lookup::Governed { policy, agent } => (policy, agent),
            Lookup::Invalid(invalid) => return Evaluated::ungoverned(Some(invalid)),
            Lookup::None => return Evaluated::ungoverned(None),
        };
        Evaluated {
            decision: self.decide_tool(policy, agent, call, now),
            policy: Some(policy),
        }
    }

    /// How `tool` shows in a listing for `agent` (MCP `tools/list`), by
    /// its name alone: `Deny` when the agent can never call it (a kill
    /// switch, no policy, an unconditional deny rule, or nothing but a
    /// default deny names it), `RequireApproval` when the first grant or
    /// rule that could let it through holds it for a human, else `Allow`.
    /// Conditions on arguments are not evaluated: a conditional rule is
    /// one that could apply (each call is decided in full anyway).
    pub fn tool_listing(
        &self,
        namespace: &str,
        agent: &str,
        tool: &str,
        now: Timestamp,
    ) -> Outcome {
        let Lookup::Governed { policy, agent: a } = self.lookup(namespace, agent) else {
            return Outcome::Deny;
        };
        if policy.kill_switch(a).is_some() || tool.len() > MAX_TOOL_NAME_BYTES {
            return Outcome::Deny;
        }
        if !policy.enforces() {
            // A dry run: every call goes through (and is recorded).
            return Outcome::Allow;
        }
        let rules = policy.tools.matching(tool);
        let all = policy.tools.rules();
        if rules
            .iter()
            .any(|&i| all[i].action == Outcome::Deny && all[i].when.is_none())
        {
            return Outcome::Deny;
        }
        let grant = self
            .grants_in(namespace)
            .find(|g| g.agents.is_match(agent) && g.tools.is_match(tool) && g.is_active(now))
            .map(|g| g.action);
        let rule = rules
            .iter()
            .map(|&i| all[i].action)
            .find(|a| *a != Outcome::Deny);
        grant
            .or(rule)
            .unwrap_or_else(|| policy.tools.default_action())
    }

    /// [`Self::evaluate_tool`] for an agent `policy` governs.
    fn decide_tool<A: Arguments + ?Sized>(
        &self,
        policy: &Policy,
        agent: &Agent,
        call: &ToolCall<'_, A>,
        now: Timestamp,
    ) -> Decision {
        if let Some(kill) = policy.kill_switch(agent) {
            return kill;
        }
        if call.tool.len() > MAX_TOOL_NAME_BYTES {
            return Decision {
                outcome: Outcome::Deny,
                enforced: true,
                reason_code: ReasonCode::ToolNameTooLong,
                rule: None,
                policy: Some(policy.reference()),
            };
        }
        let decide = |outcome, reason_code, rule: Option<String>| Decision {
            outcome,
            enforced: policy.enforces(),
            reason_code,
            rule,
            policy: Some(policy.reference()),
        };
        let rules = policy.tools.matching(call.tool);
        let all = policy.tools.rules();
        let Some(args) = call.arguments.evaluated() else {
            // Nothing to evaluate conditions on. An unconditional deny still
            // names itself (explicit deny comes first); otherwise refuse, in
            // every mode: in `Audit` the call would go on with arguments
            // nobody decided on.
            if let Some(&i) = rules
                .iter()
                .find(|&&i| all[i].action == Outcome::Deny && all[i].when.is_none())
            {
                return decide(
                    Outcome::Deny,
                    ReasonCode::ToolDeniedByRule,
                    Some(all[i].rule.clone()),
                );
            }
            return Decision {
                outcome: Outcome::Deny,
                enforced: true,
                reason_code: ReasonCode::ToolArgumentsInvalid,
                rule: None,
                policy: Some(policy.reference()),
            };
        };
        // One input for every rule and grant: arguments are converted to
        // CEL values once per call.
        let input = ConditionInput::new(args, call.tool, call.agent, call.namespace);

        // Explicit deny, whatever its position.
        for &i in &rules {
            let rule = &all[i];
            if rule.action != Outcome::Deny {
                continue;
            }
            let held = holds(rule.when.as_ref(), &input);
            let reason = ReasonCode::ToolDeniedByRule;
            if let Some(d) = applies(held, &decide, Outcome::Deny, reason, || rule.rule.clone()) {
                return d;
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
            let reason = match grant.action {
                Outcome::RequireApproval => ReasonCode::ToolApprovalRequiredByGrant,
                _ => ReasonCode::ToolAllowedByGrant,
            };
            let held = holds(grant.when.as_ref(), &input);
            if let Some(d) = applies(held, &decide, grant.action, reason, || grant.rule()) {
                return d;
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
            let held = holds(rule.when.as_ref(), &input);
            if let Some(d) = applies(held, &decide, rule.action, reason, || rule.rule.clone()) {
                return d;
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

/// What a rule or grant whose condition was judged `held` decides: its
/// own outcome when the condition holds, a deny
/// (`tool.condition_error`) when it could not be evaluated, nothing (ask
/// the next one) when it does not hold.
fn applies(
    held: Result<bool, ()>,
    decide: &impl Fn(Outcome, ReasonCode, Option<String>) -> Decision,
    outcome: Outcome,
    reason: ReasonCode,
    rule: impl FnOnce() -> String,
) -> Option<Decision> {
    match held {
        Ok(true) => Some(decide(outcome, reason, Some(rule()))),
        Ok(false) => None,
        Err(()) => Some(decide(
            Outcome::Deny,
            ReasonCode::ToolConditionError,
            Some(rule()),
        )),
    }
}

/// `Ok(true)` when there is no condition or it holds; `Err` on any failure.
fn holds(when: Option<&Condition>, input: &ConditionInput<'_>) -> Result<bool, ()> {
    match when {
        None => Ok(true),
        Some(c) => c.evaluate(input).map_err(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::condition::tests::CONVERSIONS;
    use crate::{Agent, ApprovalSettings, AuditSettings, Enforcement, Provider, ProviderKind};
    use crate::{Routing, ToolRule};
    use serde_json::json;

    fn allow_when(i: usize, when: &str) -> ToolRule {
        ToolRule {
            rule: format!("rule-{i}"),
            tools: vec!["send_email".into()],
            action: Outcome::Allow,
            when: Some(Condition::compile(when).unwrap()),
        }
    }

    #[test]
    fn arguments_are_converted_to_cel_once_per_call_not_once_per_condition() {
        // Ten rules and two grants whose conditions read the arguments; only
        // the last rule holds, so every condition is evaluated.
        let mut rules: Vec<ToolRule> = (0..9)
            .map(|i| allow_when(i, &format!("args.amount == {i}")))
            .collect();
        rules.push(allow_when(9, "args.to.endsWith('@clinic.example')"));
        let policy = Policy {
            namespace: "clinic".into(),
            name: "p".into(),
            generation: 1,
            suspend: false,
            enforcement: Enforcement::Enforce,
            agents: vec![Agent {
                name: "intake".into(),
                service_account: Some("intake".into()),
                api_key_sha256: None,
                suspended: false,
                quarantine: None,
            }],
            models: NameGlobs::any(),
            providers: vec![Provider {
                name: "local".into(),
                kind: ProviderKind::Ollama,
                base_url: "http://ollama:11434".into(),
                api_key: None,
                default_model: None,
                timeout_ms: 1000,
                tool_calling: Default::default(),
            }],
            routing: Routing::new(vec![], "local".into(), None).unwrap(),
            tools: ToolRules::new(Outcome::Deny, rules).unwrap(),
            approvals: ApprovalSettings::with_ttl(60),
            audit: AuditSettings::default(),
            limits: Default::default(),
            runnable: Default::default(),
            security: Default::default(),
            mcp_servers: Vec::new(),
        };
        let grants = (0..2)
            .map(|i| Grant {
                namespace: "clinic".into(),
                name: format!("g{i}"),
                agents: NameGlobs::new(["intake"]).unwrap(),
                tools: NameGlobs::new(["send_email"]).unwrap(),
                action: Outcome::Allow,
                when: Some(Condition::compile("args.amount > 1000").unwrap()),
                expires_at: "2030-01-01T00:00:00Z".parse().unwrap(),
                reason: "test".into(),
            })
            .collect();
        let bundle = PolicyBundle::new(vec![policy], vec![], grants).unwrap();
        let args = json!({"to": "dr@clinic.example", "amount": 42, "cc": ["a", "b"]});
        CONVERSIONS.with(|n| n.set(0));
        let d = bundle.evaluate_tool(
            &ToolCall {
                namespace: "clinic",
                agent: "intake",
                tool: "send_email",
                arguments: &args,
            },
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        assert_eq!(d.decision.rule.as_deref(), Some("rule-9"), "{d:?}");
        assert_eq!(
            CONVERSIONS.with(|n| n.get()),
            1,
            "conversions of one call's arguments"
        );
    }
}
