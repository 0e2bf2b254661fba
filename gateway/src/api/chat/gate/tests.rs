//! The gate's unit tests: streams split anywhere, every choice, legacy and
//! custom call shapes, escaped keys, and whole completions.

use super::*;
use serde_json::json;

/// Allows `search_*` tools and explains the others.
struct AllowSearch;

impl Decide for AllowSearch {
    fn decide(&mut self, calls: Vec<ToolCall>) -> (Vec<ToolCall>, Vec<String>) {
        let (allowed, blocked): (Vec<ToolCall>, Vec<ToolCall>) = calls
            .into_iter()
            .partition(|c| tool_name(c).is_some_and(|n| n.starts_with("search_")));
        let why = blocked
            .iter()
            .map(|c| match tool_name(c) {
                Some(name) => format!("{name:?} was blocked"),
                None => UNREADABLE.to_owned(),
            })
            .collect();
        (allowed, why)
    }
}

/// An OpenAI stream: text, then two tool calls in fragments (one to
/// allow, one to block), the finish, `[DONE]`; one event per element.
fn tool_call_stream() -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let c = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let call = |i: u64, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut c = json!({"index": i, "function": {"arguments": args}});
        if let (Some(id), Some(name)) = (id, name) {
            c["id"] = json!(id);
            c["type"] = json!("function");
            c["function"]["name"] = json!(name);
        }
        chunk(json!({"tool_calls": [c]}), Value::Null)
    };
    vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Let me look. "}), Value::Null),
        call(0, Some("call_0"), Some("search_web"), "{\"q\": \"opening"),
        call(0, None, None, " hours\"}"),
        call(1, Some("call_1"), Some("delete_all"), "{}"),
        chunk(json!({}), json!("tool_calls")),
        "data: [DONE]\n\n".into(),
    ]
}

/// Runs `chunks` through a gate that allows `search_*` tools.
fn gated(chunks: impl IntoIterator<Item = Vec<u8>>) -> String {
    let mut gate = SseGate::default();
    let out: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| gate.push(Bytes::from(c), &mut AllowSearch).to_vec())
        .collect();
    String::from_utf8(out).unwrap()
}

fn sse_data(stream: &str) -> Vec<Value> {
    stream
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or(json!(d)))
        .collect()
}

#[test]
fn streamed_tool_calls_are_gated_however_the_provider_splits_its_events() {
    let events = tool_call_stream();
    let whole = events.concat();
    let expected = gated([whole.clone().into_bytes()]);
    let out = sse_data(&expected);
    // Text passes through; the allowed call is reassembled from its
    // fragments; the blocked one is replaced by its explanation.
    assert_eq!(out[1]["choices"][0]["delta"]["content"], "Let me look. ");
    let calls: Vec<&Value> = out
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "{expected}");
    assert_eq!(
        calls[0],
        &json!({"index": 0, "id": "call_0", "type": "function", "function": {"name": "search_web", "arguments": "{\"q\": \"opening hours\"}"}})
    );
    assert_eq!(out[2]["id"], "c1", "written chunks carry the stream's id");
    assert!(
        expected.contains("\\\"delete_all\\\" was blocked"),
        "{expected}"
    );
    assert_eq!(
        out[out.len() - 2]["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(out.last().unwrap(), &json!("[DONE]"));

    // An event a chunk, as providers send them: the same output.
    assert_eq!(
        gated(events.iter().map(|e| e.clone().into_bytes())),
        expected
    );
    // Split anywhere (mid-event, mid-`"tool_calls"`, between the two
    // newlines): the same output.
    let bytes = whole.as_bytes();
    for at in 1..bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(gated([a.to_vec(), b.to_vec()]), expected, "split at {at}");
    }
    assert_eq!(
        gated(bytes.iter().map(|b| vec![*b])),
        expected,
        "byte by byte"
    );
}

#[test]
fn a_tool_call_key_written_with_a_json_escape_is_gated_too() {
    // `tool\u005fcalls` is `tool_calls` to every JSON parser, the
    // client's included: a hostile provider must not slip a call past
    // the gate by escaping the key.
    let events: Vec<String> = tool_call_stream()
        .into_iter()
        .map(|e| e.replace("\"tool_calls\":[", "\"tool\\u005fcalls\":["))
        .collect();
    assert!(events.iter().any(|e| e.contains("tool\\u005fcalls")));
    let out = gated(events.iter().map(|e| e.clone().into_bytes()));
    assert!(
        !out.contains("\"delete_all\",") && !out.contains("\"name\":\"delete_all\""),
        "the blocked call reached the client: {out}"
    );
    assert!(out.contains("\\\"delete_all\\\" was blocked"), "{out}");
}

