//! Every tool-call reason code and every precedence rule, one sentence each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use palisade_policy::{Outcome, PolicyBundle, ReasonCode, ToolCall};
use serde_json::json;

fn assert_decision(
    d: &palisade_policy::Decision,
    outcome: Outcome,
    reason: ReasonCode,
    rule: Option<&str>,
) {
    assert_eq!(
        (d.outcome, d.reason_code, d.rule.as_deref()),
        (outcome, reason, rule),
        "{d:#?}"
    );
}

#[test]
fn an_agent_no_policy_names_is_denied_with_policy_none() {
    let b = bundle(
        vec![policy("p").governing("intake").allowing(&["*"]).build()],
        vec![],
    );
    let d = decide(&b, "stranger", "sql_query", json!({}));
    assert_decision(&d, Outcome::Deny, ReasonCode::PolicyNone, None);
    assert!(d.policy.is_none());
}

#[test]
fn a_policy_never_governs_agents_of_another_namespace() {
    let b = bundle(
        vec![
            policy("p")
                .in_namespace("billing")
                .governing("intake")
                .allowing(&["*"])
                .build(),
        ],
        vec![],
    );
    let d = decide(&b, "intake", "sql_query", json!({}));
    assert_decision(&d, Outcome::Deny, ReasonCode::PolicyNone, None);
}

#[test]
fn an_agent_whose_only_policy_never_compiled_is_denied_with_policy_invalid() {
    let b = PolicyBundle::new(
        vec![],
        vec![palisade_policy::InvalidPolicy {
            namespace: NS.into(),
            name: "broken".into(),
            generation: 3,
            agents: vec!["intake".into()],
        }],
        vec![grant("g").for_agent("intake").on_tools(&["*"]).build()],
    )
    .unwrap();
    let d = decide(&b, "intake", "sql_query", json!({}));
    assert_decision(&d, Outcome::Deny, ReasonCode::PolicyInvalid, None);
    assert_eq!(d.policy.unwrap().name, "broken");
}

#[test]
fn the_policy_kill_switch_beats_allow_rules_and_grants() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing(&["*"])
                .by_default(Outcome::Allow)
                .suspended()
                .build(),
        ],
        vec![grant("g").for_agent("intake").on_tools(&["*"]).build()],
    );
    let d = decide(&b, "intake", "sql_query", json!({}));
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::KillSwitchPolicy,
        Some("spec.suspend"),
    );
    assert!(d.enforced);
}

#[test]
fn the_agent_kill_switch_stops_only_that_agent() {
    let b = bundle(
        vec![
            policy("p")
                .governing_suspended("intake")
                .governing("billing")
                .allowing(&["*"])
                .build(),
        ],
        vec![grant("g").for_agent("intake").on_tools(&["*"]).build()],
    );
    let d = decide(&b, "intake", "sql_query", json!({}));
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::KillSwitchAgent,
        Some("spec.agents[intake].suspended"),
    );
    assert_eq!(
        decide(&b, "billing", "sql_query", json!({})).outcome,
        Outcome::Allow
    );
}

#[test]
fn a_quarantined_agent_is_stopped_in_every_mode_until_lifted() {
    let open = bundle(
        vec![
            policy("p")
                .governing("intake")
                .governing("billing")
                .allowing(&["*"])
                .audit_only()
                .build(),
        ],
        vec![grant("g").for_agent("intake").on_tools(&["*"]).build()],
    );
    let why = "alert.path_traversal at 2026-12-06T21:00:00Z: argument path looks like path traversal (request r-1)";
    let quarantined = open.with_quarantines([(NS, "intake", why)]).unwrap();
    assert_ne!(quarantined.revision(), open.revision(), "a new revision");
    let d = decide(&quarantined, "intake", "sql_query", json!({}));
    let rule = format!("quarantine: {why}");
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::KillSwitchQuarantine,
        Some(rule.as_str()),
    );
    assert!(d.enforced, "a kill switch, even in Audit mode: {d:?}");
    assert_eq!(
        decide(&quarantined, "billing", "sql_query", json!({})).outcome,
        Outcome::Allow,
        "only that agent"
    );
    // Another namespace's agent of the same name, or an unknown one: nothing.
    let elsewhere = open
        .with_quarantines([("other", "intake", why), (NS, "nobody", why)])
        .unwrap();
    assert_eq!(elsewhere.revision(), open.revision());
    // The files' configuration without it: decided again.
    assert_eq!(
        decide(&open, "intake", "sql_query", json!({})).outcome,
        Outcome::Allow
    );
}

