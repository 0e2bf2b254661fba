//! OpenAI's Chat Completions wire format: what agents send, and the shape
//! every provider's answer is seen in. The types model what the gateway
//! reads or writes; every other field lands in a flattened `rest` and is
//! passed through as it came, so a provider's new fields survive. The
//! pieces of a streamed answer (chunks, deltas, tool-call fragments) are in
//! [`chunk`].

mod chunk;

pub use chunk::{ChunkChoice, Delta, FunctionDelta, ToolCallDelta};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Fields the gateway does not act on, passed through.
pub type Rest = Map<String, Value>;

/// A `POST /v1/chat/completions` request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Replaced by the routed model when the request is sent on (see
    /// [`Outgoing`]), so never serialized from here.
    #[serde(default, skip_serializing)]
    pub model: Option<String>,
    /// Required; `None` when the client left it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(flatten)]
    pub rest: Rest,
}

impl ChatRequest {
    pub fn streamed(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for a stream's usage event itself
    /// (`stream_options.include_usage`): if not, the one the gateway asks
    /// for is not passed on.
    pub fn asked_for_usage(&self) -> bool {
        self.rest
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The messages (none when the client sent none).
    pub fn messages(&self) -> &[Message] {
        self.messages.as_deref().unwrap_or_default()
    }

    /// The most tokens to generate (`max_completion_tokens`, else
    /// `max_tokens`).
    pub fn token_limit(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The text the router scans: every message's text, a line each.
    pub fn prompt_text(&self) -> String {
        let mut out = String::new();
        for m in self.messages() {
            for text in m.content.iter().flat_map(Content::texts) {
                out.push_str(text);
                out.push('\n');
            }
        }
        out
    }
}

/// The request as sent on to an OpenAI-compatible provider: the client's,
/// asking for the routed model.
#[derive(Debug, Serialize)]
pub struct Outgoing<'a> {
    pub model: &'a str,
    #[serde(flatten)]
    pub request: &'a ChatRequest,
    /// `{"include_usage": true}` on a stream whose client did not set
    /// `stream_options`: the gateway counts the tokens (and takes the
    /// extra usage event out again, [`ChatRequest::asked_for_usage`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<Value>,
}

impl<'a> Outgoing<'a> {
    /// `request` asking for `model`, with the stream's usage asked for.
    pub fn new(model: &'a str, request: &'a ChatRequest) -> Self {
        let ask = request.streamed() && !request.rest.contains_key("stream_options");
        Self {
            model,
            request,
            stream_options: ask.then(|| serde_json::json!({"include_usage": true})),
        }
    }
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn sequences(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    #[serde(default)]
    pub function: FunctionDefinition,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FunctionDefinition {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema, passed on as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// A message of the conversation, or the one a completion answers with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

impl Message {
    pub fn role(&self) -> &str {
        self.role.as_deref().unwrap_or("")
    }

    /// The message's text (its text parts joined by newlines).
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self.content.iter().flat_map(Content::texts).collect();
        texts.join("\n")
    }

    /// An assistant's answer: `text`, and the tool calls it proposes.
    pub fn assistant(text: String, tool_calls: Vec<ToolCall>) -> Self {
        Self {
            role: Some("assistant".into()),
            content: Some(Content::Text(text)),
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            ..Self::default()
        }
    }
}

/// Message content: text, or parts (of which the gateway reads the text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
    /// Anything else a provider may accept, passed through.
    Other(Value),
}

impl Content {
    fn texts(&self) -> Vec<&str> {
        match self {
            Self::Text(s) => vec![s.as_str()],
            Self::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
            Self::Other(_) => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// A tool call the model proposes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Empty (and then not written) in a `custom` call.
    #[serde(default, skip_serializing_if = "FunctionCall::is_empty")]
    pub function: FunctionCall,
    /// Everything else, a `custom` call's `custom` object included.
    #[serde(flatten)]
    pub rest: Rest,
}

/// A `type: "custom"` tool call's `custom` object: a tool's name and its
/// free-text input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomCall {
    pub name: String,
    #[serde(default)]
    pub input: String,
}

impl ToolCall {
    /// The `custom` object of a `type: "custom"` call, if it reads as one.
    pub fn custom(&self) -> Option<CustomCall> {
        serde_json::from_value(self.rest.get("custom")?.clone()).ok()
    }

    /// A function call with JSON `arguments`.
    pub fn function(id: Option<String>, name: String, arguments: &Value) -> Self {
        Self {
            id,
            kind: Some("function".into()),
            function: FunctionCall {
                name,
                arguments: arguments.to_string(),
                rest: Rest::new(),
            },
            rest: Rest::new(),
        }
    }

    /// The arguments as a JSON object (`{}` when they are not one: the
    /// policy then decides on no arguments).
    pub fn arguments(&self) -> Value {
        serde_json::from_str(&self.function.arguments)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::Object(Map::new()))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    #[serde(default)]
    pub name: String,
    /// JSON text (a provider that sends a JSON value gets it as text).
    #[serde(default, deserialize_with = "json_text")]
    pub arguments: String,
    #[serde(flatten)]
    pub rest: Rest,
}

impl FunctionCall {
    /// Whether it names nothing and carries nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty() && self.arguments.is_empty() && self.rest.is_empty()
    }
}

/// A string as it is; any other JSON value as its text.
fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// A chat completion ([`ChatCompletion`]) or one chunk of a streamed one
/// ([`ChatCompletionChunk`]): the same object, but for its choices.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Completion<C> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default = "Vec::new")]
    pub choices: Vec<C>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// A (not streamed) chat completion.
pub type ChatCompletion = Completion<Choice>;

/// One `chat.completion.chunk` of a streamed completion.
pub type ChatCompletionChunk = Completion<ChunkChoice>;

impl<C> Completion<C> {
    /// A completion object of `model` with one choice, created now.
    fn of(id: Option<String>, object: Option<String>, model: Option<String>, choice: C) -> Self {
        Self {
            id,
            object,
            created: Some(jiff::Timestamp::now().as_second()),
            model,
            choices: vec![choice],
            usage: None,
            rest: Rest::new(),
        }
    }
}

impl ChatCompletion {
    /// A one-choice completion of `model`, created now.
    pub fn new(
        id: String,
        model: &str,
        message: Message,
        finish_reason: &str,
        usage: Usage,
    ) -> Self {
        let choice = Choice {
            index: 0,
            message: Some(message),
            finish_reason: Some(finish_reason.to_owned()),
            rest: Rest::new(),
        };
        Self {
            usage: Some(usage),
            ..Self::of(
                Some(id),
                Some("chat.completion".into()),
                Some(model.to_owned()),
                choice,
            )
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(flatten)]
    pub rest: Rest,
}

impl Usage {
    pub fn of(prompt: u64, completion: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            rest: Rest::new(),
        }
    }

    /// The tokens of two answers together (either may have none).
    pub fn plus(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Self::of(
                a.prompt_tokens + b.prompt_tokens,
                a.completion_tokens + b.completion_tokens,
            )),
            (a, b) => a.or(b),
        }
    }
}

/// Whether raw answer bytes may carry a tool call the gate must decide:
/// they name `tool_calls` or the legacy `function_call`, or hold any
/// `\u` escape, which could spell either key (`"tool\u005fcalls"` is
/// `tool_calls` to every JSON parser, the client's included). Only bytes
/// for which this is false may skip parsing.
pub fn may_hold_tool_calls(bytes: &[u8]) -> bool {
    let mentions = |needle: &[u8]| memchr::memmem::find(bytes, needle).is_some();
    mentions(b"\"tool_calls\"") || mentions(b"\"function_call\"") || mentions(b"\\u")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_pass_through_and_the_routed_model_replaces_the_asked_one() {
        let request: ChatRequest = serde_json::from_value(json!({
            "model": "gpt-4o", "temperature": 0.2, "x_vendor": {"keep": true},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "u"}}], "name": "n"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
            ]
        }))
        .unwrap();
        let sent = serde_json::to_value(Outgoing::new("routed", &request)).unwrap();
        assert_eq!(
            sent,
            json!({
                "model": "routed", "temperature": 0.2, "x_vendor": {"keep": true},
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "u"}}], "name": "n"},
                    {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
                ]
            })
        );
        assert_eq!(request.prompt_text(), "hi\n");
    }

    #[test]
    fn a_stream_asks_for_its_usage_unless_the_client_said_how() {
        let sent = |body: serde_json::Value| {
            let request: ChatRequest = serde_json::from_value(body).unwrap();
            serde_json::to_value(Outgoing::new("m", &request)).unwrap()["stream_options"].clone()
        };
        assert_eq!(
            sent(json!({"messages": [], "stream": true})),
            json!({"include_usage": true})
        );
        assert_eq!(
            sent(
                json!({"messages": [], "stream": true, "stream_options": {"include_usage": false}})
            ),
            json!({"include_usage": false}),
            "the client's choice is passed on as it is"
        );
        assert_eq!(sent(json!({"messages": []})), serde_json::Value::Null);
    }

    #[test]
    fn tool_call_arguments_are_an_object_or_nothing() {
        let call: ToolCall =
            serde_json::from_value(json!({"function": {"name": "f", "arguments": {"a": 1}}}))
                .unwrap();
        assert_eq!(call.function.arguments, r#"{"a":1}"#);
        assert_eq!(call.arguments(), json!({"a": 1}));
        let odd: ToolCall =
            serde_json::from_value(json!({"function": {"name": "f", "arguments": "[1"}})).unwrap();
        assert_eq!(odd.arguments(), json!({}));
    }
}
