"""The official OpenAI SDK as an in-cluster agent: its ServiceAccount token
is the API key. Run by tests/e2e with PALISADE_URL and PALISADE_TOKEN set;
prints one line per check, exits non-zero on the first failure."""
import os
import sys

from openai import OpenAI

import openai

client = OpenAI(base_url=os.environ["PALISADE_URL"] + "/v1", api_key=os.environ["PALISADE_TOKEN"], max_retries=0)


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok {name}")


if len(sys.argv) > 1 and sys.argv[1] == "suspended":
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        check("kill switch", False, "no error")
    except openai.PermissionDeniedError as e:
        check("kill switch", e.code == "kill_switch.policy", e.body)
    sys.exit(0)

raw = client.chat.completions.with_raw_response.create(
    model="llama3.1:8b", messages=[{"role": "user", "content": "Summarise the patient's medication list"}])
check("PHI stays local", raw.headers.get("x-palisade-provider") == "local", dict(raw.headers))
check("with its reason", raw.headers.get("x-palisade-reasons", "").startswith("routing.keyword"), dict(raw.headers))
check("local answer", raw.parse().choices[0].message.content == "local answer", raw.parse())

raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "What are the opening hours?"}])
check("the rest goes to the cloud", raw.headers.get("x-palisade-provider") == "cloud", dict(raw.headers))
check("cloud answer", raw.parse().choices[0].message.content == "cloud answer", raw.parse())

stream = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True)
text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
check("streamed", text == "cloud answer", text)
