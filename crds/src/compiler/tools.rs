//! `spec.tools` (rules, globs, conditions) and ToolGrants.

use super::Diags;
use crate::diagnostic::{Diagnostic, ObjectRef};
use crate::resources::{AIPolicy, GrantAction, ToolAction, ToolGrant};
use palisade_policy::{Grant, Outcome, ToolRule, ToolRules};

fn outcome(action: ToolAction) -> Outcome {
    match action {
        ToolAction::Allow => Outcome::Allow,
        ToolAction::Deny => Outcome::Deny,
        ToolAction::RequireApproval => Outcome::RequireApproval,
    }
}

pub(super) fn compile_tools(d: &mut Diags<'_>, p: &AIPolicy) -> Option<ToolRules> {
    let spec = &p.spec.tools;
    let mut ok = true;
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (i, r) in spec.rules.iter().enumerate() {
        let field = format!("spec.tools.rules[{i}]");
        if r.tools.is_empty() {
            d.push(
                format!("{field}.tools"),
                "the rule names no tool",
                "list tool names or globs, e.g. [sql_query]",
            );
            ok = false;
        }
        let earlier = spec.rules[..i].iter().map(|q| q.name.as_deref());
        ok &= d.unique_rule_name(&field, r.name.as_deref(), earlier);
        ok &= d.globs(&format!("{field}.tools"), &r.tools).is_some();
        let when = d.condition(&format!("{field}.when"), r.when.as_deref());
        rules.push(ToolRule {
            rule: r.name.clone().unwrap_or(field),
            tools: r.tools.clone(),
            action: outcome(r.action),
            when: when.unwrap_or_else(|| {
                ok = false;
                None
            }),
        });
    }
    if !ok {
        return None;
    }
    match ToolRules::new(outcome(spec.default), rules) {
        Ok(t) => Some(t),
        Err(e) => {
            d.push(
                format!("spec.tools.rules[{}].tools", e.rule),
                e.to_string(),
                "fix the glob",
            );
            None
        }
    }
}

pub(super) fn compile_grant(g: &ToolGrant, object: &ObjectRef) -> Result<Grant, Vec<Diagnostic>> {
    let mut d = Diags {
        object,
        list: Vec::new(),
    };
    let spec = &g.spec;
    if spec.agents.is_empty() {
        d.push(
            "spec.agents",
            "the grant names no agent",
            "list the agent names it is for",
        );
    }
    if spec.tools.is_empty() {
        d.push(
            "spec.tools",
            "the grant names no tool",
            "list tool names or globs",
        );
    }
    if spec.reason.trim().is_empty() {
        d.push(
            "spec.reason",
            "every exception needs a reason",
            "say why (ticket, incident, approver)",
        );
    }
    let agents = d.globs("spec.agents", &spec.agents);
    let tools = d.globs("spec.tools", &spec.tools);
    let when = d.condition("spec.when", spec.when.as_deref());
    let grant = (|| {
        Some(Grant {
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            agents: agents?,
            tools: tools?,
            action: match spec.action {
                GrantAction::Allow => Outcome::Allow,
                GrantAction::RequireApproval => Outcome::RequireApproval,
            },
            when: when?,
            expires_at: spec.expires_at.0,
            reason: spec.reason.clone(),
        })
    })();
    d.finish(grant)
}
