//! The chat tool-call gate: every tool call a model proposes is decided
//! (through [`crate::decisions`], like any tool call) before the client
//! sees it. Allowed calls pass; denied or held ones are replaced by an
//! explanation in the message's text, and a `tool_calls` finish with none
//! left becomes `stop`. In a streamed answer the calls are held back until
//! complete ([`SseGate`]), then released or explained.

use crate::credentials::Identity;
use crate::decisions::held::hold_in_background;
use crate::decisions::{Proposed, ToolCallRequest, bounded_tool_name, decide_tool_call};
use crate::error::ErrorCode;
use crate::providers::framing::{self, ByteStream};
use crate::providers::openai::{
    self, ChatCompletion, ChatCompletionChunk, Content, Delta, FunctionCall, FunctionDelta,
    ToolCall, ToolCallDelta,
};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use palisade_audit::Durable;
use palisade_policy::{Decision, Outcome, ToolArguments};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Decides a complete set of tool calls: `(allowed, explanations of the
/// withheld ones)`.
pub trait Decide {
    fn decide(&mut self, calls: Vec<ToolCall>) -> (Vec<ToolCall>, Vec<String>);

    /// The audit receipts of the decisions made since last asked: what
    /// the gate decided goes out only once they are durable.
    fn receipts(&mut self) -> Vec<Durable> {
        Vec::new()
    }
}

/// The gate of one chat request: its agent, configuration and request id.
#[derive(Debug)]
pub struct Gate {
    pub state: AppState,
    pub snapshot: Arc<Snapshot>,
    pub who: Identity,
    pub request_id: String,
    /// Receipts of the audit rows of decisions not yet given.
    pub receipts: Vec<Durable>,
}

impl Decide for Gate {
    /// Every call is decided, counted and audited (with its arguments as
    /// the policy keeps them); an allowed call that cannot be audited is
    /// withheld.
    fn decide(&mut self, calls: Vec<ToolCall>) -> (Vec<ToolCall>, Vec<String>) {
        let mut allowed = Vec::new();
        let mut withheld = Vec::new();
        for mut call in calls {
            let Some(name) = tool_name(&call) else {
                withheld.push(UNREADABLE.to_owned());
                continue;
            };
            let parsed = match call.custom() {
                // A custom call's input is free text, forwarded as it
                // came: decided as `{"input": <text>}`.
                Some(custom) if call.kind.as_deref() == Some("custom") => {
                    ToolArguments::from_value(serde_json::json!({"input": custom.input}))
                }
                // Parsed strictly, once: arguments that are not a JSON
                // object (`NaN`, a duplicate key, trailing text) are
                // decided as what they are — not an object, so
                // `tool.arguments_invalid` — never as `{}`; valid ones are
                // forwarded as the canonical JSON that was evaluated, so
                // the client runs exactly what was decided.
                _ => {
                    let parsed = ToolArguments::parse(&call.function.arguments);
                    if let Some(canonical) = parsed.canonical_json() {
                        call.function.arguments = canonical.to_owned();
                    }
                    parsed
                }
            };
            let request = ToolCallRequest {
                proposed: Proposed::Chat,
                request_id: &self.request_id,
                who: &self.who,
                tool: &name,
                arguments: &parsed,
                approval: None,
            };
            let decided = decide_tool_call(&self.state, &self.snapshot, &request);
            let audited = match decided.audit(&self.state, &request, None) {
                Ok(receipt) => {
                    self.receipts.push(receipt);
                    true
                }
                Err(_) => false,
            };
            let name = bounded_tool_name(&name);
            let d = &decided.decision;
            let why = why(d);
            match (d.effective_outcome(), audited, decided.policy) {
                (Outcome::Allow, true, _) => allowed.push(call),
                (Outcome::Allow, false, _) => withheld.push(format!(
                    "[palisade] The tool call `{name}` was withheld: it could not be audited."
                )),
                (Outcome::Deny, ..) => withheld.push(format!(
                    "[palisade] The tool call `{name}` was blocked by policy ({why}); it was not passed on."
                )),
                (Outcome::RequireApproval, _, None) => withheld.push(format!(
                    "[palisade] The tool call `{name}` needs a human's approval ({why}); it was not passed on."
                )),
                (Outcome::RequireApproval, _, Some(policy)) => {
                    let approval = hold_in_background(&self.state, policy, &request, &decided);
                    withheld.push(format!(
                        "[palisade] The tool call `{name}` needs a human's approval ({why}); it was not passed on. Approval {approval} was requested: poll GET /v1/approvals/{approval}; once approved, run it with POST /v1/tool-calls and \"approval\": \"{approval}\"."
                    ));
                }
            }
        }
        (allowed, withheld)
    }

