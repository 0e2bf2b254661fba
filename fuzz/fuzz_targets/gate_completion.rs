//! The chat tool-call gate on a whole (not streamed) completion: no tool
//! call, in any choice and any shape, reaches the client unless it was
//! decided and allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_fuzz::Judge;
use palisade_gateway::api::chat::gate::gate_completion;
use palisade_gateway::providers::openai::ChatCompletion;

fuzz_target!(|data: &[u8]| {
    let Ok(mut completion) = serde_json::from_slice::<ChatCompletion>(data) else {
        return;
    };
    let mut judge = Judge::default();
    gate_completion(&mut completion, &mut judge);
    let out = serde_json::to_vec(&completion).expect("a gated completion serializes");
    let read: serde_json::Value = serde_json::from_slice(&out).expect("and reads back");
    judge.check(&read);
});
