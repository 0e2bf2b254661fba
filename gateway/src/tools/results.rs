//! Tool results on their way to a model or a client: those of the tools
//! Palisade runs ([`finish`]) and the `role: "tool"` messages agents send
//! back in chat ([`sanitize_tool_messages`]; the Messages and Responses
//! APIs' tool results arrive as such messages too), sanitized and capped
//! as the policy's `spec.tools.results` says, each replacement counted in
//! `palisade_tool_result_redactions_total`.

use super::ToolResult;
use crate::metrics::GatewayMetrics;
use crate::providers::openai::{ChatRequest, Content};
use palisade_policy::{Redactions, ResultSettings, cap, sanitize_json, sanitize_text};
use serde_json::Value;

/// Sanitizes (if on) and caps a result.
pub fn finish(
    mut value: Value,
    settings: &ResultSettings,
    redactions: &mut Redactions,
) -> ToolResult {
    if settings.sanitize {
        sanitize_json(&mut value, redactions);
    }
    let text = value.to_string();
    let max = usize::try_from(settings.max_bytes).unwrap_or(usize::MAX);
    if text.len() <= max {
        return ToolResult {
            value,
            content: text,
            truncated: false,
        };
    }
    let content = cap(text, max, redactions);
    ToolResult {
        value: Value::String(content.clone()),
        content,
        truncated: true,
    }
}

/// `request` with the text of its `role: "tool"` messages sanitized and
/// capped, if that changed anything (`None`: send it as it is).
pub fn sanitize_tool_messages(
    request: &ChatRequest,
    settings: &ResultSettings,
    metrics: &GatewayMetrics,
) -> Option<ChatRequest> {
    if !settings.sanitize {
        return None;
    }
    let messages = request.messages.as_ref()?;
    let max = usize::try_from(settings.max_bytes).unwrap_or(usize::MAX);
    let mut redactions = Redactions::default();
    let mut changed = None::<ChatRequest>;
    for (i, m) in messages.iter().enumerate() {
        if m.role() != "tool" {
            continue;
        }
        let Some(content) = &m.content else { continue };
        let clean = match content {
            Content::Text(text) => Content::Text(cap(
                sanitize_text(text, &mut redactions),
                max,
                &mut redactions,
            )),
            Content::Parts(parts) => {
                let mut parts = parts.clone();
                for p in &mut parts {
                    if let Some(text) = &p.text {
                        p.text = Some(cap(
                            sanitize_text(text, &mut redactions),
                            max,
                            &mut redactions,
                        ));
                    }
                }
                Content::Parts(parts)
            }
            Content::Other(v) => {
                let mut v: Value = v.clone();
                sanitize_json(&mut v, &mut redactions);
                Content::Other(v)
            }
        };
        if &clean != content {
            let out = changed.get_or_insert_with(|| request.clone());
            if let Some(ms) = out.messages.as_mut() {
                ms[i].content = Some(clean);
            }
        }
    }
    super::count_redactions(metrics, &redactions);
    changed
}
