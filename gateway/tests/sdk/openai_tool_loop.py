"""The server-side tool loop, driven by the official `openai` SDK.

Run by gateway/tests/tool_loop.rs against the real gateway binary, whose
policy runs `sql_query` (SQLite), `read_file` / `write_file` and the
registered HTTP tools `lookup` (allowed) and `delete_record` (denied).
Each model name is a fake provider playing a script: see the Rust test.
"""

import json
import os
import sys

from openai import OpenAI

client = OpenAI(
    base_url=os.environ["PALISADE_URL"] + "/v1",
    api_key=os.environ["PALISADE_KEY"],
    max_retries=0,
)

# Palisade-run tools are named by function name only: the gateway shows
# the model the policy's schemas.
PALISADE_RUN = [
    {"type": "function", "function": {"name": name}}
    for name in ("sql_query", "lookup", "delete_record", "write_file")
]
# A tool the client runs itself.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASK = [{"role": "user", "content": "Who is patient 1?"}]
failures = []


def check(what, ok, detail=""):
    if not ok:
        failures.append(f"{what}: {detail}")


def loop_of(extra):
    return (extra or {}).get("palisade", {}).get("toolLoop")


# 1. Two rounds (sql_query; then lookup and a denied delete_record), then
#    the answer — not streamed.
r = client.chat.completions.create(
    model="loop", messages=ASK, tools=PALISADE_RUN + [WEATHER]
)
trace = loop_of(r.model_extra)
check("answer", r.choices[0].message.content == "Ann is patient 1", r.choices[0].message)
check("finish", r.choices[0].finish_reason == "stop", r.choices[0].finish_reason)
check("trace", trace is not None, r.model_extra)
trace = trace or {}
check("steps", (trace.get("steps"), trace.get("modelCalls"), trace.get("stoppedBy")) == (2, 3, "answer"), trace)
calls = [(c["step"], c["tool"], c["decision"], c["reasonCode"]) for c in trace.get("calls", [])]
check(
    "calls",
    calls
    == [
        (1, "sql_query", "Allow", "tool.allowed_by_rule"),
        (2, "lookup", "Allow", "tool.allowed_by_rule"),
        (2, "delete_record", "Deny", "tool.denied_by_rule"),
    ],
    calls,
)
runs = [c.get("execution", {}).get("reasonCode") for c in trace.get("calls", [])]
check("executions", runs == ["tool.executed", "tool.executed", None], runs)
roles = [m["role"] for m in trace.get("messages", [])]
check("messages", roles == ["assistant", "tool", "assistant", "tool", "tool"], roles)
dumped = json.dumps(r.model_dump())
check("no canary reaches the client", "CANARY" not in dumped, dumped)
check("usage of every step", r.usage.total_tokens == 36, r.usage)

# 2. The same loop, streamed, with the usage event asked for.
stream = client.chat.completions.create(
    model="loop-stream",
    messages=ASK,
    tools=PALISADE_RUN,
    stream=True,
    stream_options={"include_usage": True},
)
chunks = list(stream)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("streamed answer", text == "Ann is patient 1", text)
first = loop_of(chunks[0].model_extra) if chunks else None
check("streamed trace", first is not None and first["steps"] == 2, chunks[:1])
usage = [c.usage for c in chunks if c.usage]
check("streamed usage", len(usage) == 1 and usage[0].total_tokens == 36, usage)
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
check("streamed finish", finishes == ["stop"], finishes)

# 3. A model that proposes a call forever: stopped at spec.tools.run.maxSteps (3).
r = client.chat.completions.create(model="forever", messages=ASK, tools=PALISADE_RUN)
trace = loop_of(r.model_extra) or {}
check("forever stopped", (trace.get("steps"), trace.get("modelCalls"), trace.get("stoppedBy")) == (3, 4, "maxSteps"), trace)
check("forever explained", "stopped after 3 rounds" in (r.choices[0].message.content or ""), r.choices[0].message)
check("forever gives no call to run", not r.choices[0].message.tool_calls and r.choices[0].finish_reason == "stop", r.choices[0])

# 4. A held call ends the loop, naming the Approval.
r = client.chat.completions.create(model="held", messages=ASK, tools=PALISADE_RUN)
trace = loop_of(r.model_extra) or {}
held = (trace.get("calls") or [{}])[0]
check("held", (trace.get("stoppedBy"), held.get("decision"), held.get("reasonCode")) == ("approval", "RequireApproval", "tool.approval_required_by_rule"), trace)
name = held.get("approval") or "?"
check("held names its approval", name.startswith("app-") and name in (r.choices[0].message.content or ""), (name, r.choices[0].message.content))
check("held gives its arguments", json.loads(held.get("arguments") or "null") == {"root": "notes", "path": "plan.md", "content": "x"}, held)

# 5. Arguments that are not JSON are decided as such, the model is told,
#    and it answers.
r = client.chat.completions.create(model="malformed", messages=ASK, tools=PALISADE_RUN)
trace = loop_of(r.model_extra) or {}
got = [(c["tool"], c["decision"], c["reasonCode"]) for c in trace.get("calls", [])]
check("malformed decided", got == [("sql_query", "Deny", "tool.arguments_invalid")], got)
check("malformed answered", r.choices[0].message.content == "sorry", r.choices[0].message)

# 6. A round with a client tool: Palisade runs its own call, hands the
#    client's on (gated, as ever) and ends the loop.
r = client.chat.completions.create(model="mixed", messages=ASK, tools=PALISADE_RUN + [WEATHER])
trace = loop_of(r.model_extra) or {}
handed = [c.function.name for c in r.choices[0].message.tool_calls or []]
check("mixed hands on the client's call", handed == ["get_weather"], handed)
check("mixed finish", r.choices[0].finish_reason == "tool_calls", r.choices[0].finish_reason)
check("mixed ran ours", [c["tool"] for c in trace.get("calls", [])] == ["sql_query"] and trace.get("stoppedBy") == "clientTools", trace)

# 7. A request that names no Palisade-run tool is served as ever: no loop.
r = client.chat.completions.create(model="plain", messages=ASK, tools=[WEATHER])
check("no loop", loop_of(r.model_extra) is None, r.model_extra)
check("plain answer", r.choices[0].message.content == "plain", r.choices[0].message)

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("all checks passed")
