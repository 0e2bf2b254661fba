//! Prompt-based tool calling, for models without tool support (a
//! provider's `toolCalling: Prompt`). The request's `tools` go into a
//! system message in a fixed format ([`instructions`]); earlier calls and
//! results in the conversation become text the model can read; and the
//! reply is read back into OpenAI `tool_calls` ([`read_calls`]), which the
//! gateway then decides like any other. A reply that tries to call a tool
//! but cannot be read is sent back once with what was wrong; a second bad
//! reply is reported to the client in the answer's text, and nothing is
//! called.
//!
//! The format, as the model is told:
//!
//! ```text
//! <tool_calls>
//! [{"name": "sql_query", "arguments": {"database": "clinic", "query": "SELECT 1"}}]
//! </tool_calls>
//! ```
//!
//! and results come back as `<tool_result id="call_1">...</tool_result>`
//! in a user message.

use super::framing::{self, ByteStream};
use super::openai::{ChatCompletion, ChatRequest, Content, Message, Tool, ToolCall, Usage};
use super::{ProviderReply, Upstream, UpstreamError};
use axum::body::Bytes;
use futures_util::StreamExt;
use palisade_policy::Provider;
use serde_json::{Map, Value, json};

pub const OPEN: &str = "<tool_calls>";
pub const CLOSE: &str = "</tool_calls>";

/// Whether the request gives the model tools to call (`tool_choice:
/// "none"` gives none: the request goes as it is, without them).
pub fn applies(request: &ChatRequest) -> bool {
    request.tools.as_ref().is_some_and(|t| !t.is_empty())
}

/// Calls `provider` with the tools in the prompt, and reads the reply's
/// calls (see the module's documentation).
pub async fn call(
    upstream: &Upstream<'_>,
    provider: &Provider,
    model: &str,
    request: &ChatRequest,
) -> Result<ProviderReply, UpstreamError> {
    let tools = request.tools.as_deref().unwrap_or_default();
    let names: Vec<&str> = tools.iter().map(|t| t.function.name.as_str()).collect();
    let mut asked = rewrite(request);
    let mut completion = upstream
        .call_native(provider, model, &asked)
        .await?
        .into_completion()?;
    let mut usage = completion.usage.take();
    let mut retried = false;
    loop {
        let text = first_text(&completion);
        match read_calls(&text, &names) {
            Ok(None) => break,
            Ok(Some((before, calls))) => {
                set_answer(&mut completion, before, calls);
                break;
            }
            Err(why) if !retried => {
                retried = true;
                let messages = asked.messages.get_or_insert_default();
                messages.push(Message::assistant(text, Vec::new()));
                messages.push(user(format!(
                    "Your tool call could not be read: {why}. Reply again with only {OPEN}[{{\"name\": ..., \"arguments\": {{...}}}}]{CLOSE}, naming one of the tools listed, or answer without calling a tool."
                )));
                completion = upstream
                    .call_native(provider, model, &asked)
                    .await?
                    .into_completion()?;
                usage = Usage::plus(usage, completion.usage.take());
            }
            Err(why) => {
                let report = format!(
                    "[palisade] The model tried to call a tool, but its reply could not be read twice ({why}); nothing was called."
                );
                set_answer(&mut completion, report, Vec::new());
                break;
            }
        }
    }
    completion.usage = usage;
    if !request.streamed() {
        return Ok(ProviderReply::Completion(completion));
    }
    Ok(ProviderReply::Stream(as_stream(completion)))
}

