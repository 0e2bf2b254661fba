//! The tool loop's answer: the final completion with the `palisade`
//! object (where the last step went, and the loop's trace), as JSON or —
//! when the client asked for a stream — as OpenAI's SSE chunks.

use super::Trace;
use crate::api::routed::{Routed, route_headers};
use crate::providers::framing;
use crate::providers::openai::{
    ChatCompletion, ChatCompletionChunk, Content, Delta, ToolCallDelta, Usage,
};
use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use palisade_policy::Route;
use serde::Serialize;

/// The `palisade` object of a looped answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Looped<'a> {
    #[serde(flatten)]
    routed: &'a Routed<'a>,
    tool_loop: &'a Trace,
}

#[derive(Debug, Serialize)]
struct WithLoop<'a, T> {
    palisade: Looped<'a>,
    #[serde(flatten)]
    body: &'a T,
}

/// Adds a step's usage to the loop's.
pub fn add_usage(total: &mut Option<Usage>, step: Option<Usage>) {
    let Some(step) = step else {
        return;
    };
    match total {
        None => *total = Some(Usage::of(step.prompt_tokens, step.completion_tokens)),
        Some(t) => {
            *t = Usage::of(
                t.prompt_tokens + step.prompt_tokens,
                t.completion_tokens + step.completion_tokens,
            )
        }
    }
}

/// The answer to the client: `(streamed, with its usage event)` as it
/// asked.
pub fn respond(
    completion: ChatCompletion,
    served: &Route,
    request_id: &str,
    trace: &Trace,
    (streamed, usage): (bool, bool),
) -> Response {
    let routed = Routed::new(served, request_id);
    let palisade = Looped {
        routed: &routed,
        tool_loop: trace,
    };
    let mut response = if streamed {
        let mut r = Response::new(Body::from(events(completion, palisade, usage)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r
    } else {
        Json(WithLoop {
            palisade,
            body: &completion,
        })
        .into_response()
    };
    route_headers(&mut response, &routed);
    response
}

/// The completion as a stream's events: the first chunk (role, text, and
/// the `palisade` object), the tool calls handed to the client, the
/// finish, the usage when asked for, `[DONE]`.
fn events(completion: ChatCompletion, palisade: Looped<'_>, usage: bool) -> Vec<u8> {
    let template = ChatCompletionChunk {
        id: completion.id.clone(),
        object: Some("chat.completion.chunk".into()),
        created: completion.created,
        model: completion.model.clone(),
        ..ChatCompletionChunk::default()
    };
    let chunk = |delta: Delta, finish: Option<String>| template.with_delta(delta, finish);
    let choice = completion.choices.into_iter().next().unwrap_or_default();
    let message = choice.message.unwrap_or_default();
    let text = match message.content {
        Some(Content::Text(t)) => t,
        Some(other) => other_text(&other),
        None => String::new(),
    };
    let mut out = Vec::new();
    out.extend_from_slice(&framing::event(&WithLoop {
        palisade,
        body: &chunk(
            Delta {
                content: Some(text),
                ..Delta::start()
            },
            None,
        ),
    }));
    if let Some(calls) = message.tool_calls.filter(|c| !c.is_empty()) {
        let calls = calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| ToolCallDelta::whole(i, c))
            .collect();
        out.extend_from_slice(&framing::event(&chunk(Delta::tool_calls(calls), None)));
    }
    let finish = choice.finish_reason.or_else(|| Some("stop".into()));
    out.extend_from_slice(&framing::event(&chunk(Delta::default(), finish)));
    if usage && let Some(u) = completion.usage {
        let mut last = template.clone();
        last.usage = Some(u);
        out.extend_from_slice(&framing::event(&last));
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// The text parts of content that is not plain text.
fn other_text(content: &Content) -> String {
    match content {
        Content::Text(t) => t.clone(),
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join(""),
        Content::Other(_) => String::new(),
    }
}
