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
use serde_json::{Map, Value};

/// `POST /v1/responses`.
pub async fn handle(
    State(state): State<AppState>,
    Agent { who, snapshot }: Agent,
    headers: HeaderMap,
    body: UnreadBody,
) -> Result<Response, GatewayError> {
    let body = body.read().await?;
    let incoming: Map<String, Value> = json_body(&headers, &body, |e| {
        if e.is_syntax() || e.is_eof() {
            format!("the body is not JSON: {e}")
        } else {
            format!("not a Responses request (a JSON object): {e}")
        }
    })?;
    drop(body);
    let request = translate::chat_request(&incoming)?;
    ingress::serve::<Responses>(state, snapshot, who, &headers, request).await
}

/// The Responses API's shapes.
struct Responses;

impl Ingress for Responses {
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
