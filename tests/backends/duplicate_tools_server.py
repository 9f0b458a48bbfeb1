"""A handshake-era MCP server over stdio, by hand, that lists odd things, as a buggy server might: the
same tool name twice (the gateway must report it rather than silently pick one) and a resource URI
that FastMCP refuses (the gateway must leave it out, not fall over); with MANY_TOOLS=N, N more tools;
with EXTRA_TOOLS=<JSON list>, those tools as given (each answers with the arguments it got, as JSON)."""

import json
import os
import sys

TOOL = {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}
EXTRA = json.loads(os.environ.get("EXTRA_TOOLS", "[]"))


def answer(request: dict) -> dict | None:
    method, rid = request.get("method"), request.get("id")
    if rid is None:
        return None  # a notification
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}, "resources": {}},
                  "serverInfo": {"name": "duplicates", "version": "1"}}
    elif method == "tools/list":
        many = [{**TOOL, "name": f"t{i}"} for i in range(int(os.environ.get("MANY_TOOLS", "0")))]
        result = {"tools": [{**TOOL, "description": "first"}, {**TOOL, "description": "second"}, *many, *EXTRA]}
    elif method == "resources/list":
        result = {"resources": [{"uri": "a b", "name": "spaced"}, {"uri": "test://fine", "name": "fine"}]}
    elif method == "resources/templates/list":
        result = {"resourceTemplates": []}
    elif method == "tools/call":
        arguments = request["params"].get("arguments", {})
        extra = request["params"]["name"] in {tool["name"] for tool in EXTRA}
        text = json.dumps(arguments) if extra else arguments.get("text", "")
        result = {"content": [{"type": "text", "text": text}]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


for line in sys.stdin:
    reply = answer(json.loads(line))
    if reply is not None:
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
