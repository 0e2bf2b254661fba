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

use crate::api::chat::gate::gate_stream;
use crate::api::chat::metering::{Meter, metered};
use crate::api::chat::{ChatRouted, gated, route_chat};
use crate::api::routed::{Routed, route_headers, with_palisade};
use crate::api::{json_body, request_id};
use crate::auth::Agent;
use crate::decisions::admit;
use crate::error::GatewayError;
use crate::limits::UnreadBody;
use crate::providers::openai::ChatCompletion;
use crate::providers::{ProviderReply, UpstreamError};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
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
    let request_id = request_id(&headers, None);
    admit(&state, &request_id).await?;
    let ChatRouted {
        served,
        reply,
        mut gate,
        admission,
    } = route_chat(state, snapshot, who, request_id.clone(), &request).await?;
    let routed = Routed::new(&served, &request_id);
    let mut completion = match reply {
        ProviderReply::Stream(chunks) => {
            // The translation reads the usage events: none is taken out.
            let meter = Meter::of(&gate, &served, admission, false);
            let gated = metered(gate_stream(chunks, gate), meter);
            let events = stream::messages_stream(gated, served.model.clone());
            return Ok(answer(
                Body::from_stream(events),
                "text/event-stream",
                &routed,
            ));
        }
        ProviderReply::Completion(c) => c,
        ProviderReply::Verbatim(bytes) => serde_json::from_slice::<ChatCompletion>(&bytes)
            .map_err(|e| GatewayError::Upstream {
                provider: served.provider.clone(),
                request_id: request_id.clone(),
                error: UpstreamError::Invalid(format!("not a chat completion: {e}")),
            })?,
    };
    gated(&mut completion, &mut gate).await?;
    let message = translate::message(&completion, &served.model);
    let bytes = with_palisade(message.to_string().as_bytes(), &routed);
    Ok(answer(Body::from(bytes), "application/json", &routed))
}

/// A response of `content_type` with the route's headers.
fn answer(body: Body, content_type: &'static str, routed: &Routed<'_>) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    route_headers(&mut response, routed);
    response
}
