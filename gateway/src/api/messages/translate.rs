//! Anthropic's Messages API as an ingress: a request read into the chat
//! request every provider path takes (system prompt, text, `tool_use` and
//! `tool_result` blocks, tools and `tool_choice`), and a gated completion
//! written back as a Messages answer. Blocks the gateway cannot carry
//! (images, documents, thinking) are refused by name rather than dropped.

use crate::error::GatewayError;
use crate::providers::openai::{ChatCompletion, ChatRequest};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A `POST /v1/messages` request, as far as the gateway reads it.
#[derive(Debug, Deserialize)]
pub struct MessagesIn {
    #[serde(default)]
    pub model: Option<String>,
    pub max_tokens: u64,
    pub messages: Vec<MessageIn>,
    #[serde(default)]
    pub system: Option<Text>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub tools: Option<Vec<ToolIn>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct MessageIn {
    pub role: String,
    pub content: Text,
}

/// A string, or content blocks.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    Blocks(Vec<Value>),
}

#[derive(Debug, Deserialize)]
pub struct ToolIn {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
}

/// `field`: a block type this ingress does not carry, refused by name.
fn unsupported(field: &str, kind: &str) -> GatewayError {
    GatewayError::BadRequest(format!(
        "{field}: content blocks of type {kind:?} are not accepted on this gateway's /v1/messages (text, tool_use and tool_result are)"
    ))
}

/// The text of a block list's `text` blocks (a `tool_result`'s content),
/// or `field`'s error for any other block.
fn texts(text: &Text, field: &str) -> Result<String, GatewayError> {
    match text {
        Text::Plain(s) => Ok(s.clone()),
        Text::Blocks(blocks) => {
            let mut out = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                match b["type"].as_str() {
                    Some("text") => out.push(b["text"].as_str().unwrap_or("")),
                    other => {
                        return Err(unsupported(&format!("{field}[{i}]"), other.unwrap_or("?")));
                    }
                }
            }
            Ok(out.join("\n"))
        }
    }
}

/// The chat request a Messages request stands for.
pub fn chat_request(m: &MessagesIn) -> Result<ChatRequest, GatewayError> {
    let mut messages = Vec::new();
    if let Some(system) = &m.system {
        messages.push(json!({"role": "system", "content": texts(system, "system")?}));
    }
    for (i, message) in m.messages.iter().enumerate() {
        let field = format!("messages[{i}].content");
        let blocks = match &message.content {
            Text::Plain(s) => {
                messages.push(json!({"role": message.role, "content": s}));
                continue;
            }
            Text::Blocks(blocks) => blocks,
        };
        let mut text = Vec::new();
        let mut calls = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("text") => text.push(b["text"].as_str().unwrap_or("").to_owned()),
                Some("tool_use") => calls.push(json!({
                    "id": b["id"], "type": "function",
                    "function": {"name": b["name"], "arguments": b["input"].to_string()},
                })),
                // Tool results come first in a user turn; each is a tool
                // message of its own in chat's shape.
                Some("tool_result") => {
                    let content = match serde_json::from_value::<Text>(b["content"].clone()) {
                        Ok(t) => texts(&t, &format!("{field}[{j}].content"))?,
                        Err(_) => String::new(),
                    };
                    messages.push(json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": content}));
                }
                other => return Err(unsupported(&format!("{field}[{j}]"), other.unwrap_or("?"))),
            }
        }
        if !text.is_empty() || !calls.is_empty() {
            let mut out = json!({"role": message.role, "content": text.join("\n")});
            if !calls.is_empty() {
                out["tool_calls"] = Value::Array(calls);
            }
            messages.push(out);
        }
    }
    let mut chat = Map::new();
    chat.insert("messages".into(), Value::Array(messages));
    chat.insert("max_tokens".into(), json!(m.max_tokens));
    if let Some(model) = &m.model {
        chat.insert("model".into(), json!(model));
    }
    if m.stream == Some(true) {
        chat.insert("stream".into(), json!(true));
    }
    for (key, value) in [("temperature", m.temperature), ("top_p", m.top_p)] {
        if let Some(v) = value {
            chat.insert(key.into(), json!(v));
        }
    }
    if let Some(stop) = &m.stop_sequences {
        chat.insert("stop".into(), json!(stop));
    }
    if let Some(tools) = &m.tools {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| json!({"type": "function", "function": {
                "name": t.name, "description": t.description.clone().unwrap_or_default(),
                "parameters": t.input_schema.clone().unwrap_or_else(|| json!({"type": "object"})),
            }}))
            .collect();
        chat.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &m.tool_choice {
        chat.insert("tool_choice".into(), tool_choice(choice)?);
    }
    serde_json::from_value(Value::Object(chat))
        .map_err(|e| GatewayError::BadRequest(format!("not a Messages request: {e}")))
}

