//! The one path every decision takes: evaluate it against the policy,
//! count it in `palisade_decisions_total` (and, when a kill switch made it,
//! `palisade_kill_switch_hits_total`), and audit it. `/v1/tool-calls`, tool
//! calls proposed inside chat (streamed and not) and chat requests all go
//! through here, and so must anything added later; what differs between
//! them is only what they answer.
//!
//! Evaluation returns the policy it used, so nothing looks it up twice.
//! Held calls (approvals) and their outcomes are in [`held`].

pub mod held;

pub use palisade_audit::AuditDecision;

use crate::budgets::OverLimit;
use crate::credentials::Identity;
use crate::error::GatewayError;
use crate::metrics::GenAi;
use crate::providers::usage::Tokens;
use crate::snapshot::Snapshot;
use crate::state::AppState;
use palisade_audit::{AuditEvent, Durable, EventKind, Reservation};
use palisade_policy::{
    ArgumentCapture, ChatDecision, ChatRequest, Decision, Evaluated, MAX_TOOL_NAME_BYTES, Policy,
    PromptCapture, PromptFingerprint, ReasonCode, Route, ToolArguments, ToolCall, redact_arguments,
};
use std::borrow::Cow;
use std::time::Instant;

/// Where a tool call was proposed (the `kind` label of
/// `palisade_decisions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proposed<'a> {
    /// `POST /v1/tool-calls`.
    Api,
    /// By the model, in a chat completion.
    Chat,
    /// An MCP `tools/call` through `/mcp/{server}`, to the policy's
    /// `spec.mcpServers[]` entry `server`.
    Mcp { server: &'a str },
}

impl Proposed<'_> {
    fn label(self) -> &'static str {
        match self {
            Self::Api => "tool_call",
            Self::Chat => "chat_tool_call",
            Self::Mcp { .. } => "mcp_tool_call",
        }
    }
}

/// A tool call to decide.
#[derive(Debug, Clone, Copy)]
pub struct ToolCallRequest<'a> {
    pub proposed: Proposed<'a>,
    pub request_id: &'a str,
    pub who: &'a Identity,
    pub tool: &'a str,
    /// Parsed once from the text as sent: what is decided, digested and
    /// audited is exactly that.
    pub arguments: &'a ToolArguments,
    /// The approval the call names (`/v1/tool-calls` only).
    pub approval: Option<&'a str>,
}

/// A decided tool call, with the policy that decided it.
#[derive(Debug)]
pub struct ToolCallDecision<'s> {
    pub decision: Decision,
    /// The policy governing the agent; `None` when none does.
    pub policy: Option<&'s Policy>,
    /// The arguments' digest (what approvals and the audit identify them
    /// by): of the text as sent, digit for digit, even when it is invalid.
    pub digest: String,
}

/// Decides a tool call and counts the decision.
pub fn decide_tool_call<'s>(
    state: &AppState,
    snapshot: &'s Snapshot,
    call: &ToolCallRequest<'_>,
) -> ToolCallDecision<'s> {
    let evaluated = snapshot.bundle.evaluate_tool(
        &ToolCall {
            namespace: &call.who.namespace,
            agent: &call.who.agent,
            tool: call.tool,
            arguments: call.arguments,
        },
        jiff::Timestamp::now(),
    );
    count(
        state,
        call.proposed.label(),
        (&call.who.namespace, &call.who.agent),
        &evaluated.decision,
    );
    if let Some(policy) = evaluated.policy {
        let observed = crate::security::Observed {
            namespace: &call.who.namespace,
            agent: &call.who.agent,
            policy: Some(&policy.name),
            tool: call.tool,
            arguments: call.arguments.value(),
            digest: call.arguments.digest(),
            outcome: evaluated.decision.outcome,
            request_id: call.request_id,
            approval: call.approval,
        };
        crate::security::report::tool_call(state, &policy.security, &observed);
    }
    ToolCallDecision {
        decision: evaluated.decision,
        policy: evaluated.policy,
        digest: call.arguments.digest().to_owned(),
    }
}

