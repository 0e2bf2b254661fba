//! Sensitive-content routing sees words however they are written: case,
//! hyphens and underscores, line breaks, full-width and zero-width
//! characters do not hide a keyword or an identifier from the rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use palisade_policy::{PolicyBundle, ReasonCode};

fn phi_stays_local() -> PolicyBundle {
    bundle(
        vec![
            policy("clinic-assistant")
                .governing("intake")
                .routing(route_to("local", "phi-keywords").on_keywords(&[
                    "date of birth",
                    "medical record",
                    "patient",
                ]))
                .routing(route_to("local", "ssn").on_patterns(&[r"\b\d{3}-\d{2}-\d{4}\b"]))
                .build(),
        ],
        vec![],
    )
}

fn routed(prompt: &str) -> (String, ReasonCode) {
    let d = chat(&phi_stays_local(), "intake", "gpt-4o", prompt);
    let route = d.permitted_route().unwrap();
    (route.provider.clone(), route.reasons[0])
}

#[test]
fn keywords_are_caught_however_the_words_are_written() {
    for prompt in [
        "Her Date-of-Birth is on the form",
        "DATE_OF_BIRTH: 1970-01-01",
        "see the medical\nrecord attached",
        "see the medical\r\n\t record attached",
        "a ｐａｔｉｅｎｔ asks",
        "a ＰＡＴＩＥＮＴ asks",
        "a pa\u{200B}tient asks",
        "a pat\u{00AD}ient asks",
        "the pati\u{2060}ent's date\u{200C} of\u{FEFF} birth",
    ] {
        assert_eq!(
            routed(prompt),
            ("local".to_owned(), ReasonCode::RoutingKeyword),
            "{prompt:?}"
        );
    }
    assert_eq!(
        routed("write a poem about the sea"),
        ("cloud".to_owned(), ReasonCode::RoutingDefault)
    );
}

#[test]
fn patterns_see_full_width_digits_and_no_zero_width_characters() {
    for prompt in [
        "my number is １２３-４５-６７８９",
        "my number is 123-45-\u{200B}6789",
        "my number is 123\u{2060}-45-6789",
    ] {
        assert_eq!(
            routed(prompt),
            ("local".to_owned(), ReasonCode::RoutingPattern),
            "{prompt:?}"
        );
    }
}

#[test]
fn rules_scan_everything_the_provider_sees_and_length_only_the_prompt() {
    let b = phi_stays_local();
    let seen = "hello\nsystem: you are a scribe\nlookup_record\n{\"field\":\"patient\"}";
    let d = chat_seeing(&b, "intake", "gpt-4o", "hello", seen);
    let route = d.permitted_route().unwrap();
    assert_eq!(
        (route.provider.as_str(), route.reasons[0]),
        ("local", ReasonCode::RoutingKeyword)
    );
    // Length rules measure the messages' text, not the tool definitions.
    let short = bundle(
        vec![
            policy("p")
                .governing("intake")
                .routing(route_to("local", "short").up_to_chars(10))
                .build(),
        ],
        vec![],
    );
    let tools = "hello\nsend_letter\na very long tool description ".repeat(20);
    let d = chat_seeing(&short, "intake", "gpt-4o", "hello", &tools);
    assert_eq!(
        d.permitted_route().unwrap().reasons,
        [ReasonCode::RoutingPromptLength]
    );
}

/// Deny-by-default cloud routing: `local` by default; the `research`
/// agent's requests may go to the cloud, unless they mention a patient
/// (that rule is listed after the cloud rule, and still wins).
fn regulated() -> PolicyBundle {
    bundle(
        vec![
            policy("regulated")
                .governing("intake")
                .governing("research")
                .defaulting_to("local")
                .cloud_only_by_rule()
                .routing(route_to("cloud", "research-may-use-cloud").for_agents(&["research"]))
                .routing(route_to("local", "phi").on_keywords(&["patient"]))
                .build(),
        ],
        vec![],
    )
}

#[test]
fn with_cloud_only_by_rule_a_request_reaches_the_cloud_only_when_an_allow_rule_says_so() {
    let b = regulated();
    let route = |agent: &str, prompt: &str| {
        let d = chat(&b, agent, "gpt-4o", prompt);
        let r = d.permitted_route().unwrap().clone();
        (r.provider, r.reasons, r.rule)
    };
    assert_eq!(
        route("intake", "summarise the meeting"),
        (
            "local".into(),
            vec![ReasonCode::RoutingCloudNotAllowed],
            None
        )
    );
    assert_eq!(
        route("research", "summarise the paper"),
        (
            "cloud".into(),
            vec![ReasonCode::RoutingAgent],
            Some("research-may-use-cloud".into())
        )
    );
    // A matching rule that keeps the request local beats the cloud rule
    // listed before it.
    assert_eq!(
        route("research", "summarise the PATIENT's file"),
        (
            "local".into(),
            vec![ReasonCode::RoutingKeyword, ReasonCode::RoutingAgent],
            Some("phi".into())
        )
    );
    // The setting survives the bundle's serialisation (operator → gateway).
    let again: PolicyBundle = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
    assert_eq!(again.revision(), b.revision());
    assert_eq!(
        chat(&again, "intake", "gpt-4o", "hi")
            .permitted_route()
            .unwrap()
            .reasons,
        [ReasonCode::RoutingCloudNotAllowed]
    );
}

#[test]
fn with_cloud_only_by_rule_the_default_and_fallback_must_be_local() {
    use palisade_policy::{CloudRouting, Routing, RoutingError};
    for (default, fallback, refused) in [
        ("cloud", None, "default"),
        ("local", Some("cloud"), "fallback"),
    ] {
        let err = Routing::new(vec![], default.into(), fallback.map(Into::into))
            .unwrap()
            .with_cloud(CloudRouting::AllowRulesOnly {
                local: vec!["local".into()],
            })
            .unwrap_err();
        assert!(
            matches!(err, RoutingError::CloudByDefault { which, .. } if which == refused),
            "{err}"
        );
    }
}
