//! The tool loop's answer: the final completion with the `palisade`
//! object (where the last step went, and the loop's trace), as JSON or —
//! when the client asked for a stream — as OpenAI's SSE chunks.

use super::Trace;
use crate::api::routed::{Routed, route_headers};
use crate::providers::framing;
use crate::providers::openai::ChatCompletion;
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

/// The completion as a stream's events: its chunks, the first carrying
/// the `palisade` object, the usage only when asked for, `[DONE]`.
fn events(completion: ChatCompletion, palisade: Looped<'_>, usage: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunks = completion.into_chunks().into_iter();
    if let Some(first) = chunks.next() {
        out.extend_from_slice(&framing::event(&WithLoop {
            palisade,
            body: &first,
        }));
    }
    for chunk in chunks {
        if chunk.usage.is_some() && !usage {
            continue;
        }
        out.extend_from_slice(&framing::event(&chunk));
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}