#[test]
fn an_explicit_deny_wins_even_when_an_earlier_rule_allows() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing(&["*"])
                .denying(&["bulk_*"])
                .build(),
        ],
        vec![],
    );
    let d = decide(&b, "intake", "bulk_export", json!({}));
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::ToolDeniedByRule,
        Some("spec.tools.rules[1]"),
    );
}

#[test]
fn an_explicit_deny_is_never_overridden_by_a_grant() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .denying(&["bulk_export"])
                .build(),
        ],
        vec![
            grant("g")
                .for_agent("intake")
                .on_tools(&["bulk_export"])
                .build(),
        ],
    );
    let d = decide(&b, "intake", "bulk_export", json!({}));
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::ToolDeniedByRule,
        Some("spec.tools.rules[0]"),
    );
}

#[test]
fn a_conditional_deny_applies_only_when_its_condition_holds() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .denying_when(&["sql_query"], "args.query.contains('DROP')")
                .allowing(&["sql_query"])
                .build(),
        ],
        vec![],
    );
    assert_eq!(
        decide(&b, "intake", "sql_query", json!({"query": "DROP TABLE x"})).reason_code,
        ReasonCode::ToolDeniedByRule
    );
    assert_eq!(
        decide(&b, "intake", "sql_query", json!({"query": "SELECT 1"})).reason_code,
        ReasonCode::ToolAllowedByRule
    );
}

#[test]
fn a_condition_that_fails_to_evaluate_denies_instead_of_skipping_the_rule() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .denying_when(&["pay"], "args.amount > 100")
                .by_default(Outcome::Allow)
                .build(),
        ],
        vec![],
    );
    let d = decide(&b, "intake", "pay", json!({"currency": "EUR"}));
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::ToolConditionError,
        Some("spec.tools.rules[0]"),
    );
    let allowed_rule = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing_when(&["pay"], "args.amount < 100")
                .build(),
        ],
        vec![],
    );
    assert_eq!(
        decide(&allowed_rule, "intake", "pay", json!({})).reason_code,
        ReasonCode::ToolConditionError
    );
}

#[test]
fn an_active_grant_allows_what_the_policy_would_default_deny() {
    let b = bundle(
        vec![policy("p").governing("intake").build()],
        vec![
            grant("oncall-export")
                .for_agent("intake")
                .on_tools(&["export_*"])
                .build(),
        ],
    );
    let d = decide(&b, "intake", "export_csv", json!({}));
    assert_decision(
        &d,
        Outcome::Allow,
        ReasonCode::ToolAllowedByGrant,
        Some("toolgrant/oncall-export"),
    );
}

#[test]
fn a_grant_takes_precedence_over_the_policys_own_rules() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing(&["send_email"])
                .build(),
        ],
        vec![
            grant("review-mail")
                .for_agent("intake")
                .on_tools(&["send_email"])
                .requiring_approval()
                .build(),
        ],
    );
    let d = decide(&b, "intake", "send_email", json!({}));
    assert_decision(
        &d,
        Outcome::RequireApproval,
        ReasonCode::ToolApprovalRequiredByGrant,
        Some("toolgrant/review-mail"),
    );
}

#[test]
fn a_grant_whose_condition_is_false_falls_through_to_the_rules() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .requiring_approval_for(&["send_email"])
                .build(),
        ],
        vec![
            grant("internal-mail")
                .for_agent("intake")
                .on_tools(&["send_email"])
                .when("args.to.endsWith('@clinic.example')")
                .build(),
        ],
    );
    assert_eq!(
        decide(
            &b,
            "intake",
            "send_email",
            json!({"to": "dr@clinic.example"})
        )
        .reason_code,
        ReasonCode::ToolAllowedByGrant
    );
    let outside = decide(
        &b,
        "intake",
        "send_email",
        json!({"to": "someone@gmail.com"}),
    );
    assert_decision(
        &outside,
        Outcome::RequireApproval,
        ReasonCode::ToolApprovalRequiredByRule,
        Some("spec.tools.rules[0]"),
    );
}

