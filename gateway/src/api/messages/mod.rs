//! `POST /v1/messages`: Anthropic's Messages API as an ingress, so agents
//! built on the `anthropic` SDKs go through Palisade too (the agent's key in
//! `x-api-key`, or `Authorization: Bearer`). The request is read into a
//! chat request ([`translate`]) and takes the chat path: routed by policy
//! to any provider (Anthropic's own, or translated to OpenAI-compatible
//! and Ollama ones), audited, every `tool_use` the model proposes decided
//! before the client sees it (denied and held ones replaced by an
//! explanation in the text, as in chat); the gated answer is written back
//! as a Messages answer, or a Messages stream ([`stream`]).

mod stream;
mod translate;

use crate::api::ingress::Ingress;
use crate::error::GatewayError;
use crate::providers::framing::ByteStream;
use crate::providers::openai::{ChatCompletion, ChatRequest};
use axum::body::Bytes;
use futures_util::Stream;
use translate::MessagesIn;

/// Anthropic's Messages shapes.
#[derive(Debug)]
pub struct Messages;

impl Ingress for Messages {
    type Request = MessagesIn;
    const NAME: &'static str = "a Messages request";

    fn chat_request(request: &MessagesIn) -> Result<ChatRequest, GatewayError> {
        translate::chat_request(request)
    }

    fn answer(completion: &ChatCompletion, model: &str) -> serde_json::Value {
        translate::message(completion, model)
    }

    fn stream(
        gated: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        model: String,
    ) -> ByteStream {
        stream::messages_stream(gated, model)
    }
}
