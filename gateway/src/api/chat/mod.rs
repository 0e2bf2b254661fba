//! `POST /v1/chat/completions`, OpenAI-compatible, streamed or not. The
//! request is routed by policy (refused when a kill switch, the model
//! allow-list or a missing policy says so), sent to the chosen provider
//! with every field the gateway does not act on passed through, retried on
//! the policy's fallback provider on connect error, 5xx or timeout, and
//! every tool call the model proposes is decided before the client sees it
//! ([`gate`]). A request that names tools the policy runs goes through the
//! server-side tool loop instead ([`tool_loop`]).

pub mod gate;
pub mod metering;
pub mod provider_text;
pub mod tool_loop;

use crate::api::routed::{Routed, ToRoute, route_and_call, route_headers, upstream, with_palisade};
use crate::api::{json_body, request_id};
use crate::auth::Agent;
use crate::budgets::Admission;
use crate::credentials::Identity;
use crate::decisions::admit;
use crate::error::GatewayError;
use crate::limits::UnreadBody;
use crate::providers::ProviderReply;
use crate::providers::openai::{ChatCompletion, ChatRequest};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use gate::{Decide, Gate, gate_completion, gate_stream};
use metering::{Meter, metered};
use palisade_audit::EventKind;
use palisade_policy::Route;
use serde::Serialize;
use std::sync::Arc;

/// `POST /v1/chat/completions`.
pub async fn handle(
    State(state): State<AppState>,
    Agent { who, snapshot }: Agent,
    headers: HeaderMap,
    body: UnreadBody,
) -> Result<Response, GatewayError> {
    // Read only now that the agent is authenticated.
    let body = body.read().await?;
    let request = parse_request(&headers, &body)?;
    drop(body);
    let request_id = request_id(&headers, None);
    admit(&state, &request_id).await?;
    let traceparent = crate::api::traceparent(&headers);
    if let Some(looping) = tool_loop::plan(&snapshot, &who, &request)? {
        let ids = (request_id, traceparent);
        return tool_loop::run(state, snapshot, who, ids, looping).await;
    }
    let routed = route_chat(state, snapshot, who, (request_id, traceparent), &request).await?;
    let strip_usage = !request.asked_for_usage();
    respond(routed, strip_usage).await
}

/// The chat path after parsing, for `/v1/chat/completions` and
/// `/v1/messages` alike: `request` routed by policy, audited and sent to
/// the routed provider (or its fallback).
pub async fn route_chat(
    state: AppState,
    snapshot: Arc<Snapshot>,
    who: Identity,
    (request_id, traceparent): (String, Option<&str>),
    request: &ChatRequest,
) -> Result<ChatRouted, GatewayError> {
    let started = std::time::Instant::now();
    // Tool results the agent sends back are sanitized before the policy
    // scans the text or any provider sees it.
    let sanitized = snapshot
        .bundle
        .policy_for(&who.namespace, &who.agent)
        .and_then(|(p, _)| {
            crate::tools::sanitize_tool_messages(request, &p.runnable.results, &state.metrics)
        });
    let request = sanitized.as_ref().unwrap_or(request);
    let prompt = request.prompt_text();
    let seen = provider_text::of(request);
    let to_route = ToRoute {
        request_id: &request_id,
        kind: EventKind::Chat,
        model: request.model.as_deref().unwrap_or(""),
        prompt: &prompt,
        provider_text: &seen,
        streamed: request.streamed(),
        traceparent,
    };
    let upstream = &upstream(&state, &snapshot);
    let (served, reply, admission) = route_and_call(
        &state,
        &snapshot,
        &who,
        to_route,
        |provider, model| async move { upstream.call(provider, &model, request).await },
    )
    .await?;
    let gate = Gate {
        state: state.clone(),
        snapshot,
        who,
        request_id,
        receipts: Vec::new(),
    };
    Ok(ChatRouted {
        served,
        reply,
        gate,
        admission,
        started,
    })
}

/// A chat request routed and answered by its provider: the route that
/// served, what it answered, the gate its tool calls are to pass, and its
/// admission under `spec.limits` (held by a stream until it ends).
#[derive(Debug)]
pub struct ChatRouted {
    pub served: Route,
    pub reply: ProviderReply,
    pub gate: Gate,
    pub admission: Option<Admission>,
    /// When it was routed (a stream's time to first token counts from it).
    pub started: std::time::Instant,
}