#[test]
fn a_grant_for_another_agent_or_namespace_does_not_apply() {
    let b = bundle(
        vec![policy("p").governing("intake").build()],
        vec![
            grant("other-agent")
                .for_agent("billing")
                .on_tools(&["*"])
                .build(),
            grant("other-ns")
                .for_agent("intake")
                .on_tools(&["*"])
                .in_namespace("billing")
                .build(),
        ],
    );
    assert_eq!(
        decide(&b, "intake", "sql_query", json!({})).reason_code,
        ReasonCode::ToolDefaultDeny
    );
}

#[test]
fn an_expired_grant_grants_nothing_and_says_so_when_nothing_else_permits() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing(&["sql_query"])
                .build(),
        ],
        vec![
            grant("old")
                .for_agent("intake")
                .on_tools(&["*"])
                .expired()
                .build(),
        ],
    );
    let d = decide(&b, "intake", "export_csv", json!({}));
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::ToolGrantExpired,
        Some("toolgrant/old"),
    );
    // The policy's own rules still apply.
    assert_eq!(
        decide(&b, "intake", "sql_query", json!({})).reason_code,
        ReasonCode::ToolAllowedByRule
    );
}

#[test]
fn a_grant_expires_at_exactly_its_expiry_time() {
    let g = grant("g").for_agent("intake").on_tools(&["*"]).build();
    let expiry = g.expires_at;
    let b = bundle(vec![policy("p").governing("intake").build()], vec![g]);
    let args = json!({});
    let call = ToolCall {
        namespace: NS,
        agent: "intake",
        tool: "x",
        arguments: &args,
    };
    assert_eq!(
        b.evaluate_tool(&call, expiry - jiff::SignedDuration::from_millis(1))
            .decision
            .outcome,
        Outcome::Allow
    );
    assert_eq!(
        b.evaluate_tool(&call, expiry).decision.reason_code,
        ReasonCode::ToolGrantExpired
    );
}

#[test]
fn policy_rules_apply_in_order_and_the_first_match_wins() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .requiring_approval_for(&["send_*"])
                .allowing(&["send_email", "sql_query"])
                .build(),
        ],
        vec![],
    );
    let d = decide(&b, "intake", "send_email", json!({}));
    assert_decision(
        &d,
        Outcome::RequireApproval,
        ReasonCode::ToolApprovalRequiredByRule,
        Some("spec.tools.rules[0]"),
    );
    let d = decide(&b, "intake", "sql_query", json!({}));
    assert_decision(
        &d,
        Outcome::Allow,
        ReasonCode::ToolAllowedByRule,
        Some("spec.tools.rules[1]"),
    );
}

#[test]
fn the_default_is_deny_unless_the_policy_says_otherwise() {
    for (default, reason) in [
        (Outcome::Deny, ReasonCode::ToolDefaultDeny),
        (Outcome::Allow, ReasonCode::ToolDefaultAllow),
        (
            Outcome::RequireApproval,
            ReasonCode::ToolDefaultApprovalRequired,
        ),
    ] {
        let b = bundle(
            vec![policy("p").governing("intake").by_default(default).build()],
            vec![],
        );
        let d = decide(&b, "intake", "anything", json!({}));
        assert_decision(&d, default, reason, Some("spec.tools.default"));
    }
}

#[test]
fn audit_enforcement_records_the_decision_but_never_blocks() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .denying(&["bulk_export"])
                .audit_only()
                .build(),
        ],
        vec![],
    );
    let d = decide(&b, "intake", "bulk_export", json!({}));
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::ToolDeniedByRule,
        Some("spec.tools.rules[0]"),
    );
    assert!(!d.enforced);
    assert_eq!(d.effective_outcome(), Outcome::Allow);
}

#[test]
fn decisions_name_the_policy_and_its_generation() {
    let b = bundle(
        vec![
            policy("clinic-assistant")
                .governing("intake")
                .generation(7)
                .build(),
        ],
        vec![],
    );
    let d = decide(&b, "intake", "x", json!({}));
    let p = d.policy.clone().unwrap();
    assert_eq!(
        (p.namespace.as_str(), p.name.as_str(), p.generation),
        (NS, "clinic-assistant", 7)
    );
    assert_eq!(d.generation(), Some(7));
}

