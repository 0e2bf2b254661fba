//! Tool-call arguments: only a JSON object is ever evaluated; anything
//! else — a string, an array, `null`, or text that is not JSON at all — is
//! denied with its own reason code, never decided as `{}`. What was
//! evaluated is available as canonical JSON for the gateway to forward.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use palisade_policy::{ArgumentsError, Outcome, PolicyBundle, ReasonCode, ToolArguments, ToolCall};
use serde_json::json;

/// Everything is allowed, except mail outside the clinic, which a human
/// must approve — the shape of the issue's hostile-upstream finding.
fn mail_needs_a_human_when_it_leaves_the_clinic() -> PolicyBundle {
    bundle(
        vec![
            policy("p")
                .governing("intake")
                .requiring_approval_when(
                    &["send_email"],
                    "has(args.to) && !args.to.endsWith('@clinic.example')",
                )
                .by_default(Outcome::Allow)
                .build(),
        ],
        vec![],
    )
}

fn decide_raw(bundle: &PolicyBundle, tool: &str, raw: &str) -> palisade_policy::Decision {
    let arguments = ToolArguments::parse(raw);
    bundle
        .evaluate_tool(
            &ToolCall {
                namespace: NS,
                agent: "intake",
                tool,
                arguments: &arguments,
            },
            now(),
        )
        .decision
}

#[test]
fn nan_in_the_arguments_is_denied_not_decided_as_no_arguments() {
    let b = mail_needs_a_human_when_it_leaves_the_clinic();
    let raw = r#"{"to":"x@evil.example","subject":"records","n":NaN}"#;
    let d = decide_raw(&b, "send_email", raw);
    assert_eq!(
        (d.outcome, d.reason_code, d.effective_outcome()),
        (
            Outcome::Deny,
            ReasonCode::ToolArgumentsInvalid,
            Outcome::Deny
        ),
        "{d:?}"
    );
    let arguments = ToolArguments::parse(raw);
    assert!(matches!(
        arguments.error(),
        Some(ArgumentsError::NotJson(_))
    ));
    assert_eq!(arguments.canonical_json(), None, "nothing to forward");
    // The same call with valid JSON is held for a human, as the policy says.
    let d = decide_raw(&b, "send_email", r#"{"to":"x@evil.example","n":1}"#);
    assert_eq!(d.reason_code, ReasonCode::ToolApprovalRequiredByRule);
}

#[test]
fn arguments_that_are_not_a_json_object_are_denied_with_their_own_reason_code() {
    let b = mail_needs_a_human_when_it_leaves_the_clinic();
    for raw in [
        r#""{\"to\":\"x@evil.example\"}""#,
        r#"[{"to":"x@evil.example"}]"#,
        "null",
        "42",
        "true",
        r#"{"to":"x@evil.example""#,
        r#"{"to":"x@evil.example"} {"to":"y"}"#,
        r#"{'to':'x@evil.example'}"#,
        r#"{"to":"x@evil.example",}"#,
    ] {
        let d = decide_raw(&b, "send_email", raw);
        assert_eq!(
            (d.outcome, d.reason_code, d.rule.as_deref()),
            (Outcome::Deny, ReasonCode::ToolArgumentsInvalid, None),
            "{raw}: {d:?}"
        );
        assert!(d.enforced, "{raw}: refused in every mode");
        assert!(!ToolArguments::parse(raw).is_valid(), "{raw}");
    }
}

#[test]
fn a_parsed_value_that_is_not_an_object_is_denied_too() {
    let b = mail_needs_a_human_when_it_leaves_the_clinic();
    for args in [
        json!("{\"to\":\"x@evil.example\"}"),
        json!([{"to": "x@evil.example"}]),
        json!(null),
        json!(7),
    ] {
        let d = decide(&b, "intake", "send_email", args.clone());
        assert_eq!(
            (d.outcome, d.reason_code),
            (Outcome::Deny, ReasonCode::ToolArgumentsInvalid),
            "{args}: {d:?}"
        );
    }
}

#[test]
fn invalid_arguments_are_refused_even_when_the_policy_only_audits() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .by_default(Outcome::Allow)
                .audit_only()
                .build(),
        ],
        vec![],
    );
    let d = decide_raw(&b, "anything", "[1,2,3]");
    assert_eq!(
        (d.reason_code, d.enforced, d.effective_outcome()),
        (ReasonCode::ToolArgumentsInvalid, true, Outcome::Deny)
    );
}

