//! Anthropic's Messages API (`POST /v1/messages`, SSE when streamed),
//! translated from and to OpenAI's shapes.

use super::framing::{self, ByteStream};
use super::openai::{self, ChatCompletion, ChatCompletionChunk, Delta, ToolCall, ToolCallDelta};
use axum::body::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The API version the gateway speaks (`anthropic-version`).
pub const VERSION: &str = "2023-06-01";
/// `max_tokens` is required by Anthropic; used when the request sets none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// A Messages request.
#[derive(Debug, Serialize)]
pub struct MessagesRequest<'a> {
    pub model: &'a str,
    pub max_tokens: u64,
    pub messages: Vec<Message>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolDefinition>>,
}

#[derive(Debug, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: MessageContent,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<Block>),
}

/// A content block of a request.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: Option<String>,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: Option<String>,
        content: String,
    },
}

#[derive(Debug, Serialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    /// The tool's JSON Schema, passed on as it is.
    pub input_schema: Value,
}

/// A Messages answer.
#[derive(Debug, Deserialize)]
pub struct MessagesResponse {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub content: Vec<ResponseBlock>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: ResponseUsage,
}

/// A content block of an answer.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

/// Anthropic's counts: `input_tokens` leaves out what was read from or
/// written to the prompt cache, which OpenAI's `prompt_tokens` includes.
#[derive(Debug, Default, Deserialize)]
pub struct ResponseUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
}

impl ResponseUsage {
    /// In OpenAI's terms: all input tokens, of which `cached_tokens` read
    /// from the cache.
    pub fn openai(&self) -> openai::Usage {
        let input =
            self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens;
        let mut usage = openai::Usage::of(input, self.output_tokens);
        if self.cache_read_input_tokens > 0 {
            usage.rest.insert(
                "prompt_tokens_details".into(),
                json!({"cached_tokens": self.cache_read_input_tokens}),
            );
        }
        usage
    }
}

/// One event of a streamed answer (those the gateway translates).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockStart {
        #[serde(default)]
        index: u64,
        content_block: ResponseBlock,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u64,
        delta: BlockDelta,
    },
    MessageDelta {
        delta: MessageDelta,
        /// The answer's output tokens (Anthropic counts them here).
        #[serde(default)]
        usage: Option<ResponseUsage>,
    },
    MessageStop,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct StartedMessage {
    #[serde(default)]
    pub id: Option<String>,
    /// The input tokens (and cache counts), known at the start.
    #[serde(default)]
    pub usage: ResponseUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct MessageDelta {
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// OpenAI request → Messages request for `model`: system messages become
/// `system`, tool results user messages, tool calls `tool_use` blocks.
pub fn request<'a>(req: &'a openai::ChatRequest, model: &'a str) -> MessagesRequest<'a> {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in req.messages() {
        match m.role.as_deref().unwrap_or("user") {
            "system" | "developer" => system.push(m.text()),
            "tool" => messages.push(Message {
                role: "user",
                content: MessageContent::Blocks(vec![Block::ToolResult {
                    tool_use_id: m.tool_call_id.clone(),
                    content: m.text(),
                }]),
            }),
            "assistant" => {
                let text = m.text();
                let text = (!text.is_empty()).then_some(Block::Text { text });
                let calls = m.tool_calls.iter().flatten().map(|c| Block::ToolUse {
                    id: c.id.clone(),
                    name: c.function.name.clone(),
                    input: c.arguments(),
                });
                messages.push(Message {
                    role: "assistant",
                    content: MessageContent::Blocks(text.into_iter().chain(calls).collect()),
                });
            }
            _ => messages.push(Message {
                role: "user",
                content: MessageContent::Text(m.text()),
            }),
        }
    }
    let tools = req.tools.as_ref().map(|tools| {
        tools
            .iter()
            .map(|t| ToolDefinition {
                name: t.function.name.clone(),
                description: t.function.description.clone().unwrap_or_default(),
                input_schema: t
                    .function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object"})),
            })
            .collect()
    });
    MessagesRequest {
        model,
        max_tokens: req.token_limit().unwrap_or(DEFAULT_MAX_TOKENS),
        messages,
        stream: req.streamed(),
        system: (!system.is_empty()).then(|| system.join("\n")),
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences: req.stop.as_ref().map(openai::Stop::sequences),
        tools,
    }
}

fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        _ => "stop",
    }
}

