//! A streamed answer's tokens, which are known only at its end: read from
//! the `usage` its chunks carry (OpenAI's closing usage event, which the
//! gateway asks OpenAI-compatible providers for, or the finish chunk of a
//! translated Anthropic or Ollama stream), and recorded once the stream
//! ends as a `usage` audit event of the request, counted in
//! `palisade_tokens_total` like a whole answer's. The usage event the
//! gateway asked for on the client's behalf is not passed on.

use super::gate::Gate;
use crate::budgets::Admission;
use crate::credentials::Identity;
use crate::decisions::count_tokens;
use crate::providers::openai::Usage;
use crate::providers::usage::Tokens;
use crate::state::AppState;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use palisade_audit::{AuditDecision, AuditEvent, EventKind};
use palisade_policy::Route;
use serde::Deserialize;

/// Whom a stream's tokens are counted for.
#[derive(Debug)]
pub struct Meter {
    pub state: AppState,
    /// The configuration the request was routed with (its policy's
    /// security thresholds watch the tokens).
    pub snapshot: std::sync::Arc<crate::snapshot::Snapshot>,
    pub who: Identity,
    pub request_id: String,
    pub route: Route,
    /// Take out events that hold only usage (the client did not ask for
    /// them).
    pub strip: bool,
    /// The stream's admission under `spec.limits`: charged its tokens at
    /// the end, its place among open streams freed when the meter goes.
    pub admission: Option<Admission>,
    /// When the request was routed, for its time to first token (taken
    /// once: `None` after).
    pub started: Option<std::time::Instant>,
}

/// The parts of a chunk the meter reads.
#[derive(Deserialize)]
struct Counted {
    #[serde(default)]
    choices: Vec<serde::de::IgnoredAny>,
    usage: Option<Usage>,
}

impl Meter {
    /// The meter of the stream `gate` gates, served by `route`.
    pub fn of(
        gate: &Gate,
        route: &Route,
        admission: Option<Admission>,
        started: std::time::Instant,
        strip: bool,
    ) -> Self {
        Self {
            started: Some(started),
            state: gate.state.clone(),
            snapshot: gate.snapshot.clone(),
            who: gate.who.clone(),
            request_id: gate.request_id.clone(),
            route: route.clone(),
            strip,
            admission,
        }
    }

    /// Observes `gen_ai.server.time_to_first_token` at the first bytes
    /// that carry text or a tool call.
    fn first_token(&mut self, bytes: &[u8]) {
        let token = |needle: &[u8]| {
            memchr::memmem::find_iter(bytes, needle)
                .any(|i| bytes.get(i + needle.len()) != Some(&b'"'))
        };
        if self.started.is_some()
            && (token(b"\"content\":\"") || token(b"\"tool_calls\":"))
            && let Some(started) = self.started.take()
        {
            self.state
                .metrics
                .gen_ai
                .time_to_first_token
                .with_label_values(&["chat", &self.route.provider, &self.route.model])
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// `bytes` as passed on, noting the tokens of any usage they carry.
    fn read(&mut self, bytes: Bytes, tokens: &mut Option<Tokens>) -> Bytes {
        self.first_token(&bytes);
        if memchr::memmem::find(&bytes, b"\"usage\"").is_none() {
            return bytes;
        }
        let mut kept = Vec::with_capacity(bytes.len());
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let end = memchr::memmem::find(rest, b"\n\n").map_or(rest.len(), |i| i + 2);
            let (event, tail) = rest.split_at(end);
            rest = tail;
            let text = String::from_utf8_lossy(event);
            let counted = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| serde_json::from_str::<Counted>(d.trim()).ok());
            if let Some(Counted {
                choices,
                usage: Some(usage),
            }) = counted
            {
                *tokens = Some(Tokens::of(&usage));
                if self.strip && choices.is_empty() {
                    continue;
                }
            }
            kept.extend_from_slice(event);
        }
        Bytes::from(kept)
    }

    /// Records the stream's tokens, if it carried any.
    fn finish(self, tokens: Option<Tokens>) {
        let Some(tokens) = tokens else {
            return;
        };
        let mut e = AuditEvent::new(
            EventKind::Usage,
            &self.request_id,
            &self.who.namespace,
            &self.who.agent,
            AuditDecision::Allow,
        );
        e.provider = Some(self.route.provider.clone());
        e.model = Some(self.route.model.clone());
        if let Some(a) = &self.admission {
            a.charge(tokens.input + tokens.output);
        }
        let policy = self
            .snapshot
            .bundle
            .policy_for(&self.who.namespace, &self.who.agent)
            .map(|(p, _)| p);
        count_tokens(&self.state, &mut e, tokens, policy);
        // The answer is given: nothing waits on this row.
        if let Err(error) = self.state.audit.record(e) {
            tracing::warn!(%error, request_id = %self.request_id, "a stream's token usage could not be audited");
        }
    }
}

/// `stream` passed on through `meter`, which records its tokens at its end.
pub fn metered(
    stream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    meter: Meter,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let start = (Box::pin(stream), Some(meter), None::<Tokens>);
    futures_util::stream::unfold(start, |(mut stream, mut meter, mut tokens)| async move {
        match stream.next().await {
            Some(Ok(bytes)) => {
                let bytes = match &mut meter {
                    Some(m) => m.read(bytes, &mut tokens),
                    None => bytes,
                };
                Some((Ok(bytes), (stream, meter, tokens)))
            }
            Some(Err(e)) => Some((Err(e), (stream, meter, tokens))),
            None => {
                if let Some(m) = meter.take() {
                    m.finish(tokens);
                }
                None
            }
        }
    })
}
