//! Chat routing: every routing reason code, model allow-lists, kill
//! switches, fallbacks, and bundle integrity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use palisade_policy::{BundleError, Outcome, PolicyBundle, ReasonCode};

/// PHI keywords and SSN-like patterns stay local; short prompts go local;
/// `gpt-4o*` goes to the cloud; the `research` agent goes to the cloud.
fn clinic() -> PolicyBundle {
    bundle(
        vec![
            policy("clinic-assistant")
                .governing("intake")
                .governing("research")
                .allowing_models(&["gpt-4o*", "llama*"])
                .routing(
                    route_to("local", "phi-keywords")
                        .on_keywords(&["diagnosis", "patient", "MRN"])
                        .asking_for("llama3.1"),
                )
                .routing(
                    route_to("local", "phi-patterns")
                        .on_patterns(&[r"\b\d{3}-\d{2}-\d{4}\b"])
                        .asking_for("llama3.1"),
                )
                .routing(route_to("local", "short-prompts").up_to_chars(20))
                .routing(route_to("cloud", "research-agent").for_agents(&["research"]))
                .routing(route_to("cloud", "big-models").for_models(&["gpt-4o"]))
                .falling_back_to("local")
                .build(),
        ],
        vec![],
    )
}

#[test]
fn a_keyword_in_the_prompt_routes_local_case_insensitively() {
    let d = chat(
        &clinic(),
        "intake",
        "gpt-4o",
        "Summarise the DIAGNOSIS for this visit please, in full detail",
    );
    assert_eq!(d.decision.outcome, Outcome::Allow);
    assert_eq!(d.decision.reason_code, ReasonCode::RoutingKeyword);
    let route = d.permitted_route().unwrap();
    assert_eq!(
        (route.provider.as_str(), route.model.as_str()),
        ("local", "llama3.1")
    );
    assert_eq!(route.rule.as_deref(), Some("phi-keywords"));
}

#[test]
fn a_pattern_in_the_prompt_routes_local() {
    let d = chat(
        &clinic(),
        "intake",
        "gpt-4o",
        "The number on the form is 123-45-6789, can you check it?",
    );
    let route = d.permitted_route().unwrap();
    assert_eq!(route.provider, "local");
    assert_eq!(route.reasons[0], ReasonCode::RoutingPattern);
    assert_eq!(route.rule.as_deref(), Some("phi-patterns"));
}

#[test]
fn a_short_prompt_routes_local_by_length() {
    let d = chat(&clinic(), "intake", "gpt-4o-mini", "hello there");
    let route = d.permitted_route().unwrap();
    assert_eq!(
        (route.provider.as_str(), route.reasons[0]),
        ("local", ReasonCode::RoutingPromptLength)
    );
    // The request's model is kept when the rule names none.
    assert_eq!(route.model, "gpt-4o-mini");
}

#[test]
fn prompt_length_counts_characters_not_bytes() {
    let twenty_accented = "é".repeat(20);
    let d = chat(&clinic(), "intake", "gpt-4o-mini", &twenty_accented);
    assert_eq!(
        d.permitted_route().unwrap().reasons[0],
        ReasonCode::RoutingPromptLength
    );
}

#[test]
fn an_agent_rule_and_a_model_rule_route_by_who_asks_and_what_for() {
    let long = "Write a long essay about the history of medicine in Europe.";
    let by_agent = chat(&clinic(), "research", "gpt-4o-mini", long);
    assert_eq!(
        by_agent.permitted_route().unwrap().reasons,
        vec![ReasonCode::RoutingAgent]
    );
    let by_model = chat(&clinic(), "intake", "gpt-4o", long);
    assert_eq!(
        by_model.permitted_route().unwrap().reasons,
        vec![ReasonCode::RoutingModel]
    );
    assert_eq!(by_model.permitted_route().unwrap().provider, "cloud");
}

#[test]
fn no_matching_rule_routes_to_the_default_provider() {
    let d = chat(
        &clinic(),
        "intake",
        "gpt-4o-mini",
        "Write a long essay about the history of medicine in Europe.",
    );
    let route = d.permitted_route().unwrap();
    assert_eq!(
        (
            route.provider.as_str(),
            route.reasons.as_slice(),
            route.rule.as_deref()
        ),
        ("cloud", &[ReasonCode::RoutingDefault][..], None)
    );
}