/// Messages answer → chat completion.
pub fn completion(r: MessagesResponse, model: &str) -> ChatCompletion {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in r.content {
        match block {
            ResponseBlock::Text { text: t } => text.push_str(&t),
            ResponseBlock::ToolUse { id, name, input } => {
                calls.push(ToolCall::function(id, name, &input));
            }
            ResponseBlock::Other => {}
        }
    }
    let finish = finish_reason(r.stop_reason.as_deref().unwrap_or(""));
    let usage = r.usage.openai();
    let mut completion = ChatCompletion::new(
        String::new(),
        model,
        openai::Message::assistant(text, calls),
        finish,
        usage,
    );
    completion.id = r.id;
    completion
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::now_v7().simple())
}

/// Messages SSE → OpenAI SSE.
pub fn stream(
    upstream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    model: String,
) -> ByteStream {
    let mut id = completion_id();
    // Content block index → OpenAI tool-call index.
    let mut tool_index: Vec<(u64, usize)> = Vec::new();
    // Input counts from the start, output counts from the end.
    let mut usage = ResponseUsage::default();
    framing::translate_lines(upstream, move |line| {
        let Some(event) =
            framing::data_of(line).and_then(|data| serde_json::from_str::<StreamEvent>(data).ok())
        else {
            return Vec::new();
        };
        let chunk = |id: &str, delta, finish| {
            framing::event(&ChatCompletionChunk::new(id, &model, delta, finish))
        };
        match event {
            StreamEvent::MessageStart { message } => {
                if let Some(mid) = message.id {
                    id = mid;
                }
                usage = message.usage;
                vec![chunk(&id, Delta::start(), None)]
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block: ResponseBlock::ToolUse { id: call, name, .. },
            } => {
                let i = tool_index.len();
                tool_index.push((index, i));
                let start = ToolCallDelta::start(i, call, name);
                vec![chunk(&id, Delta::tool_calls(vec![start]), None)]
            }
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => vec![chunk(&id, Delta::text(text), None)],
                BlockDelta::InputJsonDelta { partial_json } => tool_index
                    .iter()
                    .find(|(b, _)| *b == index)
                    .map(|&(_, i)| {
                        let more = ToolCallDelta::arguments(i, partial_json);
                        chunk(&id, Delta::tool_calls(vec![more]), None)
                    })
                    .into_iter()
                    .collect(),
                BlockDelta::Other => Vec::new(),
            },
            StreamEvent::MessageDelta { delta, usage: end } => {
                if let Some(end) = end {
                    usage.output_tokens = end.output_tokens;
                }
                // The finish carries the counts, as OpenAI's usage.
                let finish = delta.stop_reason.map(|r| {
                    let mut c = ChatCompletionChunk::new(
                        &id,
                        &model,
                        Delta::default(),
                        Some(finish_reason(&r)),
                    );
                    c.usage = Some(usage.openai());
                    framing::event(&c)
                });
                finish.into_iter().collect()
            }
            StreamEvent::MessageStop => vec![Bytes::from_static(framing::DONE)],
            _ => Vec::new(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_take_system_tools_and_tool_results_apart() {
        let req: openai::ChatRequest = serde_json::from_value(json!({
            "model": "x", "max_tokens": 100, "temperature": 0.3, "stop": "END",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
        }))
        .unwrap();
        let body = serde_json::to_value(request(&req, "claude-x")).unwrap();
        assert_eq!(body["system"], "be brief");
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(
            body["messages"][0],
            json!({"role": "user", "content": "hi"})
        );
        assert_eq!(
            body["messages"][1]["content"][0],
            json!({"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}})
        );
        assert_eq!(
            body["messages"][2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "t1", "content": "42"})
        );
        assert_eq!(
            body["tools"][0],
            json!({"name": "f", "description": "d", "input_schema": {"type": "object"}})
        );
    }

    #[test]
    fn answers_become_chat_completions() {
        let r: MessagesResponse = serde_json::from_value(json!({"id": "msg_1", "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "tu1", "name": "sql_query", "input": {"q": 1}}, {"type": "thinking", "thinking": "..."}],
                       "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 10}})).unwrap();
        let c = serde_json::to_value(completion(r, "claude-x")).unwrap();
        assert_eq!(c["id"], "msg_1");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"],
            json!({"name": "sql_query", "arguments": "{\"q\":1}"})
        );
        assert_eq!(c["usage"]["total_tokens"], 17);
        assert_eq!(
            c["usage"]["prompt_tokens"], 13,
            "cached tokens are input too"
        );
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 10);
    }
}