#[test]
fn events_without_tool_calls_pass_through_unchanged() {
    let text: String = tool_call_stream()
        .into_iter()
        .filter(|e| !e.contains("tool_calls"))
        .collect();
    assert_eq!(gated([text.clone().into_bytes()]), text);
    assert_eq!(gated(text.as_bytes().chunks(7).map(<[u8]>::to_vec)), text);
}

#[test]
fn a_completion_keeps_its_allowed_calls_and_explains_the_others() {
    let mut completion: ChatCompletion = serde_json::from_value(json!({
        "id": "c", "x_vendor": 1,
        "choices": [
            {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Sure.",
             "tool_calls": [{"id": "1", "type": "function", "function": {"name": "search_web", "arguments": "{}"}},
                            {"id": "2", "type": "function", "function": {"name": "rm", "arguments": "{}"}}]}},
            {"index": 1, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
             "tool_calls": [{"id": "3", "type": "function", "function": {"name": "rm", "arguments": "{}"}}]}}
        ]
    }))
    .unwrap();
    gate_completion(&mut completion, &mut AllowSearch);
    let out = serde_json::to_value(&completion).unwrap();
    assert_eq!(out["x_vendor"], 1);
    let first = &out["choices"][0];
    assert_eq!(first["finish_reason"], "tool_calls");
    assert_eq!(first["message"]["tool_calls"][0]["id"], "1");
    assert_eq!(first["message"]["tool_calls"].as_array().unwrap().len(), 1);
    assert_eq!(first["message"]["content"], "Sure.\n\"rm\" was blocked");
    let second = &out["choices"][1];
    assert_eq!(second["finish_reason"], "stop");
    assert!(second["message"].get("tool_calls").is_none());
    assert_eq!(second["message"]["content"], "\"rm\" was blocked");
}

/// Issue 23, item 1: a legacy `function_call` (the `functions` API) is
/// decided under its name like any tool call, never passed undecided.
#[test]
fn a_legacy_function_call_is_decided_under_its_name() {
    let mut completion: ChatCompletion = serde_json::from_value(json!({
        "id": "c",
        "choices": [
            {"index": 0, "finish_reason": "function_call", "message": {"role": "assistant", "content": null,
             "function_call": {"name": "rm", "arguments": "{}"}}},
            {"index": 1, "finish_reason": "function_call", "message": {"role": "assistant", "content": null,
             "function_call": {"name": "search_web", "arguments": "{ \"q\": 1 }"}}}
        ]
    }))
    .unwrap();
    gate_completion(&mut completion, &mut AllowSearch);
    let out = serde_json::to_value(&completion).unwrap();
    let denied = &out["choices"][0];
    assert!(denied["message"].get("function_call").is_none(), "{out}");
    assert_eq!(denied["message"]["content"], "\"rm\" was blocked");
    assert_eq!(denied["finish_reason"], "stop");
    let allowed = &out["choices"][1];
    assert_eq!(allowed["message"]["function_call"]["name"], "search_web");
    assert_eq!(allowed["finish_reason"], "function_call");
}

/// One streamed chunk of `choices` (`id` c1, model m).
fn chunk_of(choices: Value) -> String {
    let c = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices});
    format!("data: {c}\n\n")
}

/// Every tool call in the output, whatever its choice and shape:
/// `(choice index, name)`.
fn streamed_calls(out: &str) -> Vec<(u64, String)> {
    let mut calls = Vec::new();
    for event in sse_data(out) {
        for choice in event["choices"].as_array().into_iter().flatten() {
            let i = choice["index"].as_u64().unwrap_or(0);
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                calls.push((
                    i,
                    call["function"]["name"].as_str().unwrap_or("").to_owned(),
                ));
            }
            if let Some(f) = choice["delta"].get("function_call") {
                calls.push((i, f["name"].as_str().unwrap_or("").to_owned()));
            }
        }
    }
    calls
}

