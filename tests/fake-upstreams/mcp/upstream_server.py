"""A real MCP server (official `mcp` Python SDK, v2 `MCPServer`) served over
Streamable HTTP, used as the upstream behind Palisade's MCP gateway.

    python upstream_server.py PORT        (0 = any free port)

Prints exactly one line `listening on http://127.0.0.1:PORT/mcp` once it
accepts connections. Environment:
  MCP_UPSTREAM_TOKEN  required bearer token (requests without it get HTTP 401)
  MCP_UPSTREAM_LOG    if set, one JSON line per HTTP request is appended there:
                      {"method", "authorization", "mcp_method", "tool"}
  MCP_JSON_RESPONSE=1 answer POSTs with plain JSON instead of SSE streams
  MCP_STRUCTURED=1    also return structuredContent (+ outputSchema), the SDK's
                      default for `-> str` tools; off by default so results are
                      text content only
Sessions (Mcp-Session-Id) stay on.
"""
import asyncio
import json
import os
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings

TOKEN = os.environ.get("MCP_UPSTREAM_TOKEN", "")
LOG = os.environ.get("MCP_UPSTREAM_LOG")
JSON_RESPONSE = os.environ.get("MCP_JSON_RESPONSE") == "1"
STRUCTURED = os.environ.get("MCP_STRUCTURED") == "1"

mcp = MCPServer("palisade-fake-upstream", version="1.0.0", log_level="WARNING")


def tool():
    return mcp.tool(structured_output=STRUCTURED)


@tool()
def read_file(path: str) -> str:
    """Read a file from the workspace."""
    return f"contents of {path}"


@tool()
def send_email(to: str, body: str) -> str:
    """Send an email to a recipient."""
    return f"sent to {to}"


@tool()
def delete_all() -> str:
    """Delete everything in the workspace."""
    return "deleted everything"


@tool()
def leak_key() -> str:
    """Return a string that contains an API key."""
    return "the key is sk-live-4f9c2a7b8d1e3f5a6b7c8d9e0f1a2b3c and more"


@tool()
async def count(n: int, ctx: Context) -> str:
    """Count to n, reporting progress at each step."""
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i}")
        await asyncio.sleep(0.05)
    return f"counted to {n}"


@tool()
async def slow(seconds: float) -> str:
    """Sleep for the given number of seconds."""
    await asyncio.sleep(seconds)
    return "done"


@tool()
def huge(n: int) -> str:
    """Return a string of n characters."""
    return "x" * n


def rpc_summary(body: bytes):
    """The JSON-RPC method(s) in a request body and the tools/call name, if any."""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        return None, None
    messages = payload if isinstance(payload, list) else [payload]
    methods, tools = [], []
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("method"), str):
            methods.append(message["method"])
            params = message.get("params")
            if message["method"] == "tools/call" and isinstance(params, dict):
                tools.append(params.get("name"))
    if not methods:
        return None, None
    if isinstance(payload, list):
        return methods, tools or None
    return methods[0], tools[0] if tools else None


class GuardAndLog:
    """ASGI middleware: log every HTTP request, then require the bearer token."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        authorization = headers.get("authorization")

        # Buffer the body so it can be inspected, then replay it to the app.
        buffered, body = [], b""
        if scope["method"] == "POST":
            while True:
                message = await receive()
                buffered.append(message)
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break

        mcp_method, tool_name = rpc_summary(body)
        if LOG:
            line = {"method": scope["method"], "authorization": authorization, "mcp_method": mcp_method, "tool": tool_name}
            with open(LOG, "a") as f:
                f.write(json.dumps(line) + "\n")

        if authorization != f"Bearer {TOKEN}" or not TOKEN:
            await send({
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            })
            await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
            return

        async def replay():
            if buffered:
                return buffered.pop(0)
            return await receive()

        await self.app(scope, replay, send)


async def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]

    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=JSON_RESPONSE,
        stateless_http=False,
        # The gateway forwards requests with its own Host header; the SDK's
        # default DNS-rebinding check (127.0.0.1:* / localhost:* only) is off.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    config = uvicorn.Config(GuardAndLog(app), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
            raise SystemExit("uvicorn exited before starting")
        await asyncio.sleep(0.01)
    print(f"listening on http://127.0.0.1:{port}/mcp", flush=True)
    await serving


if __name__ == "__main__":
    asyncio.run(main())