impl ToolCallDecision<'_> {
    /// The call's audit row: the decision, the tool, the arguments'
    /// digest and the arguments as the policy's `spec.audit.arguments`
    /// keeps them; `held` adds where its approval stands.
    pub fn event(&self, call: &ToolCallRequest<'_>, held: Option<&held::Step>) -> AuditEvent {
        let mut event = AuditEvent::from_decision(
            EventKind::ToolCall,
            call.request_id,
            &call.who.namespace,
            &call.who.agent,
            &self.decision,
        );
        event.tool = Some(bounded_tool_name(call.tool).into_owned());
        event.argument_digest = Some(self.digest.clone());
        if let Proposed::Mcp { server } = call.proposed {
            // Where the call goes: the row's provider, `mcp:<server>`.
            event.provider = Some(format!("mcp:{server}"));
        }
        // Invalid arguments are kept as their digest only.
        let arguments = call.arguments.value();
        event.arguments = self
            .policy
            .zip(arguments)
            .and_then(|(p, a)| match p.audit.arguments {
                ArgumentCapture::Digest => None,
                ArgumentCapture::Redacted => Some(redact_arguments(a, &p.audit.redact_keys)),
                ArgumentCapture::Full => Some(a.clone()),
            });
        if let Some(step) = held {
            step.annotate(&mut event);
        }
        event
    }

    /// Audits the decision (see [`Self::event`]): `503 audit.unavailable`
    /// when the audit cannot take it, and the decision must not be given;
    /// otherwise a receipt to wait on ([`recorded`]) before the decision
    /// is given: answered means recorded.
    pub fn audit(
        &self,
        state: &AppState,
        call: &ToolCallRequest<'_>,
        held: Option<&held::Step>,
    ) -> Result<Durable, GatewayError> {
        state
            .audit
            .submit(self.event(call, held))
            .map_err(|e| unaudited(&e, call.request_id))
    }
}

/// A routed (or refused) chat request, with the policy that decided it
/// and its audit row, completed once the provider has answered.
#[derive(Debug)]
pub struct ChatRouting<'s> {
    pub decision: ChatDecision,
    pub policy: Option<&'s Policy>,
    request_id: String,
    event: AuditEvent,
    started: Instant,
}

/// Routes the chat request `request_id` of `who`, asking for `model` with
/// `prompt` (the messages' text: measured, fingerprinted and audited) and
/// `provider_text` (all the provider will see: scanned by the rules); the
/// decision is counted once its fate is known ([`ChatRouting::accept`],
/// [`ChatRouting::refuse`], [`ChatRouting::over_limit`]). An embeddings
/// request is routed the same way, audited as `kind`
/// [`EventKind::Embedding`].
pub fn decide_chat<'s>(
    snapshot: &'s Snapshot,
    (request_id, kind): (&str, EventKind),
    who: &Identity,
    model: &str,
    (prompt, provider_text): (&str, &str),
) -> ChatRouting<'s> {
    let Evaluated { decision, policy } = snapshot.bundle.evaluate_chat(&ChatRequest {
        namespace: &who.namespace,
        agent: &who.agent,
        model,
        prompt,
        provider_text,
    });
    let mut event = AuditEvent::from_decision(
        kind,
        request_id,
        &who.namespace,
        &who.agent,
        &decision.decision,
    );
    let fingerprint = PromptFingerprint::of(prompt);
    event.prompt_sha256 = Some(fingerprint.sha256);
    event.prompt_chars = Some(fingerprint.chars as i64);
    event.model = Some(model.to_owned());
    if policy.is_some_and(|p| p.audit.prompts == PromptCapture::Full) {
        event.prompt_text = Some(prompt.to_owned());
    }
    ChatRouting {
        decision,
        policy,
        request_id: request_id.to_owned(),
        event,
        started: Instant::now(),
    }
}

impl<'s> ChatRouting<'s> {
    /// The route to take and the policy that chose it, unless the request
    /// is refused.
    pub fn permitted(&self) -> Option<(&Route, &'s Policy)> {
        Some((self.decision.permitted_route()?, self.policy?))
    }

    /// Audits a refusal (as `--audit-chat-events` says) and says why:
    /// `403` with the decision's reason.
    pub async fn refuse(self, state: &AppState) -> GatewayError {
        self.count(state);
        let d = &self.decision.decision;
        let refused = GatewayError::Refused {
            code: d.reason_code,
            message: format!(
                "{} request refused ({})",
                self.event.kind.as_str(),
                d.reason_code
            ),
            details: serde_json::json!({"reasonCode": d.reason_code.as_str(), "rule": d.rule, "policy": d.policy, "requestId": self.request_id}),
        };
        self.record_refusal(state, refused).await
    }