/// Issue 23, item 1: every choice of a streamed chunk is gated, not
/// only `choices[0]`.
#[test]
fn a_denied_tool_call_in_a_later_streamed_choice_is_withheld() {
    let call = |i: u64, id: &str, name: &str, args: &str| json!({"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": args}});
    let events = [
        chunk_of(json!([
            {"index": 0, "delta": {"role": "assistant", "content": "Hi."}, "finish_reason": null},
            {"index": 1, "delta": {"tool_calls": [call(0, "a", "delete_all", "{\"x\"")]}, "finish_reason": null}
        ])),
        chunk_of(json!([
            {"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}, call(1, "b", "search_web", "{}")]}, "finish_reason": null}
        ])),
        chunk_of(json!([
            {"index": 0, "delta": {}, "finish_reason": "stop"},
            {"index": 1, "delta": {}, "finish_reason": "tool_calls"}
        ])),
        "data: [DONE]\n\n".to_owned(),
    ];
    let out = gated(events.iter().map(|e| e.clone().into_bytes()));
    assert!(
        !out.contains("\"name\":\"delete_all\""),
        "the denied call reached the client: {out}"
    );
    assert_eq!(
        streamed_calls(&out),
        [(1, "search_web".to_owned())],
        "{out}"
    );
    assert!(out.contains("\\\"delete_all\\\" was blocked"), "{out}");
    let explained = sse_data(&out)
        .into_iter()
        .flat_map(|e| e["choices"].as_array().cloned().unwrap_or_default())
        .find(|c| {
            c["delta"]["content"]
                .as_str()
                .is_some_and(|t| t.contains("was blocked"))
        })
        .unwrap();
    assert_eq!(explained["index"], 1, "explained in its own choice: {out}");
    assert!(out.contains("Hi."), "{out}");
    assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
}

/// A choice that finishes only at `[DONE]` is flushed there too.
#[test]
fn a_later_choice_left_open_is_decided_at_done() {
    let events = [
        chunk_of(json!([
            {"index": 2, "delta": {"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "rm", "arguments": "{}"}}]}, "finish_reason": null}
        ])),
        "data: [DONE]\n\n".to_owned(),
    ];
    let out = gated(events.iter().map(|e| e.clone().into_bytes()));
    assert!(streamed_calls(&out).is_empty(), "{out}");
    assert!(out.contains("\\\"rm\\\" was blocked"), "{out}");
}

/// Issue 23, item 1: an event that may hold a tool call but does not
/// read as a chunk ends the stream with an error, never passes raw.
#[test]
fn a_tool_like_event_that_does_not_parse_ends_the_stream_with_an_error() {
    for bad in [
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"tool_calls\": [{\"index\": 0, \"function\": {\"name\": \"delete_all\"}}]}}], \"x\": }\n\n",
        "data: {\"choices\": \"tool_calls\", \"name\": \"delete_all\"}\n\n",
        "data: {\"choices\": [{\"index\": 0, \"delta\": {\"function_call\": 7, \"name\": \"delete_all\"}}]}\n\n",
    ] {
        let events = [
            chunk_of(json!([{"index": 0, "delta": {"content": "Hi."}, "finish_reason": null}])),
            bad.to_owned(),
            chunk_of(json!([{"index": 0, "delta": {"content": "more"}, "finish_reason": "stop"}])),
            "data: [DONE]\n\n".to_owned(),
        ];
        let out = gated(events.iter().map(|e| e.clone().into_bytes()));
        assert!(!out.contains("delete_all"), "passed raw: {out}");
        let data = sse_data(&out);
        let last = data.last().unwrap();
        assert_eq!(last["error"]["code"], "upstream.invalid_response", "{out}");
        assert!(out.contains("Hi."), "{out}");
        assert!(
            !out.contains("more") && !out.contains("[DONE]"),
            "nothing after the error: {out}"
        );
        // However the bytes fall.
        let whole = events.concat();
        assert_eq!(gated(whole.as_bytes().chunks(5).map(<[u8]>::to_vec)), out);
    }
}

/// An escape in ordinary text makes an event worth parsing, not an
/// error: it passes as before.
#[test]
fn an_escape_in_ordinary_content_passes() {
    let events = [
        "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"caf\\u00e9\"},\"finish_reason\":null}]}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ];
    let out = gated(events.iter().map(|e| e.clone().into_bytes()));
    assert_eq!(
        sse_data(&out)[0]["choices"][0]["delta"]["content"],
        "café",
        "{out}"
    );
    assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
}

/// Issue 23, item 1: a streamed legacy `function_call` is decided
/// under its name, withheld and explained when denied.
#[test]
fn a_streamed_legacy_function_call_is_decided_under_its_name() {
    let stream = |name: &str| {
        [
            chunk_of(
                json!([{"index": 0, "delta": {"role": "assistant", "content": null, "function_call": {"name": name, "arguments": ""}}, "finish_reason": null}]),
            ),
            chunk_of(
                json!([{"index": 0, "delta": {"function_call": {"arguments": "{\"q\":"}}, "finish_reason": null}]),
            ),
            chunk_of(
                json!([{"index": 0, "delta": {"function_call": {"arguments": " 1}"}}, "finish_reason": null}]),
            ),
            chunk_of(json!([{"index": 0, "delta": {}, "finish_reason": "function_call"}])),
            "data: [DONE]\n\n".to_owned(),
        ]
    };
    let out = gated(stream("rm").iter().map(|e| e.clone().into_bytes()));
    assert!(
        !out.contains("function_call\":{"),
        "the denied call reached the client: {out}"
    );
    assert!(out.contains("\\\"rm\\\" was blocked"), "{out}");
    let data = sse_data(&out);
    assert_eq!(
        data[data.len() - 2]["choices"][0]["finish_reason"],
        "stop",
        "{out}"
    );

    let out = gated(stream("search_web").iter().map(|e| e.clone().into_bytes()));
    let calls: Vec<Value> = sse_data(&out)
        .into_iter()
        .filter_map(|e| e["choices"][0]["delta"].get("function_call").cloned())
        .collect();
    assert_eq!(
        calls,
        [json!({"name": "search_web", "arguments": "{\"q\": 1}"})],
        "{out}"
    );
    let data = sse_data(&out);
    assert_eq!(
        data[data.len() - 2]["choices"][0]["finish_reason"],
        "function_call"
    );
}

/// Issue 23, item 1: a `type: "custom"` call is decided under its
/// real name (`custom.name`), not `""`; a call of a type the gate
/// does not know cannot be read, so is withheld.
#[test]
fn a_custom_tool_call_is_decided_under_its_name() {
    let mut completion: ChatCompletion = serde_json::from_value(json!({
        "id": "c",
        "choices": [
            {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
             "tool_calls": [{"id": "1", "type": "custom", "custom": {"name": "rm", "input": "-rf /"}},
                            {"id": "2", "type": "custom", "custom": {"name": "search_web", "input": "hours"}},
                            {"id": "3", "type": "mcp", "function": {"name": "search_web", "arguments": "{}"}}]}}
        ]
    }))
    .unwrap();
    gate_completion(&mut completion, &mut AllowSearch);
    let out = serde_json::to_value(&completion).unwrap();
    let message = &out["choices"][0]["message"];
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "2", "type": "custom", "custom": {"name": "search_web", "input": "hours"}}]),
        "{out}"
    );
    assert_eq!(
        message["content"],
        format!("\"rm\" was blocked\n{UNREADABLE}"),
        "{out}"
    );
}