#[test]
fn reason_codes_list_every_matching_rule_decisive_first() {
    let d = chat(&clinic(), "research", "gpt-4o", "patient 123-45-6789");
    let route = d.permitted_route().unwrap();
    assert_eq!(route.provider, "local");
    assert_eq!(
        route.reasons,
        vec![
            ReasonCode::RoutingKeyword,
            ReasonCode::RoutingPattern,
            ReasonCode::RoutingPromptLength,
            ReasonCode::RoutingAgent,
            ReasonCode::RoutingModel
        ]
    );
}

#[test]
fn a_failed_provider_falls_back_only_when_the_policy_names_a_fallback() {
    let d = chat(
        &clinic(),
        "intake",
        "gpt-4o-mini",
        "Write a long essay about the history of medicine in Europe.",
    );
    let fallback = d.permitted_route().unwrap().fallback_route().unwrap();
    assert_eq!(
        (fallback.provider.as_str(), fallback.model.as_str()),
        ("local", "llama3.1")
    );
    assert_eq!(
        fallback.reasons,
        vec![ReasonCode::RoutingDefault, ReasonCode::RoutingFallback]
    );
    assert!(
        fallback.fallback_route().is_none(),
        "a fallback does not fall back again"
    );

    let no_fallback = bundle(vec![policy("p").governing("intake").build()], vec![]);
    let d = chat(
        &no_fallback,
        "intake",
        "gpt-4o-mini",
        "anything at all that is long enough",
    );
    assert!(d.permitted_route().unwrap().fallback_route().is_none());
}

#[test]
fn a_model_outside_the_allow_list_is_denied() {
    let d = chat(&clinic(), "intake", "claude-opus", "hello");
    assert_eq!(
        (d.decision.outcome, d.decision.reason_code),
        (Outcome::Deny, ReasonCode::ModelNotAllowed)
    );
    assert!(d.permitted_route().is_none());
}

#[test]
fn an_empty_model_means_the_providers_default_model_which_must_be_allowed() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing_models(&["gpt-4o-mini"])
                .build(),
        ],
        vec![],
    );
    let d = chat(
        &b,
        "intake",
        "",
        "Write a long essay about the history of medicine in Europe.",
    );
    assert_eq!(d.permitted_route().unwrap().model, "gpt-4o-mini");
    let strict = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing_models(&["gpt-5"])
                .build(),
        ],
        vec![],
    );
    assert_eq!(
        chat(&strict, "intake", "", "x").decision.reason_code,
        ReasonCode::ModelNotAllowed
    );
}

#[test]
fn kill_switches_stop_chat_too() {
    let suspended = bundle(
        vec![policy("p").governing("intake").suspended().build()],
        vec![],
    );
    let d = chat(&suspended, "intake", "gpt-4o", "hello");
    assert_eq!(d.decision.reason_code, ReasonCode::KillSwitchPolicy);
    assert!(d.permitted_route().is_none());
    let agent_off = bundle(
        vec![policy("p").governing_suspended("intake").build()],
        vec![],
    );
    assert_eq!(
        chat(&agent_off, "intake", "gpt-4o", "hello")
            .decision
            .reason_code,
        ReasonCode::KillSwitchAgent
    );
}

#[test]
fn audit_enforcement_still_routes_a_request_it_would_have_refused() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing_models(&["llama*"])
                .audit_only()
                .build(),
        ],
        vec![],
    );
    let d = chat(&b, "intake", "gpt-4o", "hello");
    assert_eq!(
        (d.decision.reason_code, d.decision.enforced),
        (ReasonCode::ModelNotAllowed, false)
    );
    assert_eq!(d.permitted_route().unwrap().provider, "cloud");
}

