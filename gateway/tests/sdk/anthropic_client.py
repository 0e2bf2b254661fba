"""The official Anthropic Python SDK against a running Palisade gateway's
/v1/messages. Run by gateway/tests/anthropic_sdk.rs with PALISADE_URL and
PALISADE_KEY set; prints one line per check and exits non-zero on the first
failure."""
import os
import sys

import anthropic

client = anthropic.Anthropic(base_url=os.environ["PALISADE_URL"], api_key=os.environ["PALISADE_KEY"], max_retries=0)
messages = [{"role": "user", "content": "What are your opening hours?"}]
tools = [{"name": n, "description": n, "input_schema": {"type": "object"}} for n in ("sql_query", "send_email", "bulk_export")]


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok {name}")


# Plain text from an Anthropic provider, with Palisade's routing headers.
raw = client.messages.with_raw_response.create(model="claude-3-5-sonnet", max_tokens=100, messages=messages)
message = raw.parse()
check("plain message", [b.text for b in message.content] == ["claude answer"] and message.stop_reason == "end_turn", message)
check("routing headers", raw.headers.get("x-palisade-provider") == "claude", dict(raw.headers))

with client.messages.stream(model="claude-3-5-sonnet", max_tokens=100, messages=messages) as stream:
    text = "".join(stream.text_stream)
check("streamed text", text == "claude answer", text)


def tool_uses(message):
    return [(b.name, b.input) for b in message.content if b.type == "tool_use"]


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


# Tool use decided before the client sees it, from an Anthropic provider
# and from an OpenAI one (translated), streamed and not: the allowed call
# stays, the denied and held ones are explained in the text.
for model in ("claude-tools", "gpt-4o-tools"):
    message = client.messages.create(model=model, max_tokens=100, messages=messages, tools=tools)
    check(f"{model}: allowed tool_use passes", tool_uses(message) == [("sql_query", {"query": "SELECT 1"})], message)
    check(f"{model}: stop reason", message.stop_reason == "tool_use", message.stop_reason)
    check(f"{model}: denied explained", "`bulk_export` was blocked by policy" in text_of(message), text_of(message))
    check(f"{model}: held explained", "`send_email` needs a human's approval" in text_of(message), text_of(message))
    with client.messages.stream(model=model, max_tokens=100, messages=messages, tools=tools) as stream:
        final = stream.get_final_message()
    check(f"{model}: streamed tool_use gated", tool_uses(final) == [("sql_query", {"query": "SELECT 1"})], final)
    check(f"{model}: streamed stop reason", final.stop_reason == "tool_use", final.stop_reason)

# The conversation goes on with the tool's result.
follow = client.messages.create(model="claude-3-5-sonnet", max_tokens=100, tools=tools, messages=messages + [
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "sql_query", "input": {"query": "SELECT 1"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "1"}]},
])
check("tool result accepted", text_of(follow) == "claude answer", follow)

# Refusals are the SDK's typed errors, with Palisade's reason code.
try:
    client.messages.create(model="claude-3-opus", max_tokens=100, messages=messages)
    check("model not allowed", False, "no error")
except anthropic.PermissionDeniedError as e:
    check("model not allowed", e.body["error"]["code"] == "model.not_allowed", e.body)

bad = anthropic.Anthropic(base_url=os.environ["PALISADE_URL"], api_key="sk-not-an-agent", max_retries=0)
try:
    bad.messages.create(model="claude-3-5-sonnet", max_tokens=100, messages=messages)
    check("unknown key", False, "no error")
except anthropic.AuthenticationError as e:
    check("unknown key", e.body["error"]["code"] == "invalid_api_key", e.body)

print("all checks passed")