/// The same, streamed: the custom call's fragments are assembled
/// under its name and input.
#[test]
fn a_streamed_custom_tool_call_is_decided_under_its_name() {
    let stream = |name: &str| {
        [
            chunk_of(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "a", "type": "custom", "custom": {"name": name, "input": "open"}}]}, "finish_reason": null}]),
            ),
            chunk_of(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "custom": {"input": "ing hours"}}]}, "finish_reason": null}]),
            ),
            chunk_of(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
            "data: [DONE]\n\n".to_owned(),
        ]
    };
    let out = gated(stream("rm").iter().map(|e| e.clone().into_bytes()));
    assert!(
        !out.contains("\"name\":\"rm\""),
        "the denied call reached the client: {out}"
    );
    assert!(out.contains("\\\"rm\\\" was blocked"), "{out}");
    let out = gated(stream("search_web").iter().map(|e| e.clone().into_bytes()));
    let calls: Vec<Value> = sse_data(&out)
        .into_iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array().cloned())
        .flatten()
        .collect();
    assert_eq!(
        calls,
        [
            json!({"index": 0, "id": "a", "type": "custom", "custom": {"name": "search_web", "input": "opening hours"}})
        ],
        "{out}"
    );
}

/// The bytes the gate passes on for `chunks`.
fn gated_bytes<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut gate = SseGate::default();
    chunks
        .into_iter()
        .flat_map(|c| {
            gate.push(Bytes::copy_from_slice(c), &mut AllowSearch)
                .to_vec()
        })
        .collect()
}

#[test]
fn a_chunk_ending_in_an_extra_blank_line_passes_as_it_would_split() {
    // Found by fuzz/gate_stream (docs/fuzzing.md): a whole chunk ending
    // in `\n\n\n` was passed on at once, while split its last newline
    // waited for the next event; the same bytes must come out however
    // they are split.
    let minimal = b"data: {}\n\n\n".as_slice();
    let found = include_bytes!(
        "../../../../tests/fuzz/gate_stream/crash-3f0b11cf2b34a97a5df0b607eb3784b67ac1f1e8"
    );
    // The fuzzer's input starts with 4 bytes choosing its split points.
    for input in [minimal, &found[4..]] {
        let whole = gated_bytes([input]);
        for at in 1..input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(
                String::from_utf8_lossy(&gated_bytes([a, b])),
                String::from_utf8_lossy(&whole),
                "split at {at}"
            );
        }
    }
}