    /// Audits a request the policy routes but one of its `spec.limits`
    /// refuses, and says so: `429` with the limit's reason code and when
    /// it frees.
    pub async fn over_limit(mut self, state: &AppState, over: OverLimit) -> GatewayError {
        let e = &mut self.event;
        e.set_decision(AuditDecision::Deny);
        e.reason_codes = vec![over.code.as_str().to_owned()];
        e.rule = Some(over.field.clone());
        state
            .metrics
            .decisions
            .with_label_values(&[
                &e.namespace,
                &e.agent,
                e.kind.as_str(),
                "Deny",
                over.code.as_str(),
                &over.field,
            ])
            .inc();
        let refused = GatewayError::OverLimit {
            code: over.code,
            message: format!(
                "{} request refused ({}): {} is {}; try again in {} s",
                e.kind.as_str(),
                over.code,
                over.field,
                over.limit,
                over.retry_after
            ),
            retry_after: over.retry_after,
            details: serde_json::json!({"reasonCode": over.code.as_str(), "rule": over.field, "policy": self.decision.decision.policy, "requestId": self.request_id, "retryAfterSeconds": over.retry_after}),
        };
        self.record_refusal(state, refused).await
    }

    /// Counts the routing decision, once its fate is known: refused, or
    /// admitted and about to go out (a request over a limit is counted by
    /// [`Self::over_limit`] instead, as refused).
    fn count(&self, state: &AppState) {
        let e = &self.event;
        count(
            state,
            e.kind.as_str(),
            (&e.namespace, &e.agent),
            &self.decision.decision,
        );
    }

    /// Audits the refusal (as `--audit-chat-events` says): `refused` once
    /// it is recorded, else why it could not be.
    async fn record_refusal(self, state: &AppState, refused: GatewayError) -> GatewayError {
        let receipt = match state.audit.reserve() {
            Ok(row) => chat_row(state, row, self.event),
            Err(e) => return unaudited(&e, &self.request_id),
        };
        match recorded(receipt, &self.request_id).await {
            Ok(()) => refused,
            Err(unaudited) => unaudited,
        }
    }

    /// The request's audit row, accepted before its prompt is sent
    /// anywhere: `503 audit.unavailable` when the audit cannot take it
    /// (`FailClosed` while the database is down, a full spool or queue).
    /// [`Self::served`] fills it in once the provider has answered.
    pub fn accept(&self, state: &AppState) -> Result<Reservation, GatewayError> {
        self.count(state);
        state
            .audit
            .reserve()
            .map_err(|e| unaudited(&e, &self.request_id))
    }

    /// Audits the request, in its accepted `row`, as served by `route`
    /// (the fallback's, if it was used): `Ok(tokens)` the provider
    /// answered (with the tokens it reported, if known yet; counted in
    /// `palisade_tokens_total` too), `Err(status)` it failed. The receipt
    /// to wait on before answering ([`recorded`]; ready at once with
    /// `--audit-chat-events buffered`).
    pub fn served(
        mut self,
        state: &AppState,
        row: Reservation,
        route: &Route,
        upstream: Result<Option<Tokens>, Option<i64>>,
    ) -> Durable {
        let e = &mut self.event;
        e.provider = Some(route.provider.clone());
        e.model = Some(route.model.clone());
        e.reason_codes = route
            .reasons
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        e.rule = route.rule.clone();
        let elapsed = self.started.elapsed();
        e.latency_us = Some(elapsed.as_micros() as i64);
        let error_type = match &upstream {
            Ok(_) => String::new(),
            Err(Some(status)) => status.to_string(),
            Err(None) => "unreachable".to_owned(),
        };
        state
            .metrics
            .gen_ai
            .request_duration
            .with_label_values(&[
                GenAi::operation(e.kind.as_str()),
                &route.provider,
                &route.model,
                &error_type,
            ])
            .observe(elapsed.as_secs_f64());
        match upstream {
            Ok(tokens) => {
                e.upstream_status = Some(200);
                if let Some(t) = tokens {
                    count_tokens(state, e, t, self.policy);
                }
            }
            Err(status) => {
                e.upstream_status = status;
                e.set_decision(AuditDecision::UpstreamError);
            }
        }
        chat_row(state, row, self.event)
    }
}