    fn receipts(&mut self) -> Vec<Durable> {
        std::mem::take(&mut self.receipts)
    }
}

/// Why a call was decided so: its reason code, and the rule if one
/// matched (`tool.denied_by_rule, rule no-shell`).
pub fn why(d: &Decision) -> String {
    match d.rule.as_deref() {
        Some(rule) => format!("{}, rule {rule}", d.reason_code),
        None => d.reason_code.to_string(),
    }
}

/// The name a call is decided under (`None`: it cannot be read).
/// A `function` call (or one of no type) goes by its function's name, a
/// `custom` call by its `custom.name`; a call of any other type, or a
/// custom one without a name, cannot be read.
pub fn tool_name(call: &ToolCall) -> Option<String> {
    match call.kind.as_deref() {
        None | Some("function") => Some(call.function.name.clone()),
        Some("custom") => call.custom().map(|c| c.name),
        Some(_) => None,
    }
}

/// The explanation of a tool call that could not be read, so could not be
/// decided: withheld (fail closed).
const UNREADABLE: &str =
    "[palisade] A tool call the model proposed could not be read; it was not passed on.";

/// Decides a legacy `function_call` (the `functions` API) under its name
/// like any tool call: the call to pass on, if it was allowed.
fn decide_legacy(
    function: FunctionCall,
    decide: &mut impl Decide,
    withheld: &mut Vec<String>,
) -> Option<serde_json::Value> {
    let call = ToolCall {
        kind: Some("function".into()),
        function,
        ..ToolCall::default()
    };
    let (allowed, why) = decide.decide(vec![call]);
    withheld.extend(why);
    let kept = allowed.into_iter().next()?;
    serde_json::to_value(kept.function).ok()
}

/// Applies the decisions to a (not streamed) completion: `tool_calls` and
/// a legacy `function_call`, in every choice.
pub fn gate_completion(completion: &mut ChatCompletion, decide: &mut impl Decide) {
    for choice in &mut completion.choices {
        let Some(message) = choice.message.as_mut() else {
            continue;
        };
        let mut withheld = Vec::new();
        // A legacy `function_call` (the `functions` API): decided under
        // its name like any tool call; one that does not read as a
        // function call is withheld.
        if let Some(legacy) = message.rest.remove("function_call") {
            let kept = match serde_json::from_value::<FunctionCall>(legacy) {
                Ok(function) => decide_legacy(function, decide, &mut withheld),
                Err(_) => {
                    withheld.push(UNREADABLE.into());
                    None
                }
            };
            match kept {
                Some(f) => {
                    message.rest.insert("function_call".into(), f);
                }
                None => {
                    if choice.finish_reason.as_deref() == Some("function_call") {
                        choice.finish_reason = Some("stop".into());
                    }
                }
            }
        }
        if let Some(calls) = message.tool_calls.take() {
            let (allowed, why) = decide.decide(calls);
            withheld.extend(why);
            if allowed.is_empty() {
                if choice.finish_reason.as_deref() == Some("tool_calls") {
                    choice.finish_reason = Some("stop".into());
                }
            } else {
                message.tool_calls = Some(allowed);
            }
        }
        if !withheld.is_empty() {
            let prior = match &message.content {
                Some(Content::Text(c)) => format!("{c}\n"),
                _ => String::new(),
            };
            message.content = Some(Content::Text(format!("{prior}{}", withheld.join("\n"))));
        }
    }
}

