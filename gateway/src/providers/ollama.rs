//! Ollama's native chat API (`POST /api/chat`, NDJSON when streamed),
//! translated from and to OpenAI's shapes.

use super::framing::{self, ByteStream};
use super::openai::{
    self, ChatCompletion, ChatCompletionChunk, Delta, Stop, ToolCall, ToolCallDelta, Usage,
};
use axum::body::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An `/api/chat` request.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<Message>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Options::is_empty")]
    pub options: Options,
    /// OpenAI's tool definitions, which Ollama takes as they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<&'a [openai::Tool]>,
}

/// A message, in a request or an answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<OllamaToolCall>>,
}

/// A tool call: its arguments as a JSON object, not text.
#[derive(Debug, Serialize, Deserialize)]
pub struct OllamaToolCall {
    pub function: OllamaFunction,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OllamaFunction {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

/// Sampling options (OpenAI's names on the right).
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Options {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// `max_completion_tokens`, else `max_tokens`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<u64>,
}

impl Options {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// An `/api/chat` answer, or one line of a streamed one.
#[derive(Debug, Deserialize)]
pub struct ChatResponse {
    #[serde(default)]
    pub message: Message,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub done_reason: Option<String>,
    #[serde(default)]
    pub prompt_eval_count: u64,
    #[serde(default)]
    pub eval_count: u64,
}

/// OpenAI request → `/api/chat` request for `model`.
pub fn request<'a>(req: &'a openai::ChatRequest, model: &'a str) -> ChatRequest<'a> {
    let messages = req
        .messages()
        .iter()
        .map(|m| Message {
            role: m.role.clone(),
            content: m.text(),
            tool_calls: m.tool_calls.as_ref().map(|calls| {
                calls
                    .iter()
                    .map(|c| OllamaToolCall {
                        function: OllamaFunction {
                            name: c.function.name.clone(),
                            arguments: c.arguments(),
                        },
                    })
                    .collect()
            }),
        })
        .collect();
    ChatRequest {
        model,
        messages,
        stream: req.streamed(),
        options: Options {
            temperature: req.temperature,
            top_p: req.top_p,
            seed: req.seed,
            stop: req.stop.clone(),
            num_predict: req.token_limit(),
        },
        tools: req.tools.as_deref(),
    }
}

impl ChatResponse {
    /// The tool calls, as OpenAI names them (`call_0`, `call_1`, ...).
    fn tool_calls(&self) -> Option<Vec<ToolCall>> {
        let calls = self.message.tool_calls.as_ref()?;
        Some(
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    ToolCall::function(
                        Some(format!("call_{i}")),
                        c.function.name.clone(),
                        &c.function.arguments,
                    )
                })
                .collect(),
        )
    }

    fn finish_reason(&self, has_tools: bool) -> &'static str {
        if has_tools {
            "tool_calls"
        } else if self.done_reason.as_deref() == Some("length") {
            "length"
        } else {
            "stop"
        }
    }
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::now_v7().simple())
}

/// `/api/chat` answer → chat completion.
pub fn completion(r: ChatResponse, model: &str) -> ChatCompletion {
    let calls = r.tool_calls();
    let finish = r.finish_reason(calls.is_some());
    let usage = Usage::of(r.prompt_eval_count, r.eval_count);
    let message = openai::Message {
        tool_calls: calls,
        ..openai::Message::assistant(r.message.content, Vec::new())
    };
    ChatCompletion::new(completion_id(), model, message, finish, usage)
}

/// NDJSON stream → OpenAI SSE.
pub fn stream(
    upstream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    model: String,
) -> ByteStream {
    let id = completion_id();
    let mut started = false;
    let mut saw_tools = false;
    framing::translate_lines(upstream, move |line| {
        let mut out = Vec::new();
        let Ok(r) = serde_json::from_str::<ChatResponse>(line) else {
            return out;
        };
        let chunk =
            |delta, finish| framing::event(&ChatCompletionChunk::new(&id, &model, delta, finish));
        if !started {
            started = true;
            out.push(chunk(Delta::start(), None));
        }
        if !r.message.content.is_empty() {
            out.push(chunk(Delta::text(r.message.content.clone()), None));
        }
        if let Some(calls) = r.tool_calls() {
            saw_tools = true;
            let deltas = calls
                .into_iter()
                .enumerate()
                .map(|(i, c)| ToolCallDelta::whole(i, c))
                .collect();
            out.push(chunk(Delta::tool_calls(deltas), None));
        }
        if r.done {
            // The finish carries the counts, as OpenAI's usage.
            let mut finish = ChatCompletionChunk::new(
                &id,
                &model,
                Delta::default(),
                Some(r.finish_reason(saw_tools)),
            );
            finish.usage = Some(Usage::of(r.prompt_eval_count, r.eval_count));
            out.push(framing::event(&finish));
            out.push(Bytes::from_static(framing::DONE));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_map_options_and_tool_arguments() {
        let req: openai::ChatRequest = serde_json::from_value(json!({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\":1}"}}]}], "max_tokens": 50, "temperature": 0.1, "stream": true})).unwrap();
        let body = serde_json::to_value(request(&req, "llama3.1")).unwrap();
        assert_eq!(
            body["options"],
            json!({"num_predict": 50, "temperature": 0.1})
        );
        assert_eq!(
            body["messages"][0]["tool_calls"][0]["function"]["arguments"],
            json!({"a": 1})
        );
        assert_eq!(body["stream"], true);
        let plain: openai::ChatRequest =
            serde_json::from_value(json!({"messages": [{"role": "user", "content": "hi"}]}))
                .unwrap();
        let body = serde_json::to_value(request(&plain, "m")).unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": false})
        );
    }

    #[test]
    fn answers_become_chat_completions() {
        let r: ChatResponse = serde_json::from_value(json!({"message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "sql_query", "arguments": {"q": 1}}}]}, "done": true, "prompt_eval_count": 3, "eval_count": 4})).unwrap();
        let c = serde_json::to_value(completion(r, "llama3.1")).unwrap();
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0],
            json!({"id": "call_0", "type": "function", "function": {"name": "sql_query", "arguments": "{\"q\":1}"}})
        );
        assert_eq!(c["usage"]["total_tokens"], 7);
        assert_eq!(c["model"], "llama3.1");
    }
}
