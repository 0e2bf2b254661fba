//! OpenAI's Responses API as an ingress: a request (`instructions`,
//! `input` as text or items — messages, `function_call`s and their
//! `function_call_output`s — function tools, `tool_choice`) read into the
//! chat request every provider path takes, and a gated completion written
//! back as a Response object. What the gateway cannot carry is refused by
//! name: `previous_response_id` (it keeps no conversations: send them in
//! `input`), items and content parts other than text and function calls,
//! and tools other than functions.

use crate::error::GatewayError;
use crate::providers::openai::{ChatCompletion, ChatRequest};
use serde_json::{Map, Value, json};

fn refused(message: String) -> GatewayError {
    GatewayError::BadRequest(message)
}

/// The text of a message's `content`: a string, or its text parts.
fn text_of(content: &Value, field: &str) -> Result<String, GatewayError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                match p["type"].as_str() {
                    Some("input_text" | "output_text" | "text") => {
                        out.push(p["text"].as_str().unwrap_or(""));
                    }
                    other => {
                        return Err(refused(format!(
                            "{field}[{i}]: content parts of type {:?} are not accepted on this gateway's /v1/responses (input_text and output_text are)",
                            other.unwrap_or("?")
                        )));
                    }
                }
            }
            Ok(out.join("\n"))
        }
        Value::Null => Ok(String::new()),
        _ => Err(refused(format!(
            "{field}: send a string or an array of text parts"
        ))),
    }
}

/// The chat request a Responses request stands for.
pub fn chat_request(r: &Map<String, Value>) -> Result<ChatRequest, GatewayError> {
    if r.get("previous_response_id").is_some_and(|v| !v.is_null()) {
        return Err(refused(
            "previous_response_id: this gateway keeps no conversations; send the whole conversation in `input` (its messages, function_call and function_call_output items)".into(),
        ));
    }
    let mut messages: Vec<Value> = Vec::new();
    if let Some(instructions) = r.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match r.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let field = format!("input[{i}]");
                match item["type"].as_str() {
                    None | Some("message") => {
                        let role = item["role"].as_str().unwrap_or("user");
                        let role = if role == "developer" { "system" } else { role };
                        let text = text_of(&item["content"], &format!("{field}.content"))?;
                        messages.push(json!({"role": role, "content": text}));
                    }
                    Some("function_call") => {
                        let call = json!({"id": item["call_id"], "type": "function",
                            "function": {"name": item["name"], "arguments": item["arguments"]}});
                        // Calls made together are one assistant turn.
                        match messages.last_mut() {
                            Some(last)
                                if last["role"] == "assistant" && last["tool_calls"].is_array() =>
                            {
                                if let Some(calls) = last["tool_calls"].as_array_mut() {
                                    calls.push(call);
                                }
                            }
                            _ => messages.push(
                                json!({"role": "assistant", "content": null, "tool_calls": [call]}),
                            ),
                        }
                    }
                    Some("function_call_output") => {
                        let output = match &item["output"] {
                            Value::String(s) => s.clone(),
                            other => text_of(other, &format!("{field}.output"))?,
                        };
                        messages.push(json!({"role": "tool", "tool_call_id": item["call_id"], "content": output}));
                    }
                    Some(other) => {
                        return Err(refused(format!(
                            "{field}: items of type {other:?} are not accepted on this gateway's /v1/responses (messages, function_call and function_call_output are)"
                        )));
                    }
                }
            }
        }
        _ => {
            return Err(refused(
                "input: send a string or an array of input items".into(),
            ));
        }
    }
    let mut chat = Map::new();
    chat.insert("messages".into(), Value::Array(messages));
    for (from, to) in [
        ("model", "model"),
        ("stream", "stream"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_tokens"),
        ("parallel_tool_calls", "parallel_tool_calls"),
    ] {
        if let Some(v) = r.get(from).filter(|v| !v.is_null()) {
            chat.insert(to.into(), v.clone());
        }
    }
    if let Some(tools) = r.get("tools").and_then(Value::as_array) {
        let mut out = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            if t["type"] != "function" {
                return Err(refused(format!(
                    "tools[{i}]: tools of type {} are not served by this gateway; declare function tools (the policy decides each call)",
                    t["type"]
                )));
            }
            let mut function = json!({"name": t["name"], "parameters": t.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}))});
            if let Some(d) = t.get("description").filter(|d| !d.is_null()) {
                function["description"] = d.clone();
            }
            out.push(json!({"type": "function", "function": function}));
        }
        chat.insert("tools".into(), Value::Array(out));
    }
    match r.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            chat.insert("tool_choice".into(), json!(s));
        }
        Some(c) if c["type"] == "function" => {
            chat.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": c["name"]}}),
            );
        }
        Some(_) => {
            return Err(refused(
                "tool_choice: use \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": NAME}".into(),
            ));
        }
    }
    serde_json::from_value(Value::Object(chat))
        .map_err(|e| refused(format!("not a Responses request: {e}")))
}