/// A request body as the gateway reads it: JSON (declared so in
/// `content-type`, nested no deeper than the limit), a chat completion
/// request with `messages`, not using the legacy functions API; or the
/// error the client gets.
pub fn parse_request(headers: &HeaderMap, body: &[u8]) -> Result<ChatRequest, GatewayError> {
    let request: ChatRequest = json_body(headers, body, |e| {
        if e.is_syntax() || e.is_eof() {
            format!("the body is not JSON: {e}")
        } else {
            format!("not a chat completion request: {e}")
        }
    })?;
    if request.messages.is_none() {
        return Err(GatewayError::BadRequest(
            "messages: a chat completion needs a `messages` array".into(),
        ));
    }
    refuse_legacy_functions(&request)?;
    Ok(request)
}

/// Refuses the legacy functions API (`functions`, `function_call`): a
/// provider that still honours it answers with a `function_call` outside
/// `tools`. Refused, naming what replaces each field, rather than
/// translated: the client would not understand the `tool_calls` answer.
fn refuse_legacy_functions(request: &ChatRequest) -> Result<(), GatewayError> {
    for (field, replacement, hint) in [
        (
            "functions",
            "tools",
            r#"each function `f` becomes {"type": "function", "function": f}"#,
        ),
        (
            "function_call",
            "tool_choice",
            r#""auto" and "none" stay, {"name": N} becomes {"type": "function", "function": {"name": N}}"#,
        ),
    ] {
        if request.rest.contains_key(field) {
            return Err(GatewayError::LegacyFunctions {
                field,
                replacement,
                hint,
            });
        }
    }
    Ok(())
}

/// Decides every tool call of `completion` ([`gate_completion`]) and
/// waits until those decisions are recorded: only then may it be given.
pub async fn gated(completion: &mut ChatCompletion, gate: &mut Gate) -> Result<(), GatewayError> {
    gate_completion(completion, gate);
    let receipts = Decide::receipts(gate);
    palisade_audit::Durable::wait_all(receipts)
        .await
        .map_err(|_| GatewayError::AuditUnavailable {
            request_id: Some(gate.request_id.clone()),
        })
}

/// The answer: gated (and a stream metered), with where it went (headers, and a `palisade`
/// object in a whole completion); given once the decisions on its tool
/// calls are recorded.
async fn respond(routed: ChatRouted, strip_usage: bool) -> Result<Response, GatewayError> {
    let ChatRouted {
        served,
        reply,
        mut gate,
        admission,
        started,
    } = routed;
    let route = &served;
    let request_id = gate.request_id.clone();
    let routed = Routed::new(route, &request_id);
    let mut response = match reply {
        ProviderReply::Stream(body) => {
            let meter = Meter::of(&gate, route, admission, started, strip_usage);
            let mut r = Response::new(Body::from_stream(metered(gate_stream(body, gate), meter)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            r
        }
        ProviderReply::Verbatim(body) => {
            let mut r = Response::new(Body::from(with_palisade(&body, &routed)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        ProviderReply::Completion(mut completion) => {
            gated(&mut completion, &mut gate).await?;
            completion.rest.remove("palisade");
            Json(WithRoute {
                palisade: &routed,
                completion: &completion,
            })
            .into_response()
        }
    };
    route_headers(&mut response, &routed);
    Ok(response)
}

/// A completion with the gateway's `palisade` object first.
#[derive(Debug, Serialize)]
struct WithRoute<'a> {
    palisade: &'a Routed<'a>,
    #[serde(flatten)]
    completion: &'a ChatCompletion,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::openai::Outgoing;

    #[test]
    fn numbers_in_a_request_are_forwarded_as_the_client_wrote_them() {
        // Found by fuzz/chat_request (docs/fuzzing.md): `4.5e+299` was
        // read a bit off and forwarded as `4.4999999999999995e+299` (and
        // that, read again, as `4.499999999999999e+299`): a float is read
        // to the nearest double, so it is sent on unchanged.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let sent = |body: &[u8]| {
            let request = parse_request(&headers, body).unwrap();
            serde_json::to_string(&Outgoing::new("m", &request)).unwrap()
        };
        let minimal =
            br#"{"messages": [], "temperature": 0.7, "x": [4.5e+299, 1.2345678901234568e-300]}"#;
        assert_eq!(
            sent(minimal),
            r#"{"model":"m","messages":[],"temperature":0.7,"x":[4.5e+299,1.2345678901234568e-300]}"#
        );
        let found = include_bytes!(
            "../../../tests/fuzz/chat_request/crash-4d814788f196a765244c3fa7deb23cc941b4b663"
        );
        let once = sent(found);
        assert!(once.contains("4.5e+299"), "{once}");
        assert_eq!(sent(once.as_bytes()), once);
    }
}
