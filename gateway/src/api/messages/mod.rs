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

use crate::api::ingress::{self, Ingress};
use crate::api::json_body;
use crate::auth::Agent;
use crate::error::GatewayError;
use crate::limits::UnreadBody;
use crate::providers::framing::ByteStream;
use crate::providers::openai::ChatCompletion;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::Stream;
use translate::MessagesIn;

/// `POST /v1/messages`.
pub async fn handle(
    State(state): State<AppState>,
    Agent { who, snapshot }: Agent,
    headers: HeaderMap,
    body: UnreadBody,
) -> Result<Response, GatewayError> {
    let body = body.read().await?;
    let incoming: MessagesIn = json_body(&headers, &body, |e| {
        if e.is_syntax() || e.is_eof() {
            format!("the body is not JSON: {e}")
        } else {
            format!("not a Messages request: {e}")
        }
    })?;
    drop(body);
    let request = translate::chat_request(&incoming)?;
    ingress::serve::<Messages>(state, snapshot, who, &headers, request).await
}

/// Anthropic's Messages shapes.
struct Messages;

impl Ingress for Messages {
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
