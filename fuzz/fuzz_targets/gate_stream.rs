//! The chat tool-call gate on an OpenAI SSE stream, split anywhere: no
//! tool call reaches the client (as an SSE client reads the output)
//! unless it was decided and allowed, and how the bytes are split never
//! changes what comes out.
#![no_main]

use axum::body::Bytes;
use libfuzzer_sys::fuzz_target;
use palisade_fuzz::{Judge, cut, seed_and_body};
use palisade_gateway::api::chat::gate::SseGate;

fn gated(chunks: Vec<Vec<u8>>) -> (Vec<u8>, Judge) {
    let mut gate = SseGate::default();
    let mut judge = Judge::default();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&gate.push(Bytes::from(chunk), &mut judge));
    }
    (out, judge)
}

fuzz_target!(|data: &[u8]| {
    let Some((seed, body)) = seed_and_body(data) else {
        return;
    };
    let (whole, judge) = gated(vec![body.to_vec()]);
    judge.check_sse(&whole);
    let (split, judge) = gated(cut(body, seed));
    judge.check_sse(&split);
    assert!(
        whole == split,
        "splitting the stream changed the output:\nwhole: {:?}\nsplit: {:?}",
        String::from_utf8_lossy(&whole),
        String::from_utf8_lossy(&split)
    );
});
