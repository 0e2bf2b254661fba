//! A gated chat stream (OpenAI `chat.completion.chunk` events, tool calls
//! already decided) written as Anthropic's Messages stream: `message_start`,
//! a `content_block_start` / `_delta` / `_stop` run per text or `tool_use`
//! block, `message_delta` with the stop reason and usage, `message_stop`;
//! an error event of the gate as Anthropic's `error` event, after which
//! nothing follows.

use super::translate::{stop_reason, tool_use_id};
use crate::api::ingress::{Events, translate_stream};
use crate::providers::framing::ByteStream;
use crate::providers::openai::ChatCompletionChunk;
use axum::body::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};

/// One event in Anthropic's framing: its type as the SSE event name, and
/// as the data's `type`.
fn event(data: Value) -> Bytes {
    let kind = data["type"].as_str().unwrap_or("").to_owned();
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// The block being written: its index among the answer's blocks, and for a
/// tool call its index among the chunk stream's tool calls.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    Text(u64),
    Tool(u64, usize),
}

/// Where the translation stands.
#[derive(Debug, Default)]
struct Translation {
    model: String,
    started: bool,
    open: Option<Open>,
    next_block: u64,
    finish_reason: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
}

impl Translation {
    fn start(&mut self, id: Option<&str>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = id.map_or_else(
            || format!("msg_{}", uuid::Uuid::now_v7().simple()),
            str::to_owned,
        );
        out.push(event(json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }})));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some(Open::Text(i) | Open::Tool(i, _)) = self.open.take() {
            out.push(event(json!({"type": "content_block_stop", "index": i})));
        }
    }

    fn open(&mut self, block: Value, open: impl FnOnce(u64) -> Open, out: &mut Vec<Bytes>) -> u64 {
        self.close(out);
        let i = self.next_block;
        self.next_block += 1;
        self.open = Some(open(i));
        out.push(event(
            json!({"type": "content_block_start", "index": i, "content_block": block}),
        ));
        i
    }

    fn chunk(&mut self, chunk: ChatCompletionChunk, out: &mut Vec<Bytes>) {
        self.start(chunk.id.as_deref(), out);
        if let Some(u) = &chunk.usage {
            self.input_tokens = u.prompt_tokens;
            self.output_tokens = u.completion_tokens;
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return;
        };
        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
            let i = match self.open {
                Some(Open::Text(i)) => i,
                _ => self.open(json!({"type": "text", "text": ""}), Open::Text, out),
            };
            out.push(event(json!({"type": "content_block_delta", "index": i,
                "delta": {"type": "text_delta", "text": text}})));
        }
        for call in choice.delta.tool_calls.into_iter().flatten() {
            let function = call.function.unwrap_or_default();
            let i = match self.open {
                Some(Open::Tool(i, n)) if n == call.index && call.id.is_none() => i,
                _ => self.open(
                    json!({"type": "tool_use", "id": tool_use_id(call.id.as_deref()),
                        "name": function.name.clone().unwrap_or_default(), "input": {}}),
                    |i| Open::Tool(i, call.index),
                    out,
                ),
            };
            if let Some(arguments) = function.arguments.filter(|a| !a.is_empty()) {
                out.push(event(json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": arguments}})));
            }
        }
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
    }

    fn done(&mut self, out: &mut Vec<Bytes>) {
        self.start(None, out);
        self.close(out);
        out.push(event(json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish_reason.as_deref()), "stop_sequence": null},
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}})));
        out.push(event(json!({"type": "message_stop"})));
    }
}

impl Events for Translation {
    fn chunk(&mut self, chunk: ChatCompletionChunk, out: &mut Vec<Bytes>) {
        Translation::chunk(self, chunk, out);
    }

    fn done(&mut self, out: &mut Vec<Bytes>) {
        Translation::done(self, out);
    }

    fn error(&mut self, error: &Value, out: &mut Vec<Bytes>) {
        let message = error["message"].as_str().unwrap_or("the stream failed");
        out.push(event(json!({"type": "error", "error": {
            "type": "api_error", "message": message, "code": error["code"],
        }})));
    }
}

/// The Messages stream of the gated chat stream `gated`, answering as
/// `model`.
pub fn messages_stream(
    gated: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    model: String,
) -> ByteStream {
    let t = Translation {
        model,
        ..Translation::default()
    };
    translate_stream(gated, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::ingress::testing::{chat_stream, chunk, events_of};

    async fn translate(lines: &[Value]) -> Vec<Value> {
        events_of(messages_stream(chat_stream(lines), "m".into())).await
    }

    #[tokio::test]
    async fn text_then_a_tool_call_become_two_blocks() {
        let events = translate(&[
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Let me "}), Value::Null),
            chunk(json!({"content": "look."}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "id": "t1", "type": "function", "function": {"name": "sql_query", "arguments": "{\"q\":"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}), Value::Null),
            chunk(json!({}), json!("tool_calls")),
        ])
        .await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[0]["message"]["id"], "c1");
        assert_eq!(
            events[5]["content_block"],
            json!({"type": "tool_use", "id": "t1", "name": "sql_query", "input": {}})
        );
        assert_eq!(events[5]["index"], 1);
        assert_eq!(
            events[7]["delta"],
            json!({"type": "input_json_delta", "partial_json": "1}"})
        );
        assert_eq!(events[9]["delta"]["stop_reason"], "tool_use");
    }

    #[tokio::test]
    async fn an_error_event_ends_the_stream() {
        let events = translate(&[
            chunk(json!({"content": "a"}), Value::Null),
            json!({"error": {"message": "withheld", "code": "upstream.invalid_response"}}),
        ])
        .await;
        let last = events.last().unwrap();
        assert_eq!(last["type"], "error");
        assert_eq!(last["error"]["code"], "upstream.invalid_response");
        assert!(!events.iter().any(|e| e["type"] == "message_stop"));
    }
}
