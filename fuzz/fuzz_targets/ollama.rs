//! Ollama's answers translated to OpenAI's shapes: an `/api/chat` answer
//! keeps every tool call; its NDJSON stream, split anywhere, translates
//! to the same events as unsplit; and either, gated, lets no undecided
//! tool call through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_fuzz::{Judge, body_stream, comparable_events, cut, drain, seed_and_body};
use palisade_gateway::api::chat::gate::{SseGate, gate_completion};
use palisade_gateway::providers::ollama::{self, ChatResponse};

fn translated(chunks: Vec<Vec<u8>>) -> Vec<u8> {
    drain(ollama::stream(body_stream(chunks), "m".into()))
}

fuzz_target!(|data: &[u8]| {
    let Some((seed, body)) = seed_and_body(data) else {
        return;
    };
    if let Ok(answer) = serde_json::from_slice::<ChatResponse>(body) {
        let sent = answer.message.tool_calls.as_ref().map_or(0, Vec::len);
        let mut completion = ollama::completion(answer, "m");
        let calls = completion.choices[0]
            .message
            .as_ref()
            .and_then(|m| m.tool_calls.as_ref())
            .map_or(0, Vec::len);
        assert_eq!(calls, sent, "tool calls lost or invented");
        let mut judge = Judge::default();
        gate_completion(&mut completion, &mut judge);
        assert_eq!(judge.decided, sent, "every tool call is decided");
        judge.check(&serde_json::to_value(&completion).expect("serializes"));
    }

    let whole = translated(vec![body.to_vec()]);
    let split = translated(cut(body, seed));
    assert_eq!(
        comparable_events(&whole),
        comparable_events(&split),
        "splitting the stream changed the translation"
    );
    let mut judge = Judge::default();
    let gated = SseGate::default().push(whole.into(), &mut judge);
    judge.check_sse(&gated);
});
