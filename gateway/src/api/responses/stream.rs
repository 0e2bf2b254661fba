//! A gated chat stream (tool calls already decided) written as the
//! Responses API's event stream: `response.created`, then per output item
//! `response.output_item.added`, its text (`response.content_part.added`,
//! `response.output_text.delta`/`.done`, `response.content_part.done`) or
//! its arguments (`response.function_call_arguments.delta`/`.done`),
//! `response.output_item.done`, and `response.completed` with the whole
//! Response; an error event of the gate as an `error` event, after which
//! nothing follows. Every event has its `sequence_number`.

use super::translate::{call_item, id, message_item, response, usage};
use crate::api::ingress::{Events, translate_stream};
use crate::providers::framing::ByteStream;
use crate::providers::openai::ChatCompletionChunk;
use crate::providers::usage::Tokens;
use axum::body::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};

/// The output item being written.
#[derive(Debug)]
enum Open {
    Text {
        item: String,
        text: String,
    },
    Call {
        item: String,
        call_id: String,
        name: String,
        arguments: String,
        index: usize,
    },
}

#[derive(Debug, Default)]
struct Translation {
    id: String,
    model: String,
    sequence: u64,
    started: bool,
    open: Option<Open>,
    output: Vec<Value>,
    finish_reason: Option<String>,
    tokens: Tokens,
}

impl Translation {
    fn event(&mut self, kind: &str, mut data: Value, out: &mut Vec<Bytes>) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push(Bytes::from(format!("event: {kind}\ndata: {data}\n\n")));
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let r = response(
            &self.id,
            &self.model,
            Vec::new(),
            "in_progress",
            Value::Null,
        );
        self.event("response.created", json!({"response": r}), out);
        self.event("response.in_progress", json!({"response": r}), out);
    }

    /// Adds an output item; its index.
    fn add(&mut self, open: Open, item: Value, out: &mut Vec<Bytes>) -> usize {
        self.close(out);
        let index = self.output.len();
        self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
            out,
        );
        self.open = Some(open);
        index
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        let index = self.output.len();
        match self.open.take() {
            None => {}
            Some(Open::Text { item, text }) => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                let at = json!({"item_id": item, "output_index": index, "content_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                self.event("response.output_text.done", done, out);
                let mut part_done = at;
                part_done["part"] = part;
                self.event("response.content_part.done", part_done, out);
                let whole = message_item(&item, &text, "completed");
                self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": whole}),
                    out,
                );
                self.output.push(whole);
            }
            Some(Open::Call {
                item,
                call_id,
                name,
                arguments,
                ..
            }) => {
                self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": item, "output_index": index, "arguments": arguments}),
                    out,
                );
                let whole = call_item(&item, &call_id, &name, &arguments, "completed");
                self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": whole}),
                    out,
                );
                self.output.push(whole);
            }
        }
    }

    fn chunk(&mut self, chunk: ChatCompletionChunk, out: &mut Vec<Bytes>) {
        self.start(out);
        if let Some(u) = &chunk.usage {
            self.tokens = Tokens::of(u);
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return;
        };
        if let Some(delta) = choice.delta.content.filter(|t| !t.is_empty()) {
            if !matches!(self.open, Some(Open::Text { .. })) {
                let item = id("msg");
                let mut empty = message_item(&item, "", "in_progress");
                empty["content"] = json!([]);
                let index = self.add(
                    Open::Text {
                        item: item.clone(),
                        text: String::new(),
                    },
                    empty,
                    out,
                );
                let part = json!({"type": "output_text", "text": "", "annotations": []});
                self.event(
                    "response.content_part.added",
                    json!({"item_id": item, "output_index": index, "content_index": 0, "part": part}),
                    out,
                );
            }
            if let Some(Open::Text { item, text }) = &mut self.open {
                text.push_str(&delta);
                let data = json!({"item_id": item, "output_index": self.output.len(), "content_index": 0, "delta": delta});
                self.event("response.output_text.delta", data, out);
            }
        }
        for call in choice.delta.tool_calls.into_iter().flatten() {
            let function = call.function.unwrap_or_default();
            let same = matches!(&self.open, Some(Open::Call { index, .. }) if *index == call.index && call.id.is_none());
            if !same {
                let item = id("fc");
                let call_id = call.id.clone().unwrap_or_else(|| id("call"));
                let name = function.name.clone().unwrap_or_default();
                let empty = call_item(&item, &call_id, &name, "", "in_progress");
                let open = Open::Call {
                    item,
                    call_id,
                    name,
                    arguments: String::new(),
                    index: call.index,
                };
                self.add(open, empty, out);
            }
            let more = function.arguments.unwrap_or_default();
            if let (
                Some(Open::Call {
                    item, arguments, ..
                }),
                false,
            ) = (&mut self.open, more.is_empty())
            {
                arguments.push_str(&more);
                let data =
                    json!({"item_id": item, "output_index": self.output.len(), "delta": more});
                self.event("response.function_call_arguments.delta", data, out);
            }
        }
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
    }

    fn done(&mut self, out: &mut Vec<Bytes>) {
        self.start(out);
        self.close(out);
        let status = match self.finish_reason.as_deref() {
            Some("length") => "incomplete",
            _ => "completed",
        };
        let t = self.tokens;
        let r = response(
            &self.id,
            &self.model,
            std::mem::take(&mut self.output),
            status,
            usage(t.input, t.output, t.cached),
        );
        self.event("response.completed", json!({"response": r}), out);
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
        let data = json!({"code": error["code"], "message": error["message"], "param": null});
        self.event("error", data, out);
    }
}

/// The Responses event stream of the gated chat stream `gated`, answering
/// as `model`.
pub fn responses_stream(
    gated: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    model: String,
) -> ByteStream {
    let t = Translation {
        id: id("resp"),
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
        events_of(responses_stream(chat_stream(lines), "m".into())).await
    }

    #[tokio::test]
    async fn text_then_a_call_are_two_items_numbered_in_order() {
        let events = translate(&[
            chunk(json!({"role": "assistant", "content": "Let me "}), Value::Null),
            chunk(json!({"content": "look."}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "sql_query", "arguments": "{\"q\":"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}), Value::Null),
            chunk(json!({}), json!("tool_calls")),
            json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
        ])
        .await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let numbers: Vec<u64> = events
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (0..15).collect::<Vec<_>>());
        let done = &events[14]["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Let me look.");
        assert_eq!(done["output"][1]["call_id"], "c1");
        assert_eq!(done["output"][1]["arguments"], "{\"q\":1}");
        assert_eq!(done["usage"]["total_tokens"], 7);
    }

    #[tokio::test]
    async fn an_error_event_ends_the_stream() {
        let events = translate(&[
            chunk(json!({"content": "a"}), Value::Null),
            json!({"error": {"message": "withheld", "code": "upstream.invalid_response"}}),
        ])
        .await;
        let last = events.last().unwrap();
        assert_eq!(
            (last["type"].as_str(), last["code"].as_str()),
            (Some("error"), Some("upstream.invalid_response"))
        );
        assert!(!events.iter().any(|e| e["type"] == "response.completed"));
    }
}
