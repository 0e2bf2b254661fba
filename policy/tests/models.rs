//! Which models an agent may ask for (`GET /v1/models` on the gateway).
mod common;
use common::*;
use palisade_policy::ReasonCode;

#[test]
fn an_agent_may_use_the_models_its_policy_allows() {
    let b = bundle(
        vec![
            policy("p")
                .governing("a")
                .allowing_models(&["gpt-4o*", "llama3.1"])
                .build(),
        ],
        vec![],
    );
    let p = b.model_access(NS, "a").unwrap();
    assert!(p.allows_model("gpt-4o-mini"));
    assert!(p.allows_model("llama3.1"));
    assert!(!p.allows_model("o3"));
    assert!(!p.allows_model("llama3.1:70b"));
}

#[test]
fn a_kill_switch_or_no_policy_leaves_an_agent_no_model() {
    let b = bundle(
        vec![
            policy("p").governing_suspended("a").build(),
            policy("q")
                .in_namespace("other")
                .governing("b")
                .suspended()
                .build(),
        ],
        vec![],
    );
    let refused = |ns: &str, agent: &str| b.model_access(ns, agent).unwrap_err().reason_code;
    assert_eq!(refused(NS, "a"), ReasonCode::KillSwitchAgent);
    assert_eq!(refused("other", "b"), ReasonCode::KillSwitchPolicy);
    assert_eq!(refused(NS, "nobody"), ReasonCode::PolicyNone);
}
