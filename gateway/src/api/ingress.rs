//! The chat path behind another API's shapes: `/v1/messages` (Anthropic)
//! and `/v1/responses` (OpenAI's Responses API) read their request into a
//! chat request and are served here — routed, admitted, audited, every
//! tool call decided before the client sees it — and the gated answer,
//! whole or streamed, is written back in their shapes by their
//! [`Ingress`].

use crate::api::chat::gate::gate_stream;
use crate::api::chat::metering::{Meter, metered};
use crate::api::chat::{ChatRouted, gated, route_chat};
use crate::api::routed::{Routed, route_headers, with_palisade};
use crate::api::{json_body, request_id};
use crate::auth::Agent;
use crate::credentials::Identity;
use crate::decisions::admit;
use crate::error::GatewayError;
use crate::limits::UnreadBody;
use crate::providers::framing::{self, ByteStream};
use crate::providers::openai::{ChatCompletion, ChatCompletionChunk, ChatRequest};
use crate::providers::{ProviderReply, UpstreamError};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use futures_util::Stream;
use std::sync::Arc;

/// How an API reads its requests into the chat path and writes its answers.
pub trait Ingress {
    /// The request body as the API sends it.
    type Request: serde::de::DeserializeOwned;

    /// What the API is called in a parse error ("a Messages request").
    const NAME: &'static str;

    /// The chat request `request` stands for, or what it cannot carry.
    fn chat_request(request: &Self::Request) -> Result<ChatRequest, GatewayError>;

    /// A gated completion of `model` as this API's answer (JSON).
    fn answer(completion: &ChatCompletion, model: &str) -> serde_json::Value;

    /// A gated chat stream (with its usage events) as this API's stream.
    fn stream(
        gated: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        model: String,
    ) -> ByteStream;
}

/// `POST` of an `I` request: read (after authentication), translated, and
/// served on the chat path.
pub async fn handle<I: Ingress>(
    State(state): State<AppState>,
    Agent { who, snapshot }: Agent,
    headers: HeaderMap,
    body: UnreadBody,
) -> Result<Response, GatewayError> {
    let body = body.read().await?;
    let incoming: I::Request = json_body(&headers, &body, |e| {
        if e.is_syntax() || e.is_eof() {
            format!("the body is not JSON: {e}")
        } else {
            format!("not {}: {e}", I::NAME)
        }
    })?;
    drop(body);
    let request = I::chat_request(&incoming)?;
    serve::<I>(state, snapshot, who, &headers, request).await
}

/// Serves `request` (read from an `I` request) for `who`.
async fn serve<I: Ingress>(
    state: AppState,
    snapshot: Arc<Snapshot>,
    who: Identity,
    headers: &HeaderMap,
    request: ChatRequest,
) -> Result<Response, GatewayError> {
    let request_id = request_id(headers, None);
    admit(&state, &request_id).await?;
    let ChatRouted {
        served,
        reply,
        mut gate,
        admission,
        started,
    } = route_chat(
        state,
        snapshot,
        who,
        (request_id.clone(), crate::api::traceparent(headers)),
        &request,
    )
    .await?;
    let routed = Routed::new(&served, &request_id);
    let mut completion = match reply {
        ProviderReply::Stream(chunks) => {
            // The translation reads the usage events: none is taken out.
            let meter = Meter::of(&gate, &served, admission, started, false);
            let gated = metered(gate_stream(chunks, gate), meter);
            let events = I::stream(gated, served.model.clone());
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
    let written = I::answer(&completion, &served.model);
    let bytes = with_palisade(written.to_string().as_bytes(), &routed);
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

/// What a stream translation does with each line of the gated chat
/// stream.
pub trait Events {
    /// A `chat.completion.chunk`.
    fn chunk(&mut self, chunk: ChatCompletionChunk, out: &mut Vec<Bytes>);
    /// `[DONE]`: the answer is complete.
    fn done(&mut self, out: &mut Vec<Bytes>);
    /// The gate's error event (`{"error": {...}}`): the stream ends.
    fn error(&mut self, error: &serde_json::Value, out: &mut Vec<Bytes>);
}

/// The gated chat stream `gated` translated line by line by `events`;
/// nothing follows `[DONE]` or an error.
pub fn translate_stream(
    gated: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    mut events: impl Events + Send + 'static,
) -> ByteStream {
    let mut ended = false;
    framing::translate_lines(gated, move |line| {
        let mut out = Vec::new();
        let Some(data) = framing::data_of(line).filter(|_| !ended) else {
            return out;
        };
        if data == "[DONE]" {
            events.done(&mut out);
            ended = true;
            return out;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(data) else {
            return out;
        };
        if let Some(error) = value.get("error") {
            events.error(error, &mut out);
            ended = true;
            return out;
        }
        if let Ok(chunk) = serde_json::from_value::<ChatCompletionChunk>(value) {
            events.chunk(chunk, &mut out);
        }
        out
    })
}

/// For the translations' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use axum::body::Bytes;
    use futures_util::TryStreamExt;
    use serde_json::{Value, json};

    /// A gated chat stream of `lines` (each a `data:` event) and `[DONE]`.
    pub fn chat_stream(
        lines: &[Value],
    ) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let mut sse: Vec<String> = lines.iter().map(|c| format!("data: {c}\n\n")).collect();
        sse.push("data: [DONE]\n\n".into());
        futures_util::stream::iter(sse.into_iter().map(|s| Ok(Bytes::from(s))))
    }

    /// The events of a translated stream, each event's name checked
    /// against its data's `type`.
    pub async fn events_of(stream: crate::providers::framing::ByteStream) -> Vec<Value> {
        let bytes: Vec<Bytes> = stream.try_collect().await.unwrap();
        let text = String::from_utf8(bytes.concat()).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(name.strip_prefix("event: ").unwrap(), data["type"]);
                data
            })
            .collect()
    }

    /// A chunk of the first choice.
    pub fn chunk(delta: Value, finish: Value) -> Value {
        json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }
}