#[test]
fn an_explicit_deny_and_a_kill_switch_still_name_themselves_on_invalid_arguments() {
    let denied = bundle(
        vec![
            policy("p")
                .governing("intake")
                .denying(&["bulk_export"])
                .build(),
        ],
        vec![],
    );
    assert_eq!(
        decide_raw(&denied, "bulk_export", "NaN").reason_code,
        ReasonCode::ToolDeniedByRule
    );
    let suspended = bundle(
        vec![policy("p").governing("intake").suspended().build()],
        vec![],
    );
    assert_eq!(
        decide_raw(&suspended, "bulk_export", "NaN").reason_code,
        ReasonCode::KillSwitchPolicy
    );
}

#[test]
fn the_canonical_json_is_exactly_what_was_evaluated() {
    let raw = "{ \"subject\": \"hi\",\n \"to\": \"dr@clinic.example\", \"cc\": [\"a\", {\"z\": 1, \"y\": null}] }";
    let arguments = ToolArguments::parse(raw);
    let canonical = arguments.canonical_json().unwrap();
    assert_eq!(
        canonical,
        r#"{"cc":["a",{"y":null,"z":1}],"subject":"hi","to":"dr@clinic.example"}"#
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(canonical).unwrap(),
        *arguments.value().unwrap()
    );
    // Canonical is a fixed point: forwarding it and parsing it again gives
    // the same text and the same digest.
    let again = ToolArguments::parse(canonical);
    assert_eq!(again.canonical_json(), Some(canonical));
    assert_eq!(again.digest(), arguments.digest());
    assert!(arguments.digest().starts_with("sha256:"));
    // The digest is the one the parsed-value API has always given.
    assert_eq!(
        arguments.digest(),
        palisade_policy::argument_digest(arguments.value().unwrap())
    );
}

#[test]
fn empty_argument_text_means_no_arguments() {
    for raw in ["", "  ", "\n"] {
        let arguments = ToolArguments::parse(raw);
        assert_eq!(arguments.canonical_json(), Some("{}"), "{raw:?}");
    }
    let b = bundle(
        vec![policy("p").governing("intake").allowing(&["clock"]).build()],
        vec![],
    );
    assert_eq!(
        decide_raw(&b, "clock", "").reason_code,
        ReasonCode::ToolAllowedByRule
    );
}

