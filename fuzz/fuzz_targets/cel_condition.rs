//! CEL conditions over arbitrary tool arguments. Input: the condition's
//! source, a NUL byte, the arguments' raw text. Arguments parse to the
//! same canonical JSON and digest however often they are re-read; a
//! condition that compiled evaluates to the same answer (bool or error)
//! every time, sharing the per-call context or not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_policy::{Condition, ConditionError, ConditionInput, ToolArguments};

fuzz_target!(|data: &[u8]| {
    let Some(nul) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let (Ok(source), Ok(raw)) = (
        std::str::from_utf8(&data[..nul]),
        std::str::from_utf8(&data[nul + 1..]),
    ) else {
        return;
    };
    let args = ToolArguments::parse(raw);
    match args.canonical_json() {
        Some(canonical) => {
            let again = ToolArguments::parse(canonical);
            assert_eq!(
                again.canonical_json(),
                Some(canonical),
                "canonical JSON is a fixed point"
            );
            assert_eq!(
                again.digest(),
                args.digest(),
                "the digest of the canonical form"
            );
            let read: serde_json::Value =
                serde_json::from_str(canonical).expect("canonical JSON is JSON");
            assert!(read.is_object(), "only objects are valid arguments");
        }
        None => assert!(args.error().is_some(), "invalid arguments say why"),
    }
    let Ok(condition) = Condition::compile(source) else {
        return;
    };
    let Some(value) = args.value() else {
        return;
    };
    let input = ConditionInput::new(value, "send_email", "agent", "team-a");
    let first = condition.evaluate(&input);
    let cached = condition.evaluate(&input);
    let fresh = condition.evaluate(&ConditionInput::new(value, "send_email", "agent", "team-a"));
    // Errors compared by kind: a message may print a map, whose order is
    // not fixed.
    let answer = |r: &Result<bool, ConditionError>| match r {
        Ok(b) => Ok(*b),
        Err(e) => Err(std::mem::discriminant(e)),
    };
    assert_eq!(
        answer(&first),
        answer(&cached),
        "the shared context changed the answer"
    );
    assert_eq!(
        answer(&first),
        answer(&fresh),
        "a fresh context changed the answer"
    );
});
