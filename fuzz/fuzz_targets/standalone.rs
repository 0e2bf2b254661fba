//! The standalone YAML loader and the policy compiler on any text: an
//! error names a line that exists, and a bundle that compiled survives
//! the trip to a gateway (JSON out and back) unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_crds::standalone::{Source, load};
use palisade_policy::PolicyBundle;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = [Source {
        name: "fuzz.yaml",
        text,
    }];
    let env = |name: &str| (name == "FUZZ_KEY").then(|| "sk-fuzz".to_owned());
    let now = jiff::Timestamp::from_second(1_800_000_000).expect("a valid time");
    match load(&sources, &env, now) {
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "refused without saying why");
            let lines = text.lines().count().max(1);
            for d in &diagnostics {
                assert!(!d.message.is_empty(), "an empty diagnostic: {d:?}");
                if let Some(line) = d.line {
                    assert!(
                        (1..=lines + 1).contains(&line),
                        "line {line} of a {lines}-line file: {d}"
                    );
                }
            }
        }
        Ok((_, compiled, _)) => {
            let json = serde_json::to_string(&compiled.bundle).expect("a bundle serializes");
            let read: PolicyBundle =
                serde_json::from_str(&json).expect("a gateway reads the bundle it was sent");
            let again = serde_json::to_string(&read).expect("serializes");
            assert_eq!(again, json, "the bundle changed on its way to the gateway");
        }
    }
});