/// Puts `tokens` in the routing event `e` (served: provider and model
/// set), counts them in `palisade_tokens_total`, and watches them for a
/// jump by `policy`'s thresholds (the policy that routed the request).
pub fn count_tokens(state: &AppState, e: &mut AuditEvent, tokens: Tokens, policy: Option<&Policy>) {
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    e.input_tokens = Some(as_i64(tokens.input));
    e.output_tokens = Some(as_i64(tokens.output));
    e.cached_tokens = Some(as_i64(tokens.cached));
    let provider = e.provider.as_deref().unwrap_or("");
    let model = e.model.as_deref().unwrap_or("");
    let operation = GenAi::operation(e.kind.as_str());
    for (kind, n) in [("input", tokens.input), ("output", tokens.output)] {
        state
            .metrics
            .gen_ai
            .token_usage
            .with_label_values(&[operation, provider, model, kind])
            .observe(n as f64);
    }
    for (kind, n) in [
        ("input", tokens.input),
        ("output", tokens.output),
        ("cached", tokens.cached),
    ] {
        state
            .metrics
            .tokens
            .with_label_values(&[&e.namespace, &e.agent, provider, model, kind])
            .inc_by(n);
    }
    if let Some(policy) = policy {
        crate::security::report::tokens(
            state,
            &policy.security,
            (&e.namespace, &e.agent, Some(&policy.name)),
            tokens.input.saturating_add(tokens.output),
            &e.request_id,
        );
    }
}

/// When a chat request's routing event must be durable
/// (`--audit-chat-events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ChatEvents {
    /// Answered only once its event is recorded (the default).
    #[default]
    Durable,
    /// Answered at once; the event is written moments later, and lost if
    /// the process dies first (counted in `palisade_audit_buffered_total`).
    Buffered,
}

/// Fills a chat request's `row` with `event` as the chat-events setting
/// says: the receipt to wait on.
fn chat_row(state: &AppState, row: Reservation, event: AuditEvent) -> Durable {
    match state.chat_events {
        ChatEvents::Durable => row.submit(event),
        ChatEvents::Buffered => {
            row.record(event);
            state.metrics.audit.buffered.inc();
            Durable::ready()
        }
    }
}

/// Waits until the audit has recorded what `receipt` stands for:
/// `503 audit.unavailable` when it could not be made durable (the
/// decision is then not given).
pub async fn recorded(receipt: Durable, request_id: &str) -> Result<(), GatewayError> {
    receipt.wait().await.map_err(|e| unaudited(&e, request_id))
}

/// Waits while the audit writer is behind (backpressure), before any work
/// whose decisions it will record: `503 audit.unavailable` only when it
/// stays behind for the writer's backpressure timeout.
pub async fn admit(state: &AppState, request_id: &str) -> Result<(), GatewayError> {
    state
        .audit
        .room()
        .await
        .map_err(|e| unaudited(&e, request_id))
}

/// `503 audit.unavailable`: the audit refused a decision's row.
pub(crate) fn unaudited(e: &palisade_audit::AuditError, request_id: &str) -> GatewayError {
    tracing::error!(error = %e, request_id, "decision not audited; refusing the request");
    GatewayError::AuditUnavailable {
        request_id: Some(request_id.to_owned()),
    }
}

/// Counts a decision of `kind` for the agent `who`, labelled by its
/// namespace and name (authenticated agents are the ones policies
/// declare) and the rule (or grant) that made it, `none` when none did:
/// never by a tool name, so callers cannot grow the series with made-up
/// names (a glob rule counts every name it matched under itself).
fn count(state: &AppState, kind: &str, (namespace, agent): (&str, &str), decision: &Decision) {
    state
        .metrics
        .decisions
        .with_label_values(&[
            namespace,
            agent,
            kind,
            decision.outcome.as_str(),
            decision.reason_code.as_str(),
            decision.rule.as_deref().unwrap_or("none"),
        ])
        .inc();
    let scope = match decision.reason_code {
        ReasonCode::KillSwitchPolicy => "policy",
        ReasonCode::KillSwitchAgent => "agent",
        _ => return,
    };
    state
        .metrics
        .kill_switch_hits
        .with_label_values(&[namespace, scope])
        .inc();
}

/// A tool name as the audit and explanations show it: at most
/// [`MAX_TOOL_NAME_BYTES`] bytes (a longer one, refused anyway, is cut at a
/// character boundary and ends in `…`).
pub fn bounded_tool_name(name: &str) -> Cow<'_, str> {
    if name.len() <= MAX_TOOL_NAME_BYTES {
        return Cow::Borrowed(name);
    }
    let mut end = MAX_TOOL_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &name[..end]))
}
