"""One agent action for the console's browser test (console/console.mjs
runs it): `chat` asks the model through the official openai SDK; `tool
NAME ARGUMENTS_JSON [APPROVAL]` calls POST /v1/tool-calls as any HTTP
client would. Prints the answer as JSON: {"status": ..., "body": ...}."""
import json
import os
import sys
import urllib.error
import urllib.request

url = os.environ["PALISADE_URL"]
key = os.environ["PALISADE_KEY"]

if sys.argv[1] == "chat":
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello from the browser test"}]
    )
    print(json.dumps({"status": 200, "body": answer.choices[0].message.content}))
else:
    name, arguments = sys.argv[2], json.loads(sys.argv[3])
    body = {"tool": name, "arguments": arguments}
    if len(sys.argv) > 4:
        body["approval"] = sys.argv[4]
    request = urllib.request.Request(
        f"{url}/v1/tool-calls",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            print(json.dumps({"status": r.status, "body": json.loads(r.read())}))
    except urllib.error.HTTPError as e:
        print(json.dumps({"status": e.code, "body": json.loads(e.read())}))
