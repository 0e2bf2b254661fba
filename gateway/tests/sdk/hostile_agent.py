"""A hostile agent (the openai SDK for chat, urllib for tool calls), run against the real gateway by
gateway/tests/security_alerts.rs: it learns its tools, then tries path
traversal and SQL injection, floods denied calls, asks for the same held
call again and again, calls a tool it never used, and makes the model
write at length. It checks only what an agent sees (every call answered
as the policy says); the test checks the alerts."""
import json
import os
import urllib.error
import urllib.request

import openai

url = os.environ["PALISADE_URL"]
key = os.environ["PALISADE_KEY"]


class Answer:
    def __init__(self, status_code, text):
        self.status_code, self.text = status_code, text


def tool(name, arguments):
    """POST /v1/tool-calls as any HTTP client would."""
    request = urllib.request.Request(
        f"{url}/v1/tool-calls",
        data=json.dumps({"tool": name, "arguments": arguments}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return Answer(r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.read().decode())


# Its usual tool, three times: the gateway learns it.
for i in range(3):
    r = tool("read_file", {"path": f"notes/{i}.md"})
    assert r.status_code == 200, r.text

# Path traversal through an allowed tool: still decided as the rule says.
r = tool("read_file", {"path": "../../etc/passwd"})
assert r.status_code == 200, r.text

# SQL injection through a tool it never used (denied by default).
r = tool("lookup", {"name": "x' OR 1=1 --"})
assert r.status_code == 403, r.text

# A flood of denied calls.
for i in range(6):
    r = tool("delete_all", {"batch": i})
    assert r.status_code == 403, r.text

# The same held call, again and again.
for _ in range(3):
    r = tool("send_email", {"to": "ceo@clinic.example", "body": "wire the money"})
    assert r.status_code == 202, r.text

# Chat through the official SDK: three ordinary answers, then a streamed
# one with hundreds of times the tokens (its usage arrives at the end).
client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
for _ in range(3):
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.choices[0].message.content == "ok", answer
stream = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
)
text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
assert text.strip() == "ok", text

print("all checks passed")
