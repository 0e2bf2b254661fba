//! CEL conditions have a cost bound: a condition whose cost grows faster
//! than the arguments it reads (nested loops over them, strings built from
//! them inside loops, growth that multiplies) is refused when it is
//! compiled, and arguments larger than conditions may read fail closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use palisade_policy::{Condition, Outcome, ReasonCode};
use serde_json::json;

/// Conditions that would run away on arguments a gateway accepts (up to
/// 1 MiB): quadratic or worse in their size, or exponential in the
/// expression.
const RUNAWAY: &[&str] = &[
    // A loop inside a loop, both over the arguments.
    "args.a.exists(x, args.b.exists(y, x == y))",
    // Every iteration scans or copies a whole argument.
    "args.l.all(x, args.s.contains(x))",
    "size(args.l.map(x, args.s + x)) > 0",
    // One string replaced into another: |s| * |s|.
    "args.s.replace('a', args.s) != ''",
    "args.l.join(args.s) != ''",
    // A pattern from the arguments: compiling and matching is |p| * |s|.
    "args.s.matches(args.pattern)",
    // Growth that multiplies, with no arguments at all.
    "'aaaaaaaa'.replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa').replace('a', 'aaaaaaaa') != ''",
    "[0,1,2,3,4,5,6,7,8,9].all(a, [0,1,2,3,4,5,6,7,8,9].all(b, [0,1,2,3,4,5,6,7,8,9].all(c, [0,1,2,3,4,5,6,7,8,9].all(d, [0,1,2,3,4,5,6,7,8,9].all(e, [0,1,2,3,4,5,6,7,8,9].all(f, [0,1,2,3,4,5,6,7,8,9].all(g, [0,1,2,3,4,5,6,7,8,9].all(h, [0,1,2,3,4,5,6,7,8,9].all(i, [0,1,2,3,4,5,6,7,8,9].all(j, a + b + c + d + e + f + g + h + i + j >= 0))))))))))",
];

/// Conditions people write: linear in the arguments, so they stay.
const ORDINARY: &[&str] = &[
    "has(args.amount) && args.amount <= 100",
    "args.to.endsWith('@clinic.example')",
    "args.recipients.all(r, r.endsWith('@clinic.example'))",
    "size(args.cc.filter(c, !c.endsWith('@clinic.example'))) == 0",
    "args.items.all(i, i.tags.all(t, t != 'secret'))",
    "args.to.lowerAscii().matches('^[a-z.]+@clinic[.]example$')",
    "args.to in ['dr@clinic.example', 'desk@clinic.example']",
    "tool == 'send_email' && agent.name == 'intake'",
    "has(args.query) && args.query.trim().lowerAscii().matches('^(select|with)\\\\b') && !args.query.contains(';')",
    "args.rows.map(r, r.id).exists(id, id == 7)",
];

#[test]
fn a_condition_that_would_run_away_is_refused_when_it_is_compiled() {
    let compiled: Vec<&str> = RUNAWAY
        .iter()
        .copied()
        .filter(|src| Condition::compile(src).is_ok())
        .collect();
    assert!(
        compiled.is_empty(),
        "compiled runaway conditions: {compiled:#?}"
    );
    for src in RUNAWAY {
        let message = Condition::compile(src).unwrap_err().to_string();
        assert!(message.contains("cost"), "{src}: {message}");
    }
}

#[test]
fn ordinary_conditions_stay_within_the_bound() {
    for src in ORDINARY {
        if let Err(e) = Condition::compile(src) {
            panic!("{src}: {e}");
        }
    }
}

#[test]
fn arguments_larger_than_conditions_may_read_fail_closed() {
    let b = bundle(
        vec![
            policy("p")
                .governing("intake")
                .allowing_when(&["write_file"], "args.path.startsWith('/tmp/')")
                .allowing_when(&["clock"], "tool == 'clock'")
                .build(),
        ],
        vec![],
    );
    let huge = json!({"path": "/tmp/x", "content": "x".repeat(2 << 20)});
    let d = decide(&b, "intake", "write_file", huge.clone());
    assert_eq!(
        (d.outcome, d.reason_code),
        (Outcome::Deny, ReasonCode::ToolConditionError),
        "{d:?}"
    );
    // A condition that does not read the arguments does not mind them.
    assert_eq!(
        decide(&b, "intake", "clock", huge).reason_code,
        ReasonCode::ToolAllowedByRule
    );
    // Within the bound, the same call is decided as usual.
    let fine = json!({"path": "/tmp/x", "content": "x".repeat(64 << 10)});
    assert_eq!(
        decide(&b, "intake", "write_file", fine).reason_code,
        ReasonCode::ToolAllowedByRule
    );
}
