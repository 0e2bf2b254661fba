//! What every routed request (chat, embeddings) shares: calling the
//! routed provider with the policy's fallback, and telling the client
//! where its request went (`x-palisade-*` headers, a `palisade` object).

use crate::budgets::Admission;
use crate::credentials::Identity;
use crate::decisions::{decide_chat, recorded};
use crate::error::GatewayError;
use crate::metrics::GenAi;
use crate::providers::usage::Metered;
use crate::providers::{Upstream, UpstreamError};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::telemetry;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use palisade_audit::EventKind;
use palisade_policy::{Policy, Provider, ReasonCode, Route};
use serde::Serialize;
use tracing::Instrument;

/// A request to route by policy: its id and audit kind, the model asked
/// for, its text (measured, fingerprinted and audited) and everything the
/// provider will see (scanned by the routing rules).
#[derive(Debug, Clone, Copy)]
pub struct ToRoute<'r> {
    pub request_id: &'r str,
    pub kind: EventKind,
    pub model: &'r str,
    pub prompt: &'r str,
    pub provider_text: &'r str,
    /// Whether the answer is streamed (it then holds a place among the
    /// agent's open streams, `spec.limits`).
    pub streamed: bool,
    /// The agent's W3C `traceparent` header, if it sent one.
    pub traceparent: Option<&'r str>,
}

/// The way of every routed request: decided by policy (refused, audited,
/// when a kill switch, the model allow-list or a missing policy says so),
/// admitted by the policy's `spec.limits` ([`crate::budgets`]; `429`
/// otherwise, audited), its audit row accepted before its text goes
/// anywhere, `call` made on the routed provider and model (then the
/// fallback's, [`with_fallback`]), its tokens charged, and answered only
/// once its row is recorded. The route that served, what the provider
/// answered, and the admission (a stream's tokens are charged to it at
/// its end, and its place among open streams held until it is dropped);
/// or the error.
pub async fn route_and_call<'s, T, F>(
    state: &AppState,
    snapshot: &'s Snapshot,
    who: &Identity,
    request: ToRoute<'_>,
    call: impl FnMut(&'s Provider, String) -> F,
) -> Result<(Route, T, Option<Admission>), GatewayError>
where
    T: Metered,
    F: Future<Output = Result<T, UpstreamError>>,
{
    let span = telemetry::request_span(
        GenAi::operation(request.kind.as_str()),
        request.model,
        who,
        request.request_id,
        request.traceparent,
    );
    let agents = request.traceparent.map(str::to_owned);
    let answered = decide_and_call(state, snapshot, who, request, call).instrument(span);
    telemetry::AGENTS_TRACEPARENT.scope(agents, answered).await
}

/// [`route_and_call`] inside the request's span.
async fn decide_and_call<'s, T, F>(
    state: &AppState,
    snapshot: &'s Snapshot,
    who: &Identity,
    request: ToRoute<'_>,
    call: impl FnMut(&'s Provider, String) -> F,
) -> Result<(Route, T, Option<Admission>), GatewayError>
where
    T: Metered,
    F: Future<Output = Result<T, UpstreamError>>,
{
    let ToRoute {
        request_id, kind, ..
    } = request;
    let routing = decide_chat(
        snapshot,
        (request_id, kind),
        who,
        request.model,
        (request.prompt, request.provider_text),
    );
    let decided = &routing.decision.decision;
    telemetry::record_decision(
        decided.outcome.as_str(),
        decided.reason_code.as_str(),
        decided.rule.as_deref(),
    );
    let Some((route, policy)) = routing.permitted() else {
        return Err(routing.refuse(state).await);
    };
    let admission = match state
        .budgets
        .admit(policy, &who.agent, request.streamed)
        .await
    {
        Ok(admission) => admission,
        Err(over) => {
            telemetry::record_decision("Deny", over.code.as_str(), Some(&over.field));
            return Err(routing.over_limit(state, over).await);
        }
    };
    // `FailClosed` holds here too; the row is filled in once answered.
    let row = routing.accept(state)?;
    let (served, answer) = with_fallback(policy, route, call).await;
    tracing::Span::current().record("gen_ai.provider.name", served.provider.as_str());
    let outcome = answer
        .as_ref()
        .map(Metered::tokens)
        .map_err(UpstreamError::status);
    if let (Some(a), Ok(Some(t))) = (&admission, &outcome) {
        a.charge(t.input + t.output);
    }
    recorded(routing.served(state, row, &served, outcome), request_id).await?;
    match answer {
        Ok(answer) => Ok((served, answer, admission)),
        Err(error) => Err(GatewayError::Upstream {
            provider: served.provider,
            request_id: request_id.to_owned(),
            error,
        }),
    }
}