/// Anthropic's `tool_choice` in chat's terms.
fn tool_choice(choice: &Value) -> Result<Value, GatewayError> {
    Ok(match choice["type"].as_str() {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => json!({"type": "function", "function": {"name": choice["name"]}}),
        _ => {
            return Err(GatewayError::BadRequest(
                "tool_choice: use {\"type\": \"auto\"}, {\"type\": \"any\"}, {\"type\": \"none\"} or {\"type\": \"tool\", \"name\": NAME}".into(),
            ));
        }
    })
}

/// Chat's `finish_reason` as Anthropic's `stop_reason`.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("tool_calls") => "tool_use",
        Some("length") => "max_tokens",
        _ => "end_turn",
    }
}

/// A tool-use id for a call that came without one.
pub fn tool_use_id(id: Option<&str>) -> String {
    id.map_or_else(
        || format!("toolu_{}", uuid::Uuid::now_v7().simple()),
        str::to_owned,
    )
}

/// A gated completion as a Messages answer of `model`.
pub fn message(completion: &ChatCompletion, model: &str) -> Value {
    let choice = completion.choices.first();
    let message = choice.and_then(|c| c.message.as_ref());
    let mut content = Vec::new();
    let text = message.map(|m| m.text()).unwrap_or_default();
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message
        .and_then(|m| m.tool_calls.as_ref())
        .into_iter()
        .flatten()
    {
        content.push(json!({
            "type": "tool_use", "id": tool_use_id(call.id.as_deref()),
            "name": call.function.name, "input": call.arguments(),
        }));
    }
    let usage = completion.usage.as_ref();
    json!({
        "id": completion.id.clone().unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple())),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.and_then(|c| c.finish_reason.as_deref())),
        "stop_sequence": null,
        "usage": {
            "input_tokens": usage.map_or(0, |u| u.prompt_tokens),
            "output_tokens": usage.map_or(0, |u| u.completion_tokens),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: Value) -> Result<ChatRequest, GatewayError> {
        chat_request(&serde_json::from_value(body).unwrap())
    }

    #[test]
    fn a_conversation_with_tools_becomes_a_chat_request() {
        let chat = read(json!({
            "model": "claude-x", "max_tokens": 50, "system": [{"type": "text", "text": "be brief"}],
            "stop_sequences": ["END"], "tool_choice": {"type": "tool", "name": "f"},
            "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "checking"}, {"type": "tool_use", "id": "tu1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": [{"type": "text", "text": "42"}]}, {"type": "text", "text": "thanks"}]}
            ]
        }))
        .unwrap();
        let v = serde_json::to_value(&chat).unwrap();
        assert_eq!(chat.model.as_deref(), Some("claude-x"));
        assert_eq!(v["max_tokens"], 50);
        assert_eq!(v["stop"], json!(["END"]));
        assert_eq!(
            v["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        assert_eq!(
            v["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        let m = &v["messages"];
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[1], json!({"role": "user", "content": "hi"}));
        assert_eq!(
            m[2]["tool_calls"][0]["function"],
            json!({"name": "f", "arguments": "{\"a\":1}"})
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "tu1", "content": "42"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "thanks"}));
    }

    #[test]
    fn blocks_it_cannot_carry_are_refused_by_name() {
        let err = read(json!({"max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
        ]}]}))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("messages[0].content[1]: content blocks of type \"image\""),
            "{err}"
        );
        let err =
            read(json!({"max_tokens": 5, "tool_choice": {"type": "sometimes"}, "messages": []}))
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("tool_choice:"), "{err}");
    }
}