/// A streamed completion with its tool calls gated. What the gate
/// writes after deciding goes out once the decisions are recorded; when
/// they cannot be, the stream ends with an `audit.unavailable` error
/// instead.
pub fn gate_stream(
    upstream: ByteStream,
    decide: impl Decide + Send + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let start = (upstream, SseGate::default(), decide, false);
    futures_util::stream::unfold(
        start,
        |(mut upstream, mut gate, mut decide, ended)| async move {
            if ended {
                return None;
            }
            let out = match upstream.next().await? {
                Ok(chunk) => gate.push(chunk, &mut decide),
                Err(e) => return Some((Err(e), (upstream, gate, decide, false))),
            };
            let recorded = Durable::wait_all(decide.receipts()).await.is_ok();
            let out = if recorded { out } else { unaudited_event() };
            Some((Ok(out), (upstream, gate, decide, !recorded)))
        },
    )
}

/// The event that ends a stream whose tool-call decisions could not be
/// recorded: they are not given.
fn unaudited_event() -> Bytes {
    error_event(
        "the decisions on this answer's tool calls could not be recorded; the stream was ended",
        ErrorCode::AuditUnavailable,
    )
}

/// The state of one gated SSE stream: the bytes of an event not complete
/// yet, and, per choice, the tool calls being assembled from their
/// fragments.
#[derive(Debug, Default)]
pub struct SseGate {
    buf: Vec<u8>,
    /// By choice index: every choice's calls are decided, not only the
    /// first's.
    pending: BTreeMap<u32, Pending>,
    /// The stream's latest chunk (its id, object, created and model), for
    /// the chunks the gate writes itself.
    template: ChatCompletionChunk,
    /// Ended with an error: nothing more is passed on.
    closed: bool,
    /// The provider's line ends, read as a client reads them.
    ends: framing::LineEnds,
}

/// The most tool calls one streamed choice may carry (fragment indices
/// `0..MAX_CALLS_PER_CHOICE`). Providers number calls from 0 up; an index
/// past this is not a call the gate will hold room for.
pub const MAX_CALLS_PER_CHOICE: usize = 128;

/// One choice's calls being assembled.
#[derive(Debug, Default)]
struct Pending {
    calls: Vec<ToolCall>,
    /// A legacy `function_call` (the `functions` API).
    legacy: Option<FunctionCall>,
}

/// The event that ends a stream whose provider sent something tool-like
/// the gate cannot read: OpenAI's error shape, so a client stops there.
fn invalid_response_event() -> Bytes {
    error_event(
        "the provider streamed a tool call that could not be read; the stream was ended",
        ErrorCode::UpstreamInvalidResponse,
    )
}

/// An SSE event in OpenAI's error shape, which makes a client stop.
fn error_event(message: &str, code: ErrorCode) -> Bytes {
    framing::event(&serde_json::json!({"error": {
        "message": message,
        "type": "api_error",
        "param": null,
        "code": code.as_str(),
    }}))
}

impl SseGate {
    /// The bytes to send on for `chunk` (possibly none while a tool call
    /// is being assembled).
    pub fn push(&mut self, chunk: Bytes, decide: &mut impl Decide) -> Bytes {
        if self.closed {
            return Bytes::new();
        }
        // A client ends a line at CR, LF or CRLF: so does the gate, or a
        // `data:` line after a lone CR would pass undecided. Passed on
        // with LF ends.
        let chunk = self.ends.to_lf(chunk);
        // Whole events with nothing to gate, as providers send most of a
        // streamed answer (an event a chunk): passed on as they came, the
        // same bytes, no copy. What the loop below does with them too, so
        // only when the loop would leave nothing behind: a chunk ending in
        // an odd number of newlines (`\n\n\n`) ends an event and starts
        // the next one's blank line, which waits like any partial event.
        if self.buf.is_empty()
            && self.pending.is_empty()
            && ends_events(&chunk)
            && !openai::may_hold_tool_calls(&chunk)
        {
            return chunk;
        }
        self.buf.extend_from_slice(&chunk);
        let mut out = Vec::new();
        while let Some(end) = find(&self.buf, b"\n\n") {
            let event: Vec<u8> = self.buf.drain(..end + 2).collect();
            self.event(&event, &mut out, decide);
            if self.closed {
                self.buf.clear();
                break;
            }
        }
        Bytes::from(out)
    }

