//! The text routing scans: everything in a chat request the provider will
//! read, not only the user's last message — messages of every role with
//! all their text parts, a message's `name`, earlier tool calls (names and
//! arguments) and tool results, refusals, the tool definitions (names,
//! descriptions, parameter schemas with their property names), and any
//! other field passed through (`response_format` schemas, vendor fields).
//! Left out: enumerations and identifiers (`role`, `type`, `id`,
//! `tool_call_id`, `model`) and inline binary data (`data:` URLs, base64
//! `data` / `file_data`), which carry no words. Routing normalises the text
//! before matching (`palisade_policy`'s routing).

use crate::providers::openai::{ChatRequest, Content, Message};
use serde_json::Value;

/// Keys whose string values are not text the model reads as words.
const SKIPPED: &[&str] = &[
    "role",
    "type",
    "id",
    "tool_call_id",
    "model",
    "data",
    "file_data",
];

/// Every text of `request` the provider will see, one per line.
pub fn of(request: &ChatRequest) -> String {
    let mut out = String::new();
    for m in request.messages() {
        message(m, &mut out);
    }
    for tool in request.tools.iter().flatten() {
        push(&mut out, &tool.function.name);
        if let Some(d) = &tool.function.description {
            push(&mut out, d);
        }
        if let Some(p) = &tool.function.parameters {
            value(p, &mut out);
        }
        object(&tool.function.rest, &mut out);
        object(&tool.rest, &mut out);
    }
    if let Some(stop) = &request.stop {
        for s in stop.sequences() {
            push(&mut out, &s);
        }
    }
    object(&request.rest, &mut out);
    out
}

fn message(m: &Message, out: &mut String) {
    match &m.content {
        Some(Content::Text(t)) => push(out, t),
        Some(Content::Parts(parts)) => {
            for p in parts {
                if let Some(t) = &p.text {
                    push(out, t);
                }
                object(&p.rest, out);
            }
        }
        Some(Content::Other(v)) => value(v, out),
        None => {}
    }
    for call in m.tool_calls.iter().flatten() {
        push(out, &call.function.name);
        push(out, &call.function.arguments);
        object(&call.function.rest, out);
        object(&call.rest, out);
    }
    object(&m.rest, out);
}

fn push(out: &mut String, text: &str) {
    if !text.is_empty() && !text.starts_with("data:") {
        out.push_str(text);
        out.push('\n');
    }
}

/// An object's keys and values, but the values of [`SKIPPED`] keys.
fn object(map: &serde_json::Map<String, Value>, out: &mut String) {
    for (k, v) in map {
        push(out, k);
        if !SKIPPED.contains(&k.as_str()) {
            value(v, out);
        }
    }
}

fn value(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => push(out, s),
        Value::Array(items) => {
            for item in items {
                value(item, out);
            }
        }
        Value::Object(map) => object(map, out),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_text_the_provider_reads_is_scanned_and_no_identifier_or_binary() {
        let request: ChatRequest = serde_json::from_value(json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "system words"},
                {"role": "user", "name": "patient-jane", "content": [
                    {"type": "text", "text": "part words"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "QUJD", "format": "wav"}}
                ]},
                {"role": "assistant", "content": null, "refusal": "refusal words",
                 "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": "lookup_record", "arguments": "{\"mrn\":\"MRN-1234\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "tool result words"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "send_letter", "description": "description words",
                "parameters": {"type": "object", "properties": {"date_of_birth": {"type": "string", "description": "schema words"}}}
            }}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "format words"}},
            "stop": ["stop words"]
        }))
        .unwrap();
        let text = of(&request);
        for wanted in [
            "system words",
            "patient-jane",
            "part words",
            "refusal words",
            "lookup_record",
            "MRN-1234",
            "tool result words",
            "send_letter",
            "description words",
            "date_of_birth",
            "schema words",
            "format words",
            "stop words",
        ] {
            assert!(text.contains(wanted), "{wanted} is missing from {text:?}");
        }
        for unwanted in [
            "call_1",
            "base64",
            "QUJD",
            "gpt-4o",
            "\nassistant\n",
            "\nfunction\n",
        ] {
            assert!(!text.contains(unwanted), "{unwanted} is in {text:?}");
        }
    }
}