#[test]
fn a_kill_switch_is_enforced_even_when_the_policy_only_audits() {
    let policy_off = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing(&["*"])
                .suspended()
                .audit_only()
                .build(),
        ],
        vec![grant("g").for_agent("intake").on_tools(&["*"]).build()],
    );
    let d = decide(&policy_off, "intake", "sql_query", json!({}));
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::KillSwitchPolicy,
        Some("spec.suspend"),
    );
    assert!(d.enforced, "a kill switch is enforced in every mode: {d:?}");
    assert_eq!(d.effective_outcome(), Outcome::Deny);

    let agent_off = bundle(
        vec![
            policy("p")
                .governing_suspended("intake")
                .governing("billing")
                .allowing(&["*"])
                .audit_only()
                .build(),
        ],
        vec![],
    );
    let d = decide(&agent_off, "intake", "sql_query", json!({}));
    assert_decision(
        &d,
        Outcome::Deny,
        ReasonCode::KillSwitchAgent,
        Some("spec.agents[intake].suspended"),
    );
    assert!(d.enforced, "a kill switch is enforced in every mode: {d:?}");
    assert_eq!(d.effective_outcome(), Outcome::Deny);
    // The rest of the policy still only audits.
    let other = decide(&agent_off, "billing", "sql_query", json!({}));
    assert_eq!(other.effective_outcome(), Outcome::Allow);
}

/// Issue 23, item 10: a tool name longer than 256 bytes is refused
/// (`tool.name_too_long`) in every mode, whatever a glob or grant says; a
/// kill switch still names itself.
#[test]
fn a_tool_name_longer_than_256_bytes_is_refused_in_every_mode() {
    let long = format!("sql_{}", "é".repeat(127)); // 4 + 254 = 258 bytes
    let limit = format!("sql_{}", "x".repeat(252)); // 256 bytes
    for audit_only in [false, true] {
        let mut p = policy("p").governing("intake").allowing(&["sql_*"]);
        if audit_only {
            p = p.audit_only();
        }
        let b = bundle(
            vec![p.build()],
            vec![grant("g").for_agent("intake").on_tools(&["*"]).build()],
        );
        let d = decide(&b, "intake", &long, json!({}));
        assert_decision(&d, Outcome::Deny, ReasonCode::ToolNameTooLong, None);
        assert!(d.enforced, "refused even when the policy only audits");
        let d = decide(&b, "intake", &limit, json!({}));
        assert_eq!(d.effective_outcome(), Outcome::Allow, "{d:?}");
    }
    let b = bundle(
        vec![policy("p").governing("intake").suspended().build()],
        vec![],
    );
    let d = decide(&b, "intake", &long, json!({}));
    assert_eq!(d.reason_code, ReasonCode::KillSwitchPolicy);
}

#[test]
fn a_listing_hides_only_the_tools_an_agent_can_never_call() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .denying(&["bulk_*"])
                .denying_when(&["sql_query"], "args.query.contains('DROP')")
                .allowing_when(&["sql_query"], "has(args.query)")
                .requiring_approval_for(&["send_email"])
                .build(),
        ],
        vec![
            grant("g")
                .for_agent("intake")
                .on_tools(&["calendar_*"])
                .build(),
        ],
    );
    let listed = |tool: &str| b.tool_listing(NS, "intake", tool, now());
    assert_eq!(
        listed("bulk_export"),
        Outcome::Deny,
        "an unconditional deny"
    );
    assert_eq!(
        listed("sql_query"),
        Outcome::Allow,
        "a conditional rule could apply"
    );
    assert_eq!(listed("send_email"), Outcome::RequireApproval);
    assert_eq!(listed("calendar_read"), Outcome::Allow, "a grant");
    assert_eq!(
        listed("rm"),
        Outcome::Deny,
        "only the default deny names it"
    );
    assert_eq!(
        b.tool_listing(NS, "stranger", "sql_query", now()),
        Outcome::Deny
    );
    let dry = bundle(
        vec![policy("p").governing("intake").audit_only().build()],
        vec![],
    );
    assert_eq!(
        dry.tool_listing(NS, "intake", "rm", now()),
        Outcome::Allow,
        "a dry run"
    );
    let off = bundle(
        vec![
            policy("p")
                .governing_suspended("intake")
                .allowing(&["*"])
                .build(),
        ],
        vec![],
    );
    assert_eq!(
        off.tool_listing(NS, "intake", "rm", now()),
        Outcome::Deny,
        "a kill switch"
    );
}
