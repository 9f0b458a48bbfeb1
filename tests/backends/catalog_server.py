"""A backend that offers the published tools of real MCP servers (benchmarks/catalog/servers/*.json)
and answers every call with the tool's name and the arguments it got.

python catalog_server.py NAME [NAME ...]   -> stdio; NAME is a fixture (github, slack, ...). With
one NAME the tools keep their own names; with several, each is prefixed with its server's name.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("FASTMCP_LOG_LEVEL", "ERROR")

from fastmcp import FastMCP  # noqa: E402
from fastmcp.tools import Tool, ToolResult  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "benchmarks" / "catalog" / "servers"


class Published(Tool):
    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(structured_content={"tool": self.name, "arguments": arguments})


def main(names: list[str]) -> None:
    mcp = FastMCP("catalog")
    for name in names:
        fixture = json.loads((FIXTURES / f"{name}.json").read_text())
        for tool in fixture["tools"]:
            exported = tool["name"] if len(names) == 1 else f"{name}_{tool['name']}"
            # a few servers publish schemas without "type", which the protocol's current schema requires
            schema = {"type": "object", **(tool.get("inputSchema") or {})}
            mcp.add_tool(Published(name=exported, description=tool.get("description"), parameters=schema))
    mcp.run(show_banner=False)


if __name__ == "__main__":
    main(sys.argv[1:])
