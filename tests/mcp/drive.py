"""Drive execbox's MCP server with the official MCP Python SDK of this venv (1.x or 2.x).

    drive.py stdio COMMAND [ARG...]    start the server as a subprocess (its env: this one's)
    drive.py http URL [BEARER_KEY]     streamable HTTP

Reads a plan from stdin: a JSON list of steps, each {"tool": NAME, "arguments": {...}} and
optionally "save": {"VAR": "FIELD"} (a field of the answer's structured content, kept as VAR);
"${VAR}" in an argument string is replaced by what was saved. Prints one JSON object: the SDK's
version, the handshake it made, every message method it sent, the tools as listed, and each
step's answer. It checks nothing itself: tests/mcp.rs does.
"""

import asyncio
import json
import os
import sys
from contextlib import asynccontextmanager
from importlib.metadata import version

SDK = version("mcp")
TWO = SDK.startswith("2.")


class Recorder:
    """A client's write stream that notes the method of every message the client sends."""

    def __init__(self, inner, sent):
        self._inner, self._sent = inner, sent

    async def send(self, item):
        message = getattr(item, "message", item)
        message = getattr(message, "root", message)
        method = getattr(message, "method", None)
        if method is not None:
            self._sent.append(method)
        await self._inner.send(item)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def __aenter__(self):
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self._inner.__aexit__(*exc)


def substitute(value, saved):
    if isinstance(value, str):
        for k, v in saved.items():
            value = value.replace("${" + k + "}", str(v))
        return value
    if isinstance(value, list):
        return [substitute(v, saved) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, saved) for k, v in value.items()}
    return value


def dump(model):
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


async def run_plan(call_tool, plan):
    saved, answers = {}, []
    for step in plan:
        try:
            result = await call_tool(step["tool"], substitute(step.get("arguments", {}), saved))
        except Exception as e:  # a JSON-RPC error answer (the SDK raises it)
            error = getattr(e, "error", None)
            answers.append({"rpc_error": dump(error) if error is not None else repr(e)})
            continue
        answer = dump(result)
        for var, field in step.get("save", {}).items():
            saved[var] = (answer.get("structuredContent") or {}).get(field)
        answers.append(answer)
    return answers


def transport(kind, target):
    """The SDK's transport as an async context manager yielding (read, write, ...)."""
    if kind == "stdio":
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(command=target[0], args=target[1:], env=dict(os.environ))
        return stdio_client(params)
    url, key = target[0], (target[1] if len(target) > 1 else None)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if TWO:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        return streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=120))
    from mcp.client.streamable_http import streamablehttp_client

    return streamablehttp_client(url, headers=headers, timeout=120)


@asynccontextmanager
async def recorded(kind, target, sent):
    async with transport(kind, target) as streams:
        yield streams[0], Recorder(streams[1], sent)


async def main():
    kind, target = sys.argv[1], sys.argv[2:]
    plan = json.load(sys.stdin)
    sent = []
    out = {"sdk": SDK, "sent": sent}
    if TWO:
        from mcp import Client

        async with Client(recorded(kind, target, sent)) as client:
            session = client.session
            out["handshake"] = "initialize" if session.initialize_result is not None else "discover"
            out["protocol_version"] = client.protocol_version
            out["server"] = dump(client.server_info) if client.server_info else None
            out["tools"] = [dump(t) for t in (await client.list_tools()).tools]
            out["answers"] = await run_plan(client.call_tool, plan)
    else:
        from mcp import ClientSession

        async with recorded(kind, target, sent) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out["handshake"] = "initialize"
                out["protocol_version"] = init.protocolVersion
                out["server"] = dump(init.serverInfo)
                out["tools"] = [dump(t) for t in (await session.list_tools()).tools]
                out["answers"] = await run_plan(session.call_tool, plan)
    json.dump(out, sys.stdout)


asyncio.run(main())