#[test]
fn a_kill_switch_refuses_chat_even_when_the_policy_only_audits() {
    for suspended in [
        policy("p").governing("intake").suspended(),
        policy("p").governing_suspended("intake"),
    ] {
        let b = bundle(vec![suspended.audit_only().build()], vec![]);
        let d = chat(&b, "intake", "gpt-4o", "hello");
        assert!(d.decision.reason_code.is_kill_switch(), "{d:?}");
        assert!(
            d.decision.enforced,
            "a kill switch is enforced in every mode: {d:?}"
        );
        assert!(d.permitted_route().is_none(), "{d:?}");
    }
}

#[test]
fn a_routing_pattern_too_costly_to_match_is_refused() {
    // Within the old 16 MiB limit; about a second per MiB of prompt.
    for pattern in [r"(?i)(\w+\s*){200}zzz", r"(\w+\s+){100}\d"] {
        assert!(
            palisade_policy::check_pattern(pattern).is_err(),
            "{pattern} compiled"
        );
        assert!(
            palisade_policy::Routing::new(
                vec![route_to("local", "r").on_patterns(&[pattern])],
                "cloud".into(),
                None
            )
            .is_err(),
            "{pattern} compiled into a routing table"
        );
    }
    // What people write for identifiers stays well inside the bound.
    for pattern in [
        r"\b\d{3}-\d{2}-\d{4}\b",
        r"(?i)\bMRN[:#]?\s*\d{6,}\b",
        r"\b\w+@\w+\.\w+\b",
        r"(?i)\b(date of birth|dob)\b\s*[:\-]?\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}",
    ] {
        assert!(palisade_policy::check_pattern(pattern).is_ok(), "{pattern}");
    }
}

#[test]
fn unknown_agents_get_no_route() {
    let d = chat(&clinic(), "stranger", "gpt-4o", "hello");
    assert_eq!(d.decision.reason_code, ReasonCode::PolicyNone);
    assert!(d.route.is_none());
}

// === bundle integrity ===

#[test]
fn a_bundle_survives_serialization_with_the_same_revision_and_decisions() {
    let original = clinic();
    let json = serde_json::to_string(&original).unwrap();
    let back: PolicyBundle = serde_json::from_str(&json).unwrap();
    assert_eq!(back.revision(), original.revision());
    let prompt = "patient 123-45-6789";
    assert_eq!(
        chat(&back, "intake", "gpt-4o", prompt),
        chat(&original, "intake", "gpt-4o", prompt)
    );
}

#[test]
fn a_tampered_bundle_is_refused() {
    let json = serde_json::to_string(&clinic())
        .unwrap()
        .replace("diagnosis", "diagnosys");
    let err = serde_json::from_str::<PolicyBundle>(&json).unwrap_err();
    assert!(
        err.to_string().contains("does not match its content"),
        "{err}"
    );
}

#[test]
fn the_revision_does_not_depend_on_input_order_but_does_on_content() {
    let a = policy("a").governing("x").build();
    let b = policy("b").governing("y").build();
    let one = PolicyBundle::new(vec![a.clone(), b.clone()], vec![], vec![]).unwrap();
    let two = PolicyBundle::new(vec![b.clone(), a.clone()], vec![], vec![]).unwrap();
    assert_eq!(one.revision(), two.revision());
    let three = PolicyBundle::new(
        vec![a, policy("b").governing("y").generation(2).build()],
        vec![],
        vec![],
    )
    .unwrap();
    assert_ne!(one.revision(), three.revision());
}

#[test]
fn two_policies_naming_the_same_agent_in_one_namespace_are_refused() {
    let err = PolicyBundle::new(
        vec![
            policy("a").governing("x").build(),
            policy("b").governing("x").build(),
        ],
        vec![],
        vec![],
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::DuplicateAgent { .. }), "{err}");
}

#[test]
fn a_route_to_an_undefined_provider_is_refused() {
    let err = PolicyBundle::new(
        vec![
            policy("a")
                .governing("x")
                .routing(route_to("nowhere", "r"))
                .build(),
        ],
        vec![],
        vec![],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "policy clinic/a: spec.routing.rules[0].provider names provider \"nowhere\", which the policy does not define"
    );
}

#[test]
fn provider_credentials_never_show_in_debug_output() {
    let b = clinic();
    let printed = format!("{:?}", b.policies()[0].providers);
    assert!(!printed.contains("sk-test"), "{printed}");
}
