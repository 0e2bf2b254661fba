//! The server-side tool loop of `POST /v1/chat/completions`: when a
//! request names tools its agent's policy runs (`spec.tools.run`; or the
//! policy offers them `Always`), the gateway shows the model the policy's
//! schemas for them, and each call the model proposes of one of them is
//! decided like any tool call, run by Palisade when allowed, and its
//! sanitized result fed back to the model — up to
//! `spec.tools.run.maxSteps` rounds. The client gets the final message
//! and a trace of every call and decision (`palisade.toolLoop`,
//! [`Trace`]).
//!
//! The loop ends when the model answers without calling one of these
//! tools, when it calls a tool the client runs (gated and handed on as
//! ever), when a call is held for a human's approval (the Approval is
//! named in the answer), or at the limit. Every step is routed, audited,
//! limited and charged as a chat completion of its own (same request id);
//! the provider is asked for whole answers, and a client that asked for a
//! stream gets the final answer as one ([`answer`]).

mod answer;

use super::gate::{Gate, tool_name, why};
use super::{ChatRouted, gated, route_chat};
use crate::credentials::Identity;
use crate::decisions::held::hold_in_background;
use crate::decisions::{Proposed, ToolCallRequest, decide_tool_call, recorded};
use crate::error::GatewayError;
use crate::providers::openai::{
    ChatCompletion, ChatRequest, Content, Message, Tool, ToolCall, Usage,
};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::tools;
use axum::response::Response;
use palisade_policy::{Outcome, Route, RunnableTools, ToolArguments, ToolOffer};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// A chat request the loop serves: as each step sends it (the policy's
/// schemas in `tools`, a whole answer asked for), and how its client asked
/// to be answered.
#[derive(Debug)]
pub struct ToolLoop {
    request: ChatRequest,
    /// The client asked for a stream.
    streamed: bool,
    /// ... with its usage event (`stream_options.include_usage`).
    usage: bool,
    /// The tools the agent's policy runs (the request's snapshot's).
    run: RunnableTools,
}

/// Whether `request` goes through the loop, and how: its agent's policy
/// runs tools, and the request names one of them in `tools` by function
/// name (or the policy offers them `Always`). The policy's schema replaces
/// whatever the request described under that name.
pub fn plan(
    snapshot: &Snapshot,
    who: &Identity,
    request: &ChatRequest,
) -> Result<Option<ToolLoop>, GatewayError> {
    let Some((policy, _)) = snapshot.bundle.policy_for(&who.namespace, &who.agent) else {
        return Ok(None);
    };
    let run = &policy.runnable;
    let ours = |t: &Tool| is_function(t) && run.get(&t.function.name).is_some();
    let asked = request.tools.as_deref().unwrap_or_default();
    let offered: Vec<Value> = run
        .all()
        .filter(|t| {
            run.offer == ToolOffer::Always
                || asked.iter().any(|a| ours(a) && a.function.name == t.name())
        })
        .map(|t| t.schema())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    if request
        .rest
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return Err(GatewayError::BadRequest(
            "n: a request that names tools Palisade runs is answered with one choice; leave `n` out or set it to 1".into(),
        ));
    }
    let mut tools: Vec<Tool> = asked.iter().filter(|t| !ours(t)).cloned().collect();
    // Every schema reads as a `tools[]` entry (tests/tool_loop.rs sends
    // each kind).
    tools.extend(
        offered
            .into_iter()
            .filter_map(|s| serde_json::from_value(s).ok()),
    );
    let mut looped = request.clone();
    looped.tools = Some(tools);
    looped.stream = None;
    looped.rest.remove("stream_options");
    Ok(Some(ToolLoop {
        request: looped,
        streamed: request.streamed(),
        usage: request.asked_for_usage(),
        run: run.clone(),
    }))
}

/// A `tools[]` entry of type `function` (or of no type).
fn is_function(tool: &Tool) -> bool {
    tool.rest
        .get("type")
        .is_none_or(|t| t.as_str() == Some("function"))
}

/// What the loop did: the client's `palisade.toolLoop`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    /// Rounds of tools run.
    pub steps: u32,
    /// Answers asked of the model.
    pub model_calls: u32,
    /// Why it ended: `answer`, `clientTools`, `approval` or `maxSteps`.
    pub stopped_by: &'static str,
    /// Every call of a tool Palisade runs the model proposed, in order.
    pub calls: Vec<TracedCall>,
    /// The messages the loop added to the conversation (each assistant
    /// message with its calls, each call's `role: "tool"` result, results
    /// sanitized): append them before the final message to keep a whole
    /// history.
    pub messages: Vec<Message>,
}