/// A whole completion as an SSE stream (its usage included: the gateway
/// takes it out again if the client did not ask for it).
fn as_stream(completion: ChatCompletion) -> ByteStream {
    let mut out = Vec::new();
    for chunk in completion.into_chunks() {
        out.extend_from_slice(&framing::event(&chunk));
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    futures_util::stream::once(async move { Ok(Bytes::from(out)) }).boxed()
}

/// The request as a model without tool support gets it: no `tools` or
/// `tool_choice`, a system message describing the tools first, earlier
/// calls and results as text, a whole answer asked for.
pub fn rewrite(request: &ChatRequest) -> ChatRequest {
    let mut out = request.clone();
    let tools = out.tools.take().unwrap_or_default();
    let choice = out.rest.remove("tool_choice");
    out.rest.remove("parallel_tool_calls");
    out.rest.remove("stream_options");
    out.stream = None;
    let required = matches!(&choice, Some(Value::String(s)) if s == "required")
        || matches!(&choice, Some(Value::Object(_)));
    let mut messages = vec![Message {
        role: Some("system".into()),
        content: Some(Content::Text(instructions(&tools, required))),
        ..Message::default()
    }];
    messages.extend(request.messages().iter().map(as_text));
    out.messages = Some(messages);
    out
}

/// The system message: the format, then each tool as one JSON line.
pub fn instructions(tools: &[Tool], required: bool) -> String {
    let mut out = format!(
        "You can call tools. To call one or more, reply with nothing but this block, one object per call:\n{OPEN}\n[{{\"name\": \"<tool name>\", \"arguments\": {{<the arguments as JSON>}}}}]\n{CLOSE}\nEach result comes back in a <tool_result id=\"...\"> block. {}\n\nTools:\n",
        if required {
            "You must call a tool now."
        } else {
            "When no tool is needed, answer normally, without the block."
        }
    );
    for tool in tools {
        let f = &tool.function;
        let line = json!({
            "name": f.name,
            "description": f.description,
            "parameters": f.parameters.clone().unwrap_or_else(|| json!({"type": "object"})),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// A message of the conversation as a model without tool support reads
/// it: an assistant's calls in the block, a tool's result in a user
/// message.
fn as_text(message: &Message) -> Message {
    match (message.role(), &message.tool_calls) {
        ("assistant", Some(calls)) if !calls.is_empty() => {
            let listed: Vec<Value> = calls
                .iter()
                .map(|c| json!({"name": c.function.name, "arguments": c.arguments()}))
                .collect();
            let text = message.text();
            let sep = if text.is_empty() { "" } else { "\n" };
            Message::assistant(
                format!("{text}{sep}{OPEN}\n{}\n{CLOSE}", Value::Array(listed)),
                Vec::new(),
            )
        }
        ("tool", _) => user(format!(
            "<tool_result id=\"{}\">\n{}\n</tool_result>",
            message.tool_call_id.as_deref().unwrap_or(""),
            message.text()
        )),
        _ => message.clone(),
    }
}

fn user(text: String) -> Message {
    Message {
        role: Some("user".into()),
        content: Some(Content::Text(text)),
        ..Message::default()
    }
}

fn first_text(completion: &ChatCompletion) -> String {
    completion
        .choices
        .first()
        .and_then(|c| c.message.as_ref())
        .map(Message::text)
        .unwrap_or_default()
}

/// The first choice's answer: `text`, and `calls` (finishing for them).
fn set_answer(completion: &mut ChatCompletion, text: String, calls: Vec<ToolCall>) {
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let message = Message::assistant(text, calls);
    match completion.choices.first_mut() {
        Some(choice) => {
            choice.message = Some(message);
            choice.finish_reason = Some(finish.into());
        }
        None => completion.choices.push(super::openai::Choice {
            message: Some(message),
            finish_reason: Some(finish.into()),
            ..Default::default()
        }),
    }
}

/// The calls in a reply: `None` when it calls no tool, else the text
/// before the block and the calls; or what is wrong with the block (no
/// end, not JSON, not a list of `{"name", "arguments"}`, a tool not
/// offered).
pub fn read_calls(text: &str, offered: &[&str]) -> Result<Option<(String, Vec<ToolCall>)>, String> {
    let Some(start) = text.find(OPEN) else {
        return Ok(None);
    };
    let before = text[..start].trim_end().to_owned();
    let rest = &text[start + OPEN.len()..];
    let end = rest
        .find(CLOSE)
        .ok_or_else(|| format!("the block has no closing {CLOSE}"))?;
    let inner = strip_fence(rest[..end].trim());
    let listed: Value =
        serde_json::from_str(inner).map_err(|e| format!("the block is not JSON ({e})"))?;
    let listed = match listed {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => return Err("the block must hold a JSON list of calls".into()),
    };
    if listed.is_empty() {
        return Err("the block lists no call".into());
    }
    let mut calls = Vec::with_capacity(listed.len());
    for (i, item) in listed.into_iter().enumerate() {
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("call {i} has no \"name\""))?;
        if !offered.contains(&name) {
            return Err(format!(
                "there is no tool {name:?}; the tools are {}",
                offered.join(", ")
            ));
        }
        let arguments = match item.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(a @ Value::Object(_)) => a.clone(),
            Some(_) => return Err(format!("the arguments of call {i} are not a JSON object")),
        };
        calls.push(ToolCall::function(
            Some(format!("call_prompt_{i}")),
            name.to_owned(),
            &arguments,
        ));
    }
    Ok(Some((before, calls)))
}

/// A block's JSON without a Markdown code fence around it.
fn strip_fence(inner: &str) -> &str {
    let Some(fenced) = inner.strip_prefix("```") else {
        return inner;
    };
    let body = fenced.split_once('\n').map_or("", |(_, b)| b);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_read_from_the_block_and_anything_off_is_said_plainly() {
        let offered = ["sql_query", "lookup"];
        assert_eq!(read_calls("Ann is patient 1.", &offered), Ok(None));
        let (before, calls) = read_calls(
            "Let me check.\n<tool_calls>\n[{\"name\": \"lookup\", \"arguments\": {\"id\": 1}}, {\"name\": \"sql_query\"}]\n</tool_calls>",
            &offered,
        )
        .unwrap()
        .unwrap();
        assert_eq!(before, "Let me check.");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].function.name, "lookup");
        assert_eq!(calls[0].function.arguments, r#"{"id":1}"#);
        assert_eq!(calls[1].function.arguments, "{}");
        // A fenced block, and a single object, are read too.
        let fenced =
            "<tool_calls>\n```json\n{\"name\": \"lookup\", \"arguments\": {}}\n```\n</tool_calls>";
        assert_eq!(read_calls(fenced, &offered).unwrap().unwrap().1.len(), 1);
        for (bad, says) in [
            ("<tool_calls>[{\"name\": \"lookup\"}]", "no closing"),
            ("<tool_calls>{not json</tool_calls>", "not JSON"),
            ("<tool_calls>[]</tool_calls>", "no call"),
            ("<tool_calls>\"lookup\"</tool_calls>", "JSON list"),
            (
                "<tool_calls>[{\"arguments\": {}}]</tool_calls>",
                "no \"name\"",
            ),
            (
                "<tool_calls>[{\"name\": \"rm\"}]</tool_calls>",
                "there is no tool \"rm\"; the tools are sql_query, lookup",
            ),
            (
                "<tool_calls>[{\"name\": \"lookup\", \"arguments\": [1]}]</tool_calls>",
                "not a JSON object",
            ),
        ] {
            let err = read_calls(bad, &offered).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_model_reads_its_tools_and_earlier_calls_as_text() {
        let request: ChatRequest = serde_json::from_value(json!({
            "model": "m", "stream": true, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks up.", "parameters": {"type": "object"}}}],
            "messages": [
                {"role": "user", "content": "who?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"id\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "Ann"}
            ]
        }))
        .unwrap();
        let sent = serde_json::to_value(rewrite(&request)).unwrap();
        assert!(sent.get("tools").is_none() && sent.get("tool_choice").is_none());
        assert!(sent.get("stream").is_none());
        let m = sent["messages"].as_array().unwrap();
        let system = m[0]["content"].as_str().unwrap();
        assert!(system.contains(OPEN) && system.contains("You must call a tool now."));
        assert!(
            system.contains(
                r#"{"description":"Looks up.","name":"lookup","parameters":{"type":"object"}}"#
            ),
            "{system}"
        );
        assert_eq!(m[1]["content"], "who?");
        assert_eq!(
            m[2]["content"],
            "<tool_calls>\n[{\"arguments\":{\"id\":1},\"name\":\"lookup\"}]\n</tool_calls>"
        );
        assert!(m[2].get("tool_calls").is_none());
        assert_eq!(m[3]["role"], "user");
        assert_eq!(
            m[3]["content"],
            "<tool_result id=\"c1\">\nAnn\n</tool_result>"
        );
    }
}
