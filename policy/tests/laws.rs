//! Property tests for the precedence laws: whatever the rules, grants and
//! arguments, a suspended policy or agent is never allowed anything, an
//! explicit deny is never overridden by a grant, and the same input always
//! gives the same decision.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use palisade_policy::{Outcome, PolicyBundle, ReasonCode};
use proptest::prelude::*;

const TOOLS: &[&str] = &[
    "sql_query",
    "send_email",
    "bulk_export",
    "read_chart",
    "pay",
];
const GLOBS: &[&str] = &[
    "*",
    "sql_*",
    "send_*",
    "bulk_export",
    "read_*",
    "pay",
    "{send,pay}*",
];

#[derive(Debug, Clone)]
struct Scenario {
    rules: Vec<(Outcome, usize, bool)>,
    default: Outcome,
    grants: Vec<(usize, bool, bool)>,
    suspend: bool,
    agent_suspended: bool,
    audit: bool,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Allow),
        Just(Outcome::Deny),
        Just(Outcome::RequireApproval)
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec((outcome(), 0..GLOBS.len(), any::<bool>()), 0..8),
        outcome(),
        prop::collection::vec((0..GLOBS.len(), any::<bool>(), any::<bool>()), 0..4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(rules, default, grants, suspend, agent_suspended, audit)| Scenario {
                rules,
                default,
                grants,
                suspend,
                agent_suspended,
                audit,
            },
        )
}

fn build(s: &Scenario) -> PolicyBundle {
    let mut p = policy("p").by_default(s.default);
    p = if s.agent_suspended {
        p.governing_suspended("intake")
    } else {
        p.governing("intake")
    };
    for &(action, glob, conditional) in &s.rules {
        let tools = &[GLOBS[glob]];
        p = match (action, conditional) {
            (Outcome::Deny, false) => p.denying(tools),
            (Outcome::Deny, true) => p.denying_when(tools, "has(args.amount) && args.amount > 100"),
            (Outcome::Allow, false) => p.allowing(tools),
            (Outcome::Allow, true) => {
                p.allowing_when(tools, "has(args.amount) && args.amount <= 100")
            }
            (Outcome::RequireApproval, _) => p.requiring_approval_for(tools),
        };
    }
    if s.suspend {
        p = p.suspended();
    }
    if s.audit {
        p = p.audit_only();
    }
    let grants = s
        .grants
        .iter()
        .enumerate()
        .map(|(i, &(glob, approval, expired))| {
            let mut g = grant(&format!("g{i}"))
                .for_agent("intake")
                .on_tools(&[GLOBS[glob]]);
            if approval {
                g = g.requiring_approval();
            }
            if expired {
                g = g.expired();
            }
            g.build()
        })
        .collect();
    bundle(vec![p.build()], grants)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_suspended_policy_or_agent_is_never_allowed_anything(s in scenario(), tool in 0..TOOLS.len(), amount in 0..300i64) {
        let b = build(&s);
        let d = decide(&b, "intake", TOOLS[tool], serde_json::json!({"amount": amount}));
        if s.suspend || s.agent_suspended {
            prop_assert_eq!(d.outcome, Outcome::Deny);
            prop_assert!(d.reason_code.is_kill_switch());
            prop_assert_eq!(d.effective_outcome(), Outcome::Deny, "not even audit mode lets a suspended agent through");
            let c = chat(&b, "intake", "gpt-4o", "hello");
            prop_assert_eq!(c.decision.outcome, Outcome::Deny);
            prop_assert!(c.permitted_route().is_none(), "not even audit mode lets a suspended agent through");
        } else {
            prop_assert!(!d.reason_code.is_kill_switch());
        }
    }

    #[test]
    fn an_explicit_deny_is_never_overridden_by_a_grant(s in scenario(), tool in 0..TOOLS.len(), amount in 0..300i64) {
        let b = build(&s);
        let args = serde_json::json!({"amount": amount});
        let d = decide(&b, "intake", TOOLS[tool], args);
        let name = TOOLS[tool];
        let glob_matches = |g: usize| palisade_policy::NameGlobs::new([GLOBS[g]]).unwrap().is_match(name);
        let deny_applies = s.rules.iter().any(|&(a, g, conditional)| a == Outcome::Deny && glob_matches(g) && (!conditional || amount > 100));
        if deny_applies && !s.suspend && !s.agent_suspended {
            prop_assert_eq!(d.outcome, Outcome::Deny);
            prop_assert_eq!(d.reason_code, ReasonCode::ToolDeniedByRule);
        }
        if d.reason_code == ReasonCode::ToolAllowedByGrant || d.reason_code == ReasonCode::ToolApprovalRequiredByGrant {
            prop_assert!(!deny_applies);
        }
    }

    #[test]
    fn the_same_input_always_gives_the_same_decision(s in scenario(), tool in 0..TOOLS.len(), amount in 0..300i64) {
        let args = serde_json::json!({"amount": amount});
        let first = decide(&build(&s), "intake", TOOLS[tool], args.clone());
        let rebuilt = build(&s);
        let round_tripped: PolicyBundle = serde_json::from_str(&serde_json::to_string(&rebuilt).unwrap()).unwrap();
        prop_assert_eq!(&first, &decide(&rebuilt, "intake", TOOLS[tool], args.clone()));
        prop_assert_eq!(&first, &decide(&round_tripped, "intake", TOOLS[tool], args));
    }

    #[test]
    fn an_expired_grant_never_allows(s in scenario(), tool in 0..TOOLS.len()) {
        let b = build(&s);
        let d = decide(&b, "intake", TOOLS[tool], serde_json::json!({}));
        if let Some(rule) = d.rule.as_deref().and_then(|r| r.strip_prefix("toolgrant/g")) {
            let i: usize = rule.parse().unwrap();
            if d.outcome != Outcome::Deny {
                prop_assert!(!s.grants[i].2, "expired grant g{} decided {:?}", i, d);
            }
        }
    }
}