/// One call: what was decided, and what running it gave.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TracedCall {
    pub step: u32,
    pub id: String,
    pub tool: String,
    /// The decision in effect: `Allow`, `Deny` or `RequireApproval`.
    pub decision: &'static str,
    pub reason_code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A held call: the Approval requested, and the arguments to send
    /// with it to `POST /v1/tool-calls` once approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// An allowed call: what running it gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub reason_code: &'static str,
    pub duration_ms: f64,
    /// Bytes the tool produced, before sanitizing.
    pub bytes: u64,
    pub truncated: bool,
}

/// Serves `looping` (see the module's documentation).
pub async fn run(
    state: AppState,
    snapshot: Arc<Snapshot>,
    who: Identity,
    (request_id, traceparent): (String, Option<&str>),
    mut looping: ToolLoop,
) -> Result<Response, GatewayError> {
    let mut trace = Trace::default();
    let mut usage = None;
    loop {
        trace.model_calls += 1;
        let ChatRouted {
            served,
            reply,
            mut gate,
            ..
        } = route_chat(
            state.clone(),
            Arc::clone(&snapshot),
            who.clone(),
            (request_id.clone(), traceparent),
            &looping.request,
        )
        .await?;
        // A step asks for a whole answer, never a stream.
        let mut completion = reply
            .into_completion()
            .map_err(|error| GatewayError::Upstream {
                provider: served.provider.clone(),
                request_id: request_id.clone(),
                error,
            })?;
        usage = Usage::plus(usage, completion.usage.take());
        let run = &looping.run;
        let (message, ours) = take_ours(&mut completion, run);
        let stop = if ours.is_empty() {
            Some(if has_calls(&message) {
                "clientTools"
            } else {
                "answer"
            })
        } else if trace.steps >= run.max_steps {
            let names: Vec<String> = ours.iter().filter_map(tool_name).collect();
            explain(
                &mut completion,
                &format!(
                    "[palisade] The tool loop stopped after {} rounds (spec.tools.run.maxSteps); the calls the model proposed next ({}) were not run.",
                    run.max_steps,
                    names.join(", ")
                ),
            );
            Some("maxSteps")
        } else {
            trace.steps += 1;
            let step = Step::run(&state, &snapshot, &who, &request_id, trace.steps, &ours).await?;
            let assistant = Message {
                tool_calls: Some(step.calls),
                ..message.clone()
            };
            trace.calls.extend(step.traced);
            trace.messages.push(assistant.clone());
            trace.messages.extend(step.results.iter().cloned());
            if !step.held.is_empty() {
                explain(&mut completion, &step.held.join("\n"));
                Some("approval")
            } else if has_calls(&message) {
                Some("clientTools")
            } else {
                let messages = looping.request.messages.get_or_insert_default();
                messages.push(assistant);
                messages.extend(step.results);
                let_the_model_choose(&mut looping.request);
                None
            }
        };
        if let Some(stopped_by) = stop {
            trace.stopped_by = stopped_by;
            return finish(
                completion,
                &mut gate,
                &served,
                &request_id,
                usage,
                trace,
                &looping,
            )
            .await;
        }
    }
}

/// The final answer: the client's calls gated (and recorded), the usage
/// of every step, the trace.
async fn finish(
    mut completion: ChatCompletion,
    gate: &mut Gate,
    served: &Route,
    request_id: &str,
    usage: Option<Usage>,
    trace: Trace,
    looping: &ToolLoop,
) -> Result<Response, GatewayError> {
    for choice in &mut completion.choices {
        let called = choice.message.as_ref().is_some_and(has_calls);
        if !called && choice.finish_reason.as_deref() == Some("tool_calls") {
            choice.finish_reason = Some("stop".into());
        }
    }
    gated(&mut completion, gate).await?;
    completion.usage = usage;
    completion.rest.remove("palisade");
    Ok(answer::respond(
        completion,
        served,
        request_id,
        &trace,
        (looping.streamed, looping.usage),
    ))
}

/// Takes the calls of tools Palisade runs out of the first choice's
/// message (the loop answers one choice): the message (without them),
/// and them.
fn take_ours(completion: &mut ChatCompletion, run: &RunnableTools) -> (Message, Vec<ToolCall>) {
    let Some(message) = completion
        .choices
        .first_mut()
        .and_then(|c| c.message.as_mut())
    else {
        return (Message::default(), Vec::new());
    };
    let (ours, theirs): (Vec<ToolCall>, Vec<ToolCall>) = message
        .tool_calls
        .take()
        .unwrap_or_default()
        .into_iter()
        .partition(|c| {
            matches!(c.kind.as_deref(), None | Some("function"))
                && run.get(&c.function.name).is_some()
        });
    message.tool_calls = (!theirs.is_empty()).then_some(theirs);
    (message.clone(), ours)
}

fn has_calls(message: &Message) -> bool {
    message.tool_calls.as_ref().is_some_and(|c| !c.is_empty())
}