/// The data of every event as an SSE client reads `stream` (the WHATWG
/// rules the SDKs follow): one byte-order mark starting the stream is
/// dropped; a line ends at CRLF, LF or a lone CR; a blank line ends an
/// event; an unterminated last event is dropped.
fn client_events(stream: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.pop(); // what follows the last line end
    for line in lines {
        if line.is_empty() {
            if !data.is_empty() {
                let joined = data.join("\n");
                events.push(serde_json::from_str(&joined).unwrap_or(json!(joined)));
            }
            data.clear();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    events
}

/// The names of the tool calls a client reads in `stream`.
fn client_call_names(stream: &[u8]) -> Vec<String> {
    client_events(stream)
        .iter()
        .filter_map(|e| e["choices"].as_array())
        .flatten()
        .filter_map(|c| c["delta"]["tool_calls"].as_array())
        .flatten()
        .filter_map(|c| c["function"]["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_provider_ending_lines_with_cr_cannot_slip_a_tool_call_past_the_gate() {
    // Found by fuzz/gate_stream (docs/fuzzing.md): clients end an SSE line
    // at CR, LF or CRLF; the gate only at LF. A `data:` line after a lone
    // CR was no data line to the gate, so the event passed undecided and
    // the client ran the tool call in it.
    let lf = tool_call_stream().concat();
    for ending in ["\r", "\r\n"] {
        let stream = lf.replace('\n', ending);
        let bytes = stream.as_bytes();
        let whole = gated_bytes([bytes]);
        assert_eq!(client_call_names(&whole), ["search_web"], "{ending:?}");
        assert!(
            String::from_utf8_lossy(&whole).contains("\\\"delete_all\\\" was blocked"),
            "{ending:?}"
        );
        for at in 1..bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(gated_bytes([a, b]), whole, "{ending:?} split at {at}");
        }
    }
    let call = chunk_of(json!([{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c", "type": "function", "function": {"name": "delete_all", "arguments": "{}"}}
    ]}, "finish_reason": null}]));
    let hidden = format!("event: x\r{call}");
    // A byte-order mark starting the stream, which a client drops.
    let marked = format!("\u{feff}{call}");
    let found = include_bytes!(
        "../../../../tests/fuzz/gate_stream/crash-2828232644d1ecba2dc1b8f8c4d6d9bcc9ab33f6"
    );
    // The fuzzer's input starts with 4 bytes choosing its split points.
    for input in [hidden.as_bytes(), marked.as_bytes(), &found[4..]] {
        let out = gated_bytes([input]);
        let names = client_call_names(&out);
        assert!(
            names.iter().all(|n| n.starts_with("search_")),
            "a client read the undecided calls {names:?} in {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// Found by the `gate_stream` fuzz target (out of memory): a provider
/// that numbers a tool-call fragment `index: 4000000000` must not make
/// the gate hold four billion calls. An index past the cap ends the
/// stream with an error, as any unreadable tool call does.
#[test]
fn a_tool_call_index_past_the_cap_ends_the_stream_instead_of_allocating() {
    for index in [MAX_CALLS_PER_CHOICE as u64, 4_000_000_000] {
        let events = [
            chunk_of(json!([{"index": 0, "delta": {"content": "Hi."}, "finish_reason": null}])),
            chunk_of(json!([{"index": 0, "delta": {"tool_calls": [
                {"index": index, "id": "a", "type": "function", "function": {"name": "search_web", "arguments": "{}"}}
            ]}, "finish_reason": null}])),
            chunk_of(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
            "data: [DONE]\n\n".to_owned(),
        ];
        let out = gated(events.iter().map(|e| e.clone().into_bytes()));
        assert!(streamed_calls(&out).is_empty(), "index {index}: {out}");
        assert!(
            out.contains("upstream.invalid_response"),
            "index {index}: {out}"
        );
        assert!(!out.contains("[DONE]"), "nothing after the error: {out}");
    }
    // The last index under the cap is still a call.
    let last = MAX_CALLS_PER_CHOICE as u64 - 1;
    let events = [
        chunk_of(json!([{"index": 0, "delta": {"tool_calls": [
            {"index": last, "id": "a", "type": "function", "function": {"name": "search_web", "arguments": "{}"}}
        ]}, "finish_reason": null}])),
        chunk_of(json!([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])),
    ];
    let out = gated(events.iter().map(|e| e.clone().into_bytes()));
    assert!(!out.contains("upstream.invalid_response"), "{out}");
}
