//! A streamed chat completion's pieces: each `chat.completion.chunk`'s
//! choice ([`ChunkChoice`]), what it adds to the message ([`Delta`]), and
//! the fragments a tool call arrives in ([`ToolCallDelta`],
//! [`FunctionDelta`]), which the gate reassembles before deciding.

use super::{ChatCompletion, ChatCompletionChunk, FunctionCall, Rest, ToolCall};
use serde::{Deserialize, Serialize};

impl ChatCompletionChunk {
    /// A chunk of stream `id` of `model`, created now: one choice with
    /// `delta`, finishing for `finish_reason` if given.
    pub fn new(id: &str, model: &str, delta: Delta, finish_reason: Option<&str>) -> Self {
        let choice = ChunkChoice::of(delta, finish_reason.map(str::to_owned));
        Self::of(
            Some(id.to_owned()),
            Some("chat.completion.chunk".into()),
            Some(model.to_owned()),
            choice,
        )
    }

    /// This chunk's id, object, created and model, with one choice: `delta`.
    pub fn with_delta(&self, delta: Delta, finish_reason: Option<String>) -> Self {
        Self {
            created: self.created,
            ..Self::of(
                self.id.clone(),
                self.object.clone(),
                self.model.clone(),
                ChunkChoice::of(delta, finish_reason),
            )
        }
    }
}

impl ChatCompletion {
    /// The completion as a stream's chunks (its first choice): role and
    /// text, the tool calls whole, the finish, and the usage when it has
    /// one (`[DONE]` not included).
    pub fn into_chunks(self) -> Vec<ChatCompletionChunk> {
        let template = ChatCompletionChunk {
            id: self.id,
            object: Some("chat.completion.chunk".into()),
            created: self.created,
            model: self.model,
            ..ChatCompletionChunk::default()
        };
        let choice = self.choices.into_iter().next().unwrap_or_default();
        let message = choice.message.unwrap_or_default();
        let first = Delta {
            content: Some(message.text()),
            ..Delta::start()
        };
        let mut out = vec![template.with_delta(first, None)];
        if let Some(calls) = message.tool_calls.filter(|c| !c.is_empty()) {
            let calls = calls
                .into_iter()
                .enumerate()
                .map(|(i, c)| ToolCallDelta::whole(i, c))
                .collect();
            out.push(template.with_delta(Delta::tool_calls(calls), None));
        }
        let finish = choice.finish_reason.unwrap_or_else(|| "stop".into());
        out.push(template.with_delta(Delta::default(), Some(finish)));
        if let Some(usage) = self.usage {
            out.push(ChatCompletionChunk {
                usage: Some(usage),
                ..template
            });
        }
        out
    }
}

impl ChunkChoice {
    fn of(delta: Delta, finish_reason: Option<String>) -> Self {
        Self {
            index: 0,
            delta,
            finish_reason,
            rest: Rest::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// What a chunk adds to the message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(flatten)]
    pub rest: Rest,
}

impl Delta {
    /// The first chunk of an answer: the assistant speaks.
    pub fn start() -> Self {
        Self {
            role: Some("assistant".into()),
            content: Some(String::new()),
            ..Self::default()
        }
    }

    pub fn text(text: String) -> Self {
        Self {
            content: Some(text),
            ..Self::default()
        }
    }

    pub fn tool_calls(calls: Vec<ToolCallDelta>) -> Self {
        Self {
            tool_calls: Some(calls),
            ..Self::default()
        }
    }

    /// Whether it adds nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A fragment of a streamed tool call: the first names it, the next ones
/// add to its arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    #[serde(default)]
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
    #[serde(flatten)]
    pub rest: Rest,
}

impl ToolCallDelta {
    /// A whole call as the `index`th fragment.
    pub fn whole(index: usize, call: ToolCall) -> Self {
        Self {
            index,
            id: call.id,
            kind: call.kind,
            function: (!call.function.is_empty()).then_some(FunctionDelta {
                name: Some(call.function.name),
                arguments: Some(call.function.arguments),
            }),
            rest: call.rest,
        }
    }

    /// The `index`th call's start: its id and name, no arguments yet.
    pub fn start(index: usize, id: Option<String>, name: String) -> Self {
        Self::whole(
            index,
            ToolCall {
                id,
                kind: Some("function".into()),
                function: FunctionCall {
                    name,
                    ..FunctionCall::default()
                },
                rest: Rest::new(),
            },
        )
    }

    /// More of the `index`th call's arguments.
    pub fn arguments(index: usize, arguments: String) -> Self {
        Self {
            index,
            function: Some(FunctionDelta {
                name: None,
                arguments: Some(arguments),
            }),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}