    /// Ends the stream with an error: what may be a tool call is never
    /// passed on undecided.
    fn fail_closed(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&invalid_response_event());
        self.closed = true;
    }

    /// One complete event (`\n\n` included): passed on, held, or
    /// rewritten into `out`.
    fn event(&mut self, event: &[u8], out: &mut Vec<u8>, decide: &mut impl Decide) {
        let text = String::from_utf8_lossy(event);
        // Every data line, as a client joins them.
        let lines: Vec<&str> = text.lines().filter_map(framing::data_of).collect();
        let tool_like = openai::may_hold_tool_calls(event);
        if lines.is_empty() {
            if tool_like {
                // No data line to the gate, yet a client may read one
                // (after a byte-order mark, say): fail closed.
                self.fail_closed(out);
            } else {
                out.extend_from_slice(event);
            }
            return;
        }
        let data = lines.join("\n");
        // Nothing to gate: pass the event on byte for byte (no
        // re-serialization).
        if self.pending.is_empty() && !tool_like {
            out.extend_from_slice(event);
            return;
        }
        if data == "[DONE]" {
            let open: Vec<u32> = self.pending.keys().copied().collect();
            for index in open {
                self.flush(index, out, None, decide);
            }
            out.extend_from_slice(event);
            return;
        }
        let Ok(mut parsed) = serde_json::from_str::<ChatCompletionChunk>(&data) else {
            if tool_like {
                // Fail closed: what may be a tool call is not passed on
                // undecided.
                self.fail_closed(out);
            } else {
                out.extend_from_slice(event);
            }
            return;
        };
        self.template = parsed.with_delta(Delta::default(), None);
        let had_choices = !parsed.choices.is_empty();
        let mut choices = Vec::with_capacity(parsed.choices.len());
        for mut choice in std::mem::take(&mut parsed.choices) {
            let mut held = false;
            if let Some(fragments) = choice.delta.tool_calls.take() {
                let pending = self.pending.entry(choice.index).or_default();
                for fragment in fragments {
                    if assemble(pending, fragment).is_err() {
                        self.fail_closed(out);
                        return;
                    }
                }
                held = true;
            }
            if let Some(legacy) = choice.delta.rest.remove("function_call") {
                let Ok(fragment) = serde_json::from_value::<FunctionDelta>(legacy) else {
                    self.fail_closed(out);
                    return;
                };
                let call = self
                    .pending
                    .entry(choice.index)
                    .or_default()
                    .legacy
                    .get_or_insert_with(FunctionCall::default);
                if let Some(name) = fragment.name {
                    call.name.push_str(&name);
                }
                if let Some(more) = fragment.arguments {
                    call.arguments.push_str(&more);
                }
                held = true;
            }
            if choice.finish_reason.is_some() && self.pending.contains_key(&choice.index) {
                let mut finish_reason = choice.finish_reason.take();
                self.flush(choice.index, out, Some(&mut finish_reason), decide);
                choice.finish_reason = finish_reason;
            }
            // Forward whatever else the choice carried (text, finish).
            if held && choice.delta.is_empty() && choice.finish_reason.is_none() {
                continue;
            }
            choices.push(choice);
        }
        if had_choices && choices.is_empty() {
            return;
        }
        parsed.choices = choices;
        out.extend_from_slice(&framing::event(&parsed));
    }

    /// Decides choice `index`'s assembled calls and writes the allowed
    /// ones and the explanations of the others; a `tool_calls` (or
    /// `function_call`) finish becomes `stop` when none was allowed.
    fn flush(
        &mut self,
        index: u32,
        out: &mut Vec<u8>,
        finish_reason: Option<&mut Option<String>>,
        decide: &mut impl Decide,
    ) {
        let Some(pending) = self.pending.remove(&index) else {
            return;
        };
        let mut emit = |delta: Delta| {
            let mut chunk = self.template.with_delta(delta, None);
            chunk.choices[0].index = index;
            out.extend_from_slice(&framing::event(&chunk))
        };
        let mut withheld = Vec::new();
        let mut any_allowed = false;
        if !pending.calls.is_empty() {
            let (allowed, why) = decide.decide(pending.calls);
            withheld.extend(why);
            if !allowed.is_empty() {
                any_allowed = true;
                let calls = allowed
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| ToolCallDelta::whole(i, c))
                    .collect();
                emit(Delta::tool_calls(calls));
            }
        }
        if let Some(function) = pending.legacy
            && let Some(f) = decide_legacy(function, decide, &mut withheld)
        {
            any_allowed = true;
            let mut delta = Delta::default();
            delta.rest.insert("function_call".into(), f);
            emit(delta);
        }
        if !any_allowed
            && let Some(f) = finish_reason
            && matches!(f.as_deref(), Some("tool_calls" | "function_call"))
        {
            *f = Some("stop".into());
        }
        if !withheld.is_empty() {
            emit(Delta::text(withheld.join("\n")));
        }
    }
}

