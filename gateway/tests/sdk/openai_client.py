"""The official OpenAI Python SDK against a running Palisade gateway.

Run by gateway/tests/openai_sdk.rs with PALISADE_URL and PALISADE_KEY set;
prints one line per check and exits non-zero on the first failure.
"""
import os
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["PALISADE_URL"] + "/v1", api_key=os.environ["PALISADE_KEY"], max_retries=0)
messages = [{"role": "user", "content": "What are your opening hours?"}]


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok {name}")


# A plain completion, with Palisade's routing headers.
raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
completion = raw.parse()
check("plain completion", completion.choices[0].message.content == "cloud answer", completion)
check("routing headers", raw.headers.get("x-palisade-provider") == "cloud" and raw.headers.get("x-palisade-reasons") == "routing.default", dict(raw.headers))

# A streamed completion.
stream = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
check("streamed completion", text == "cloud answer", text)

# Tool calls: the model proposes three, the client sees the allowed one and
# an explanation of the others.
tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in ("sql_query", "send_email", "bulk_export")]
completion = client.chat.completions.create(model="gpt-4o-tools", messages=messages, tools=tools)
message = completion.choices[0].message
names = [c.function.name for c in (message.tool_calls or [])]
check("allowed tool call passes", names == ["sql_query"], names)
check("denied tool call explained", "`bulk_export` was blocked by policy" in (message.content or ""), message.content)
check("held tool call explained", "`send_email` needs a human's approval" in (message.content or ""), message.content)

stream = client.chat.completions.create(model="gpt-4o-tools", messages=messages, tools=tools, stream=True)
streamed = {}
for chunk in stream:
    for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        streamed.setdefault(call.index, {"name": "", "arguments": ""})
        if call.function.name:
            streamed[call.index]["name"] = call.function.name
        streamed[call.index]["arguments"] += call.function.arguments or ""
check("streamed tool calls gated", [c["name"] for c in streamed.values()] == ["sql_query"], streamed)

# Refusals arrive as the SDK's typed errors with Palisade's reason code.
try:
    client.chat.completions.create(model="claude-3-opus", messages=messages)
    check("model not allowed", False, "no error")
except openai.PermissionDeniedError as e:
    check("model not allowed", e.code == "model.not_allowed", e.body)

bad = OpenAI(base_url=os.environ["PALISADE_URL"] + "/v1", api_key="sk-not-an-agent", max_retries=0)
try:
    bad.chat.completions.create(model="gpt-4o", messages=messages)
    check("unknown key", False, "no error")
except openai.AuthenticationError as e:
    check("unknown key", e.code == "invalid_api_key", e.body)

# The decision API through the SDK's generic request: a held call is a 2xx
# (202) with the approval to poll; a denied one is a typed error.
held = client.post("/tool-calls", body={"tool": "send_email", "arguments": {"to": "x@y.z"}}, cast_to=object)
check("held tool call is 202 with an approval", held["approval"]["phase"] == "Pending" and held["approval"]["poll"].startswith("/v1/approvals/"), held)
try:
    client.post("/tool-calls", body={"tool": "bulk_export", "arguments": {}}, cast_to=object)
    check("denied tool call", False, "no error")
except openai.PermissionDeniedError as e:
    check("denied tool call", e.code == "tool.denied_by_rule", e.body)

# The Responses API: text, and function calls decided like chat's, whole
# and streamed (the SDK's event iterator and its stream helper).
import json

r = client.responses.create(model="gpt-4o", input="What are your opening hours?")
check("responses: text", r.output_text == "cloud answer" and r.status == "completed", r)
check("responses: usage", r.usage.input_tokens == 5 and r.usage.output_tokens == 7, r.usage)
response_tools = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in ("sql_query", "send_email", "bulk_export")]


def function_calls(output):
    return [(o.name, json.loads(o.arguments)) for o in output if o.type == "function_call"]


r = client.responses.create(model="gpt-4o-tools", input="Look it up", tools=response_tools)
check("responses: allowed function_call passes", function_calls(r.output) == [("sql_query", {"query": "SELECT 1"})], r.output)
check("responses: denied explained", "`bulk_export` was blocked by policy" in r.output_text, r.output_text)
check("responses: held explained", "`send_email` needs a human's approval" in r.output_text, r.output_text)
events = list(client.responses.create(model="gpt-4o", input="hi", stream=True))
check("responses stream: framed", events[0].type == "response.created" and events[-1].type == "response.completed", [e.type for e in events])
text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
check("responses stream: text", text == "cloud answer" and events[-1].response.output_text == "cloud answer", text)
with client.responses.stream(model="gpt-4o-tools", input="Look it up", tools=response_tools) as stream:
    final = stream.get_final_response()
check("responses stream: function_call gated", function_calls(final.output) == [("sql_query", {"query": "SELECT 1"})], final.output)
try:
    client.responses.create(model="gpt-4o", input="hi", previous_response_id="resp_1")
    check("responses: previous_response_id refused", False, "no error")
except openai.BadRequestError as e:
    check("responses: previous_response_id refused", "previous_response_id" in e.message, e.message)

# The models this agent may ask for: what its providers list (each fake
# lists gpt-4o, gpt-4o-mini and llama3.1:8b) that the policy allows.
ids = sorted(m.id for m in client.models.list())
check("models listed by policy", ids == ["gpt-4o", "gpt-4o-mini"], ids)

# Embeddings: the SDK asks for base64 and decodes it; the fake's vector of
# a text is [characters, words, 1.0].
embedded = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "abc"])
vectors = [list(d.embedding) for d in embedded.data]
check("embeddings", vectors == [[11.0, 2.0, 1.0], [3.0, 1.0, 1.0]], vectors)
try:
    client.embeddings.create(model="o3", input="x")
    check("embedding model not allowed", False, "no error")
except openai.PermissionDeniedError as e:
    check("embedding model not allowed", e.code == "model.not_allowed", e.body)

# A route the gateway does not serve: the SDK's typed 404.
try:
    client.get("/no-such-route", cast_to=object)
    check("unknown route", False, "no error")
except openai.NotFoundError as e:
    check("unknown route", e.code == "not_found", e.body)

print("all checks passed")
