//! A chat completion request body as the gateway reads it, then what it
//! sends on: OpenAI (passed through), Anthropic and Ollama (translated).
//! A body the gateway accepts always translates, and what goes to an
//! OpenAI-compatible provider reads back as the same request.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use palisade_gateway::api::chat::{parse_request, provider_text};
use palisade_gateway::providers::openai::{ChatRequest, Outgoing};
use palisade_gateway::providers::{anthropic, ollama};
use serde_json::Value;

fn outgoing(request: &ChatRequest) -> Vec<u8> {
    serde_json::to_vec(&Outgoing::new("routed", request)).expect("an accepted request serializes")
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let Ok(request) = parse_request(&headers, data) else {
        return;
    };
    let _ = request.prompt_text();
    let _ = provider_text::of(&request);

    // What an OpenAI-compatible provider gets is itself an acceptable
    // request, and the same one: the same JSON (every number exactly as
    // it was); the order of an object's keys carries no meaning (a content
    // part with a duplicate key is passed on as a plain object, sorted).
    let sent = outgoing(&request);
    let again = parse_request(&headers, &sent).expect("what the gateway sends, it would accept");
    let json = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).expect("the gateway sends JSON");
    assert_eq!(
        json(&outgoing(&again)),
        json(&sent),
        "the request changed on its way through"
    );

    // Anthropic: every assistant tool call becomes a tool_use block.
    let calls: usize = request
        .messages()
        .iter()
        .filter(|m| m.role() == "assistant")
        .map(|m| m.tool_calls.as_ref().map_or(0, Vec::len))
        .sum();
    let body = serde_json::to_value(anthropic::request(&request, "m"))
        .expect("an Anthropic request serializes");
    let uses = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter(|b| b["type"] == "tool_use")
        .count();
    assert_eq!(uses, calls, "tool calls lost or invented for Anthropic");

    // Ollama: every message, every tool call, arguments as JSON objects.
    let body =
        serde_json::to_value(ollama::request(&request, "m")).expect("an Ollama request serializes");
    let messages = body["messages"].as_array().map_or(0, Vec::len);
    assert_eq!(messages, request.messages().len());
    for m in body["messages"].as_array().into_iter().flatten() {
        for c in m["tool_calls"].as_array().into_iter().flatten() {
            assert!(
                matches!(c["function"]["arguments"], Value::Object(_)),
                "Ollama takes arguments as an object: {c}"
            );
        }
    }
});
