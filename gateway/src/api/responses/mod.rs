//! `POST /v1/responses`: OpenAI's Responses API as an ingress, so agents
//! built on it go through Palisade too. The request is read into a chat
//! request ([`translate`]) and takes the chat path ([`crate::api::ingress`]):
//! routed by policy to any provider (chat-completions ones included),
//! audited, every `function_call` the model proposes decided before the
//! client sees it (denied and held ones replaced by an explanation in the
//! text, as in chat); the gated answer is written back as a Response, or
//! as the Responses event stream ([`stream`]). Stateless: no
//! `previous_response_id`, no stored responses.

mod stream;
mod translate;

use crate::api::ingress::Ingress;
use crate::error::GatewayError;
use crate::providers::framing::ByteStream;
use crate::providers::openai::{ChatCompletion, ChatRequest};
use axum::body::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};

/// The Responses API's shapes.
#[derive(Debug)]
pub struct Responses;

impl Ingress for Responses {
    type Request = Map<String, Value>;
    const NAME: &'static str = "a Responses request (a JSON object)";

    fn chat_request(request: &Map<String, Value>) -> Result<ChatRequest, GatewayError> {
        translate::chat_request(request)
    }

    fn answer(completion: &ChatCompletion, model: &str) -> Value {
        translate::answer(completion, model)
    }

    fn stream(
        gated: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        model: String,
    ) -> ByteStream {
        stream::responses_stream(gated, model)
    }
}