/// A fresh id with `prefix` (`resp`, `msg`, `fc`).
pub fn id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A Response object of `model` with `output`, `status` and `usage`.
pub fn response(id: &str, model: &str, output: Vec<Value>, status: &str, usage: Value) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
    json!({
        "id": id, "object": "response", "created_at": jiff::Timestamp::now().as_second(),
        "status": status, "model": model, "output": output, "usage": usage,
        "error": null, "incomplete_details": incomplete, "instructions": null, "metadata": {},
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
        "temperature": null, "top_p": null, "text": {"format": {"type": "text"}},
    })
}

/// Chat usage counts as the Responses API's.
pub fn usage(input: u64, output: u64, cached: u64) -> Value {
    json!({
        "input_tokens": input, "output_tokens": output, "total_tokens": input + output,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens_details": {"reasoning_tokens": 0},
    })
}

/// A message output item with `text`.
pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// A function call output item.
pub fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status})
}

/// A gated completion as a Response object of `model`.
pub fn answer(completion: &ChatCompletion, model: &str) -> Value {
    let choice = completion.choices.first();
    let message = choice.and_then(|c| c.message.as_ref());
    let mut output = Vec::new();
    let text = message.map(|m| m.text()).unwrap_or_default();
    if !text.is_empty() {
        output.push(message_item(&id("msg"), &text, "completed"));
    }
    for call in message
        .and_then(|m| m.tool_calls.as_ref())
        .into_iter()
        .flatten()
    {
        let call_id = call.id.clone().unwrap_or_else(|| id("call"));
        output.push(call_item(
            &id("fc"),
            &call_id,
            &call.function.name,
            &call.function.arguments,
            "completed",
        ));
    }
    let status = match choice.and_then(|c| c.finish_reason.as_deref()) {
        Some("length") => "incomplete",
        _ => "completed",
    };
    let tokens = completion
        .usage
        .as_ref()
        .map(crate::providers::usage::Tokens::of)
        .unwrap_or_default();
    response(
        &id("resp"),
        model,
        output,
        status,
        usage(tokens.input, tokens.output, tokens.cached),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(v: Value) -> Result<ChatRequest, GatewayError> {
        chat_request(v.as_object().unwrap())
    }

    #[test]
    fn items_become_a_chat_conversation() {
        let chat = read(json!({
            "model": "gpt-4o", "instructions": "be brief", "max_output_tokens": 50,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
                {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"}
            ]
        }))
        .unwrap();
        let v = serde_json::to_value(&chat).unwrap();
        assert_eq!(v["max_tokens"], 50);
        assert_eq!(
            v["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        let m = &v["messages"];
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[1], json!({"role": "user", "content": "hi"}));
        assert_eq!(
            m[2]["tool_calls"].as_array().unwrap().len(),
            2,
            "one assistant turn"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "42"})
        );
    }

    #[test]
    fn what_it_cannot_carry_is_refused_by_name() {
        let message = |v| read(v).unwrap_err().to_string();
        assert!(
            message(json!({"input": "x", "previous_response_id": "resp_1"}))
                .starts_with("previous_response_id:")
        );
        assert!(
            message(json!({"input": "x", "tools": [{"type": "web_search"}]}))
                .starts_with("tools[0]:")
        );
        assert!(
            message(json!({"input": [{"type": "reasoning", "summary": []}]}))
                .starts_with("input[0]:")
        );
        assert!(message(json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]})).starts_with("input[0].content[0]:"));
    }
}