/// Adds `text` to the first choice's message.
fn explain(completion: &mut ChatCompletion, text: &str) {
    if let Some(message) = completion
        .choices
        .first_mut()
        .and_then(|c| c.message.as_mut())
    {
        let prior = match &message.content {
            Some(Content::Text(c)) if !c.is_empty() => format!("{c}\n"),
            _ => String::new(),
        };
        message.content = Some(Content::Text(format!("{prior}{text}")));
    }
}

/// After a round, a `tool_choice` that forces a call (`required`, or a
/// named function) becomes `auto`: forced again, the model could never
/// answer.
fn let_the_model_choose(request: &mut ChatRequest) {
    let forced = match request.rest.get("tool_choice") {
        Some(Value::String(s)) => s == "required",
        Some(Value::Object(_)) => true,
        _ => false,
    };
    if forced {
        request
            .rest
            .insert("tool_choice".into(), Value::String("auto".into()));
    }
}

/// One round: each call decided, recorded, and run when allowed.
struct Step {
    /// The calls as the assistant message carries them (each with an id).
    calls: Vec<ToolCall>,
    /// A `role: "tool"` message for each.
    results: Vec<Message>,
    traced: Vec<TracedCall>,
    /// Explanations of the calls held for approval.
    held: Vec<String>,
}

impl Step {
    async fn run(
        state: &AppState,
        snapshot: &Snapshot,
        who: &Identity,
        request_id: &str,
        step: u32,
        calls: &[ToolCall],
    ) -> Result<Self, GatewayError> {
        let mut out = Self {
            calls: Vec::with_capacity(calls.len()),
            results: Vec::with_capacity(calls.len()),
            traced: Vec::with_capacity(calls.len()),
            held: Vec::new(),
        };
        for (i, call) in calls.iter().enumerate() {
            let mut call = call.clone();
            let id = call
                .id
                .get_or_insert_with(|| format!("call_palisade_{step}_{i}"))
                .clone();
            let name = call.function.name.clone();
            let arguments = ToolArguments::parse(&call.function.arguments);
            let request = ToolCallRequest {
                proposed: Proposed::Chat,
                request_id,
                who,
                tool: &name,
                arguments: &arguments,
                approval: None,
            };
            let decided = decide_tool_call(state, snapshot, &request);
            recorded(decided.audit(state, &request, None)?, request_id).await?;
            let d = &decided.decision;
            let mut traced = TracedCall {
                step,
                id: id.clone(),
                tool: name.clone(),
                decision: d.effective_outcome().as_str(),
                reason_code: d.reason_code.as_str(),
                rule: d.rule.clone(),
                approval: None,
                arguments: None,
                execution: None,
            };
            let runnable = decided
                .policy
                .and_then(|p| p.runnable.get(&name).map(|t| (p, t)));
            let content = match (d.effective_outcome(), runnable, decided.policy) {
                (Outcome::Allow, Some((policy, tool)), _) => {
                    let results = &policy.runnable.results;
                    let ran = tools::run_recorded(state, &request, d, tool, results).await?;
                    traced.execution = Some(Execution {
                        reason_code: ran.code().as_str(),
                        duration_ms: ran.duration.as_secs_f64() * 1000.0,
                        bytes: ran.produced,
                        truncated: ran.outcome.as_ref().is_ok_and(|r| r.truncated),
                    });
                    match ran.outcome {
                        Ok(result) => result.content,
                        Err(failure) => format!(
                            "[palisade] `{name}` failed ({}): {}",
                            failure.code(),
                            failure.message()
                        ),
                    }
                }
                (Outcome::Allow, None, _) => format!(
                    "[palisade] `{name}` is allowed, but the policy that decided it does not run it; it was not run."
                ),
                (Outcome::Deny, ..) => format!(
                    "[palisade] The tool call `{name}` was blocked by policy ({}); it was not run.",
                    why(d)
                ),
                (Outcome::RequireApproval, _, Some(policy)) => {
                    let approval = hold_in_background(state, policy, &request, &decided);
                    let text = held_text(&name, &why(d), &approval);
                    traced.approval = Some(approval);
                    traced.arguments = Some(call.function.arguments.clone());
                    out.held.push(text.clone());
                    text
                }
                (Outcome::RequireApproval, _, None) => format!(
                    "[palisade] The tool call `{name}` needs a human's approval, but no policy names this agent; it was not run."
                ),
            };
            out.results.push(tool_message(id, content));
            out.traced.push(traced);
            out.calls.push(call);
        }
        Ok(out)
    }
}

fn held_text(name: &str, why: &str, approval: &str) -> String {
    format!(
        "[palisade] The tool call `{name}` needs a human's approval ({why}); it was not run. Approval {approval} was requested: poll GET /v1/approvals/{approval}; once approved, run it with POST /v1/tool-calls, \"approval\": \"{approval}\" and \"execute\": true (the same arguments)."
    )
}

fn tool_message(id: String, content: String) -> Message {
    Message {
        role: Some("tool".into()),
        content: Some(Content::Text(content)),
        tool_call_id: Some(id),
        ..Message::default()
    }
}
