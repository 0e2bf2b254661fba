//! `POST /v1/embeddings`, OpenAI-compatible: routed by policy like a chat
//! request (the input is what the routing rules read, so sensitive text
//! stays on a local provider), refused when a kill switch or the model
//! allow-list says so, audited as an `embedding` event (the input
//! fingerprinted, kept only when the policy keeps prompts), and sent to
//! the routed provider ([`crate::providers::embeddings`]) with its
//! fallback.

use crate::api::routed::{Routed, ToRoute, route_and_call, route_headers, upstream, with_palisade};
use crate::api::{json_body, request_id};
use crate::auth::Agent;
use crate::decisions::admit;
use crate::error::GatewayError;
use crate::limits::UnreadBody;
use crate::providers::embeddings::EmbeddingsRequest;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use palisade_audit::EventKind;

/// `POST /v1/embeddings`.
pub async fn handle(
    State(state): State<AppState>,
    Agent { who, snapshot }: Agent,
    headers: HeaderMap,
    body: UnreadBody,
) -> Result<Response, GatewayError> {
    let body = body.read().await?;
    let request = parse_request(&headers, &body)?;
    drop(body);
    let request_id = request_id(&headers, None);
    admit(&state, &request_id).await?;
    let text = request.input.texts().join("\n");
    let to_route = ToRoute {
        request_id: &request_id,
        kind: EventKind::Embedding,
        model: request.model.as_deref().unwrap_or(""),
        prompt: &text,
        provider_text: &text,
        streamed: false,
        traceparent: crate::api::traceparent(&headers),
    };
    let upstream = &upstream(&state, &snapshot);
    let request = &request;
    let (served, answer, _admission) = route_and_call(
        &state,
        &snapshot,
        &who,
        to_route,
        |provider, model| async move { upstream.embed(provider, &model, request).await },
    )
    .await?;
    let routed = Routed::new(&served, &request_id);
    let mut response = Response::new(Body::from(with_palisade(&answer, &routed)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    route_headers(&mut response, &routed);
    Ok(response)
}

/// The body as an embeddings request, or the error naming what is wrong.
fn parse_request(headers: &HeaderMap, body: &[u8]) -> Result<EmbeddingsRequest, GatewayError> {
    json_body(headers, body, |e| {
        if e.is_syntax() || e.is_eof() {
            format!("the body is not JSON: {e}")
        } else if e.to_string().contains("untagged enum Input") {
            "input: send the text to embed as a string or an array of strings (token ids are not accepted: the policy's routing rules read the text)".into()
        } else {
            format!("not an embeddings request: {e}")
        }
    })
}