/// Adds a fragment to the call it continues (or starts); refuses an
/// index past [`MAX_CALLS_PER_CHOICE`], which would have the gate hold
/// room for calls that were never sent.
fn assemble(pending: &mut Pending, fragment: ToolCallDelta) -> Result<(), TooManyCalls> {
    let i = fragment.index;
    if i >= MAX_CALLS_PER_CHOICE {
        return Err(TooManyCalls);
    }
    while pending.calls.len() <= i {
        pending.calls.push(ToolCall {
            kind: Some("function".into()),
            function: FunctionCall::default(),
            ..ToolCall::default()
        });
    }
    let call = &mut pending.calls[i];
    if fragment.id.is_some() {
        call.id = fragment.id;
    }
    if fragment.kind.is_some() {
        call.kind = fragment.kind;
    }
    for (key, value) in fragment.rest {
        match (key.as_str(), value) {
            // A custom call's fragments: its name, then more input. One
            // that does not read as such is kept as sent, so the call
            // cannot be read and is withheld.
            ("custom", Value::Object(more)) => {
                let custom = call
                    .rest
                    .entry("custom")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(custom) = custom {
                    for (k, v) in more {
                        match (k.as_str(), custom.get_mut(&k), v) {
                            ("input", Some(Value::String(so_far)), Value::String(s)) => {
                                so_far.push_str(&s)
                            }
                            (_, _, v) => {
                                custom.insert(k, v);
                            }
                        }
                    }
                }
            }
            (_, value) => {
                call.rest.insert(key, value);
            }
        }
    }
    if let Some(f) = fragment.function {
        if let Some(name) = f.name {
            call.function.name = name;
        }
        if let Some(more) = f.arguments {
            call.function.arguments.push_str(&more);
        }
    }
    Ok(())
}

/// A fragment numbered past [`MAX_CALLS_PER_CHOICE`].
#[derive(Debug)]
struct TooManyCalls;

/// Whether `chunk`, read from an event boundary, ends exactly at one:
/// it ends in a run of newlines of even length (events end at the first
/// `\n\n`, so a run of `2k + 1` leaves one newline behind).
fn ends_events(chunk: &[u8]) -> bool {
    let newlines = chunk.iter().rev().take_while(|&&b| b == b'\n').count();
    newlines >= 2 && newlines % 2 == 0
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests;
