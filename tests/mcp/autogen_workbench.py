"""Drive execbox's MCP server with AutoGen's own MCP workbench (autogen-ext[mcp]).

    autogen_workbench.py stdio COMMAND [ARG...]    the server as a subprocess (its env: this one's)
    autogen_workbench.py http URL [BEARER_KEY]     streamable HTTP

Reads {"tool": NAME, "arguments": {...}} from stdin, lists the tools as the workbench hands them
to a model, calls the tool and prints both as one JSON object; tests/mcp.rs checks them.
"""

import asyncio
import json
import os
import sys

from autogen_ext.tools.mcp import McpWorkbench, StdioServerParams, StreamableHttpServerParams


async def main():
    kind, target = sys.argv[1], sys.argv[2:]
    call = json.load(sys.stdin)
    if kind == "stdio":
        params = StdioServerParams(command=target[0], args=target[1:], env=dict(os.environ))
    else:
        headers = {"Authorization": f"Bearer {target[1]}"} if len(target) > 1 else None
        params = StreamableHttpServerParams(url=target[0], headers=headers)
    async with McpWorkbench(server_params=params) as workbench:
        tools = await workbench.list_tools()
        result = await workbench.call_tool(call["tool"], call["arguments"])
    out = {
        "tools": tools,
        "result": {
            "name": result.name,
            "is_error": result.is_error,
            "parts": [p.content for p in result.result if p.type == "TextResultContent"],
            "text": result.to_text(),
        },
    }
    json.dump(out, sys.stdout)


asyncio.run(main())