#[test]
fn invalid_arguments_still_have_a_digest_for_the_audit() {
    let a = ToolArguments::parse(r#"{"n":NaN}"#);
    let b = ToolArguments::parse(r#"{"n":Infinity}"#);
    assert!(a.digest().starts_with("sha256:"));
    assert_ne!(a.digest(), b.digest());
    // Debug never shows the content.
    assert!(!format!("{a:?}").contains("NaN"));
}

#[test]
fn argument_digests_keep_full_numeric_precision() {
    // Each pair is equal once rounded through an f64, and must not be.
    let twins = [
        // 2^64 + 1, above every integer type serde_json has.
        (
            r#"{"n":18446744073709551617}"#,
            r#"{"n":18446744073709551616}"#,
        ),
        (
            r#"{"n":18446744073709551617}"#,
            r#"{"n":1.8446744073709552e19}"#,
        ),
        (r#"{"x":0.10000000000000000000001}"#, r#"{"x":0.1}"#),
        (
            r#"{"amount":100.000000000000000001}"#,
            r#"{"amount":100.0}"#,
        ),
    ];
    for (exact, rounded) in twins {
        let (a, b) = (ToolArguments::parse(exact), ToolArguments::parse(rounded));
        assert_ne!(
            a.digest(),
            b.digest(),
            "{exact} and {rounded} share a digest"
        );
        // What is forwarded is what was received, digit for digit.
        assert_eq!(a.canonical_json(), Some(exact));
        assert_eq!(b.canonical_json(), Some(rounded));
    }
    // Nesting and white space do not matter; the digits do.
    let spaced = ToolArguments::parse("{ \"n\" : [ 18446744073709551617 ] }");
    assert_eq!(
        spaced.canonical_json(),
        Some(r#"{"n":[18446744073709551617]}"#)
    );
}

#[test]
fn a_key_given_twice_is_invalid_not_resolved_silently() {
    // Parsers disagree on which one wins; the policy must not pick.
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing_when(&["send_email"], "args.to.endsWith('@clinic.example')")
                .build(),
        ],
        vec![],
    );
    for raw in [
        r#"{"to":"x@evil.example","to":"dr@clinic.example"}"#,
        r#"{"to":"dr@clinic.example","cc":{"a":1,"a":2}}"#,
    ] {
        let d = decide_raw(&b, "send_email", raw);
        assert_eq!(d.reason_code, ReasonCode::ToolArgumentsInvalid, "{raw}");
    }
}

#[test]
fn numbers_a_double_cannot_hold_are_invalid_and_json_is_parsed_strictly() {
    for raw in [
        r#"{"n":1e400}"#,
        r#"{"n":-1e400}"#,
        r#"{"n":01}"#,
        r#"{"n":1.}"#,
        r#"{"n":.5}"#,
        r#"{"n":+1}"#,
        r#"{"s":"\ud800"}"#,
        "{\"s\":\"tab\there\"}",
        r#"{"s":"\x41"}"#,
    ] {
        assert!(!ToolArguments::parse(raw).is_valid(), "{raw}");
    }
    // What serde_json accepts, the canonical form keeps.
    let escapes = ToolArguments::parse(r#"{"s":"\u00e9\/\"\\\n\u0001\ud83d\ude00"}"#);
    assert_eq!(
        escapes.canonical_json(),
        Some("{\"s\":\"\u{e9}/\\\"\\\\\\n\\u0001\u{1f600}\"}")
    );
    assert_eq!(escapes.value().unwrap()["s"], "é/\"\\\n\u{1}😀");
    // Deep nesting is refused before it can exhaust the stack.
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(!ToolArguments::parse(&deep).is_valid());
}

mod agrees_with_serde_json {
    use palisade_policy::{ToolArguments, argument_digest};
    use proptest::prelude::*;
    use serde_json::Value;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever serde_json writes, the strict parser reads back to the
        /// same value and the digest `argument_digest` has always given.
        #[test]
        fn what_serde_json_writes_parses_to_the_same_value_and_digest(
            fields in prop::collection::btree_map(any::<String>(), json(), 0..6),
            pretty in any::<bool>(),
        ) {
            let value = Value::Object(fields.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            };
            let parsed = ToolArguments::parse(&text);
            prop_assert_eq!(parsed.value(), Some(&value));
            prop_assert_eq!(parsed.digest(), argument_digest(&value));
            let from_value = ToolArguments::from_value(value);
            prop_assert_eq!(parsed.digest(), from_value.digest());
        }

        /// On arbitrary JSON-ish text the strict parser never panics and
        /// never accepts what serde_json refuses; what it accepts, it reads
        /// as serde_json does.
        #[test]
        fn it_accepts_nothing_serde_json_refuses(text in r#"[ {}\[\],:"0-9eE.+\-a-z\\]{0,24}"#) {
            let parsed = ToolArguments::parse(&text);
            // Empty text is `{}` on purpose (see empty_argument_text_means_no_arguments).
            if let Some(value) = parsed.value().filter(|_| !text.trim().is_empty()) {
                let theirs: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(value, &theirs);
            }
        }
    }
}