/// The providers as `snapshot` configures them, through the shared
/// client and the platform's allow-list.
pub fn upstream<'a>(state: &'a AppState, snapshot: &'a Snapshot) -> Upstream<'a> {
    Upstream {
        http: &state.http,
        endpoints: &snapshot.endpoints,
        egress: &state.egress,
    }
}

/// Calls `call` with the routed provider and model, and on a retryable
/// failure with the policy's fallback; the route that served (or failed
/// last), and what it answered.
pub async fn with_fallback<'p, T, F>(
    policy: &'p Policy,
    route: &Route,
    mut call: impl FnMut(&'p Provider, String) -> F,
) -> (Route, Result<T, UpstreamError>)
where
    F: Future<Output = Result<T, UpstreamError>>,
{
    let mut attempt = route.clone();
    loop {
        let result = match policy.provider(&attempt.provider) {
            Some(provider) => call(provider, attempt.model.clone()).await,
            None => Err(UpstreamError::Connect(format!(
                "provider {} is not defined",
                attempt.provider
            ))),
        };
        match result {
            Err(e) if e.retryable() => match attempt.fallback_route() {
                Some(f) => {
                    tracing::warn!(provider = %attempt.provider, fallback = %f.provider, error = %e, "upstream failed; using the fallback provider");
                    attempt = f;
                }
                None => return (attempt, Err(e)),
            },
            result => return (attempt, result),
        }
    }
}

/// Where a request went and why: the `palisade` object of a completion.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Routed<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub reason_codes: &'a [ReasonCode],
    pub rule: Option<&'a str>,
    pub request_id: &'a str,
}

impl<'a> Routed<'a> {
    /// Where `route` went, for the request `request_id`.
    pub fn new(route: &'a Route, request_id: &'a str) -> Self {
        Self {
            provider: &route.provider,
            model: &route.model,
            reason_codes: &route.reasons,
            rule: route.rule.as_deref(),
            request_id,
        }
    }
}

/// `object` (a JSON object's bytes) with `"palisade": palisade` added as
/// its first member.
pub fn with_palisade(object: &[u8], palisade: &impl Serialize) -> Vec<u8> {
    let open = object.iter().position(|&b| b == b'{').map_or(0, |i| i + 1);
    let (head, rest) = object.split_at(open);
    let empty = rest.trim_ascii_start().first() == Some(&b'}');
    let mut out = Vec::with_capacity(object.len() + 256);
    out.extend_from_slice(head);
    out.extend_from_slice(b"\"palisade\":");
    // The gateway's own type always serializes.
    let _ = serde_json::to_writer(&mut out, palisade);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

pub fn route_headers(response: &mut Response, routed: &Routed<'_>) {
    // Names built once (a `&'static str` key is copied into a new name
    // on every insert).
    static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    static PROVIDER: HeaderName = HeaderName::from_static("x-palisade-provider");
    static MODEL: HeaderName = HeaderName::from_static("x-palisade-model");
    static REASONS: HeaderName = HeaderName::from_static("x-palisade-reasons");
    let h = response.headers_mut();
    let mut reasons = String::new();
    for (i, r) in routed.reason_codes.iter().enumerate() {
        if i > 0 {
            reasons.push(',');
        }
        reasons.push_str(r.as_str());
    }
    for (name, value) in [
        (&REQUEST_ID, routed.request_id),
        (&PROVIDER, routed.provider),
        (&MODEL, routed.model),
        (&REASONS, reasons.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name.clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn the_palisade_object_becomes_the_first_member_of_any_object() {
        let p = json!({"requestId": "r1"});
        for (input, expected) in [
            (
                r#"{"id":"x","choices":[]}"#,
                json!({"palisade": p, "id": "x", "choices": []}),
            ),
            ("  {  }  ", json!({"palisade": p})),
            ("{\n \"a\": 1\n}", json!({"palisade": p, "a": 1})),
        ] {
            let out: Value = serde_json::from_slice(&with_palisade(input.as_bytes(), &p)).unwrap();
            assert_eq!(out, expected, "{input}");
        }
    }
}
