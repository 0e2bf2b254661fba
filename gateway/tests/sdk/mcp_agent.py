"""An MCP client built on the official `mcp` Python SDK (v2: ClientSession over
`streamable_http_client`), checking an MCP endpoint end to end.

Environment:
  MCP_URL            the Streamable HTTP endpoint (e.g. http://127.0.0.1:P/mcp/{server})
  MCP_TOKEN          sent as `Authorization: Bearer ...`
  MODE               `direct` (the fake upstream itself) or `gateway` (through Palisade)
  PALISADE_URL       gateway mode: base URL for the approvals API
  PALISADE_OPERATOR  gateway mode: operator token for approving
  APPROVE_WITH       gateway mode, instead: a command approving it (JSON array,
                     `{name}` replaced by the Approval's name), e.g. kubectl patch
  EXPECT_PROGRESS    progress notifications expected from count(n=3), default 3;
                     set 0 when the upstream runs with MCP_JSON_RESPONSE=1 (the
                     SDK's server drops request-related notifications in JSON mode)

Prints progress lines and finally `all checks passed`; any failed check raises.
"""
import asyncio
import json
import os
import subprocess
import urllib.error
import urllib.request

import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

URL = os.environ["MCP_URL"]
TOKEN = os.environ["MCP_TOKEN"]
MODE = os.environ.get("MODE", "direct")
EXPECT_PROGRESS = int(os.environ.get("EXPECT_PROGRESS", "3"))

ALL_TOOLS = {"read_file", "send_email", "delete_all", "leak_key", "count", "slow", "huge"}
APPROVAL_META_KEY = "palisade.dev/approval"


class CheckFailed(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def text_of(result) -> str:
    """All text content of a CallToolResult, joined."""
    return "".join(block.text for block in result.content if getattr(block, "type", None) == "text")


def error_data(err: MCPError) -> dict:
    data = err.data
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            pass
    return data if isinstance(data, dict) else {}


async def expect_rpc_error(session: ClientSession, name: str, arguments: dict, code: int, **kwargs) -> dict:
    """Call a tool that must fail with JSON-RPC error `code`; return the error's data."""
    try:
        result = await session.call_tool(name, arguments, **kwargs)
    except MCPError as err:
        print(f"  {name}: JSON-RPC error {err.code} {err.message!r} data={json.dumps(err.data)}")
        check(err.code == code, f"{name}: expected JSON-RPC error code {code}, got {err.code} ({err.message!r}, data={err.data!r})")
        return error_data(err)
    raise CheckFailed(f"{name}: expected JSON-RPC error {code}, got a result: isError={result.is_error} {text_of(result)!r}")


async def call_text(session: ClientSession, name: str, arguments: dict, **kwargs) -> str:
    result = await session.call_tool(name, arguments, **kwargs)
    text = text_of(result)
    check(not result.is_error, f"{name}: tool returned isError=true: {text!r}")
    print(f"  {name}: {text[:120]!r}")
    return text


async def check_count(session: ClientSession) -> None:
    progress = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    text = await call_text(session, "count", {"n": 3}, progress_callback=on_progress)
    print(f"  count progress notifications: {progress}")
    check(len(progress) == EXPECT_PROGRESS,
          f"count: expected {EXPECT_PROGRESS} progress notifications, got {len(progress)}: {progress}")
    if EXPECT_PROGRESS == 3:
        check([p[0] for p in progress] == [1, 2, 3], f"count: progress values out of order: {progress}")
    check(text == "counted to 3", f"count: unexpected result {text!r}")


def approve(name: str) -> None:
    command = os.environ.get("APPROVE_WITH")
    if command:
        # A command (JSON array; {name} replaced), e.g. kubectl patch approval.
        argv = [arg.replace("{name}", name) for arg in json.loads(command)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        print(f"  approve {name}: exit {done.returncode} {done.stdout.strip()[:200]}")
        check(done.returncode == 0, f"approving {name}: {done.stderr}")
        return
    base = os.environ["PALISADE_URL"].rstrip("/")
    operator = os.environ["PALISADE_OPERATOR"]
    request = urllib.request.Request(
        f"{base}/v1/approvals/{name}/approve",
        data=json.dumps({"reason": "ok"}).encode(),
        headers={"Authorization": f"Bearer {operator}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read().decode(errors="replace")
    print(f"  approve {name}: HTTP {status} {body[:200]}")
    check(status == 200, f"approving {name}: expected HTTP 200, got {status}: {body}")


async def run(session: ClientSession) -> None:
    init = await session.initialize()
    print(f"initialized: protocol version {session.protocol_version} "
          f"(server {init.server_info.name} {init.server_info.version})")
    check(session.protocol_version == init.protocol_version, "protocol version not adopted")

    tools = (await session.list_tools()).tools
    names = {t.name for t in tools}
    print(f"tools: {sorted(names)}")

    if MODE == "direct":
        check(ALL_TOOLS <= names, f"tools/list: missing {sorted(ALL_TOOLS - names)}")
    elif MODE == "gateway":
        expected = ALL_TOOLS - {"delete_all"}
        check(names == expected, f"tools/list: expected exactly {sorted(expected)}, got {sorted(names)}")
        send_email = next(t for t in tools if t.name == "send_email")
        print(f"  send_email description: {send_email.description!r}")
        check((send_email.description or "").startswith("[Palisade: needs human approval]"),
              f"send_email description not marked: {send_email.description!r}")
    else:
        raise CheckFailed(f"unknown MODE {MODE!r}")

    text = await call_text(session, "read_file", {"path": "notes.md"})
    check(text == "contents of notes.md", f"read_file: unexpected result {text!r}")

    await check_count(session)

    result = await session.call_tool("leak_key", {})
    text = text_of(result)
    print(f"  leak_key: {text!r}")
    if MODE == "direct":
        check("sk-live-" in text, f"leak_key: expected the raw key, got {text!r}")
        print("all checks passed")
        return

    everything = result.model_dump_json(by_alias=True)
    check("[REDACTED" in text, f"leak_key: expected a redaction marker, got {text!r}")
    check("sk-live-" not in everything, f"leak_key: the key leaked through: {everything}")

    data = await expect_rpc_error(session, "delete_all", {}, -32001)
    check(data.get("reasonCode") == "tool.denied_by_rule",
          f"delete_all: expected reasonCode tool.denied_by_rule, got {data!r}")

    arguments = {"to": "cfo@example.com", "body": "wire it"}
    data = await expect_rpc_error(session, "send_email", arguments, -32002)
    approval = data.get("approval")
    check(isinstance(approval, dict) and isinstance(approval.get("name"), str),
          f"send_email: expected data.approval.name, got {data!r}")
    name = approval["name"]

    approve(name)

    meta = {APPROVAL_META_KEY: name}
    text = await call_text(session, "send_email", arguments, meta=meta)
    check(text == "sent to cfo@example.com", f"send_email (approved): unexpected result {text!r}")

    data = await expect_rpc_error(session, "send_email", arguments, -32001, meta=meta)
    check(data.get("reasonCode") == "approval.replay_refused",
          f"send_email (replayed approval): expected reasonCode approval.replay_refused, got {data!r}")

    print("all checks passed")


async def main() -> None:
    # Headers go on the httpx2 client the transport uses (the SDK's v2 way).
    http_client = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx2.Timeout(30, read=300)
    )
    async with http_client:
        async with streamable_http_client(URL, http_client=http_client) as (read_stream, write_stream):
            async with ClientSession(read_stream, write_stream, read_timeout_seconds=30) as session:
                await run(session)


if __name__ == "__main__":
    asyncio.run(main())
