//! What the fuzz targets share: cutting an input into the chunks a network
//! might deliver, reading SSE the way a client does, a tool-call judge that
//! remembers what it allowed, and the check that nothing else reached the
//! client.

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use palisade_gateway::api::chat::gate::{Decide, tool_name};
use palisade_gateway::providers::openai::ToolCall;
use serde_json::Value;
use std::task::{Context, Poll, Waker};

/// `data` cut into chunks at points chosen by `seed`: 1 to 64 bytes each,
/// so every split position is reachable.
pub fn cut(data: &[u8], seed: u32) -> Vec<Vec<u8>> {
    let mut state = seed | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // xorshift32: cheap, deterministic.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % 64 + 1) as usize;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head.to_vec());
        rest = tail;
    }
    out
}

/// Splits a fuzz input into a split seed and the rest.
pub fn seed_and_body(data: &[u8]) -> Option<(u32, &[u8])> {
    let (seed, body) = data.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*seed), body))
}

/// The chunks as a provider's body stream.
pub fn body_stream(
    chunks: Vec<Vec<u8>>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))))
}

/// Everything a stream yields, in order. The streams here never wait
/// (their sources are in memory), so polling with a no-op waker finishes.
pub fn drain<S: Stream<Item = std::io::Result<Bytes>> + Unpin>(mut stream: S) -> Vec<u8> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match stream.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(Ok(b))) => out.extend_from_slice(&b),
            Poll::Ready(Some(Err(e))) => panic!("an in-memory stream failed: {e}"),
            Poll::Ready(None) => return out,
            Poll::Pending => panic!("an in-memory stream waited"),
        }
    }
}

/// The data of every event in `bytes`, as an SSE client (the WHATWG
/// `EventSource` rules) reads them: a byte-order mark starting the stream
/// is dropped, lines end at CRLF, LF or CR, a blank
/// line ends an event, `data` fields are joined by LF, one space after the
/// colon is dropped. An unterminated last event is not dispatched.
pub fn sse_events(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut rest = text;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            if let Some(d) = data.take() {
                events.push(d);
            }
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(0) => continue,
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        if field == "data" {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    events
}

/// A tool call as compared: what a client runs (its id, type, function
/// name and arguments, custom call), not where the gate put it (`index`,
/// which it renumbers when it releases a streamed call) or fields it drops.
fn shape(call: &Value) -> Value {
    let at = |path: &[&str]| {
        path.iter()
            .try_fold(call, |v, k| v.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    serde_json::json!({
        "id": at(&["id"]),
        "type": at(&["type"]),
        "name": at(&["function", "name"]),
        "arguments": at(&["function", "arguments"]),
        "custom": at(&["custom"]),
    })
}

/// Decides like a policy would — a call is allowed when its name starts
/// with `ok` — and remembers every call it allowed.
#[derive(Debug, Default)]
pub struct Judge {
    /// Every allowed call, as [`shape`]d JSON.
    pub allowed: Vec<Value>,
    /// Every allowed call's `function` object (a legacy `function_call`
    /// is released as that).
    pub allowed_functions: Vec<Value>,
    /// How many calls were decided.
    pub decided: usize,
}

impl Decide for Judge {
    fn decide(&mut self, calls: Vec<ToolCall>) -> (Vec<ToolCall>, Vec<String>) {
        let mut allowed = Vec::new();
        let mut why = Vec::new();
        for call in calls {
            self.decided += 1;
            if tool_name(&call).is_some_and(|n| n.starts_with("ok")) {
                self.allowed.push(shape(&json(&call)));
                self.allowed_functions.push(json(&call.function));
                allowed.push(call);
            } else {
                why.push("withheld".to_owned());
            }
        }
        (allowed, why)
    }
}

fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("the gateway's types serialize")
}

impl Judge {
    /// Panics when `object` (a completion or a chunk, as the client reads
    /// it) carries a tool call — in any choice, as `tool_calls` or a
    /// legacy `function_call`, in a `message` or a `delta` — that this
    /// judge did not allow.
    pub fn check(&self, object: &Value) {
        let Some(choices) = object.get("choices").and_then(Value::as_array) else {
            return;
        };
        for choice in choices {
            for part in ["message", "delta"] {
                let Some(m) = choice.get(part) else { continue };
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for call in calls {
                        assert!(
                            self.allowed.contains(&shape(call)),
                            "a tool call reached the client undecided: {call}\nallowed: {:?}",
                            self.allowed
                        );
                    }
                } else if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
                    panic!("tool_calls that are not an array reached the client: {calls}");
                }
                if let Some(f) = m.get("function_call").filter(|f| !f.is_null()) {
                    assert!(
                        self.allowed_functions.contains(f),
                        "a function_call reached the client undecided: {f}"
                    );
                }
            }
        }
    }

    /// [`Self::check`] on every JSON event of an SSE stream.
    pub fn check_sse(&self, bytes: &[u8]) {
        for data in sse_events(bytes) {
            if let Ok(v) = serde_json::from_str::<Value>(&data) {
                self.check(&v);
            }
        }
    }
}

/// The JSON events of an SSE stream with what differs from run to run
/// (`id`, `created`) blanked, for comparing two runs.
pub fn comparable_events(bytes: &[u8]) -> Vec<Value> {
    sse_events(bytes)
        .into_iter()
        .map(|d| match serde_json::from_str::<Value>(&d) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("id");
                    o.remove("created");
                }
                v
            }
            Err(_) => Value::String(d),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_read_like_a_client_reads_them() {
        let got =
            sse_events("\u{feff}data: a\r\n\r\ndata:b\rdata: c\r\r: note\n\nevent: x\ndata\n\ndata: cut".as_bytes());
        assert_eq!(got, ["a", "b\nc", ""]);
    }

    #[test]
    fn cuts_cover_the_input() {
        let data: Vec<u8> = (0..=255).collect();
        let chunks = cut(&data, 7);
        assert!(chunks.len() > 4);
        assert_eq!(chunks.concat(), data);
    }
}
