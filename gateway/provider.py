"""Lists every backend's tools, resources and prompts under its namespace.

One long-lived Provider reads the pool: components are rebuilt when the pool reports a change, so
listing or resolving a tool is a dict lookup and never a request to a backend. Calls, reads and
prompt renders of these components are answered by `gateway.fastpath` before FastMCP sees them;
only tools keep a FastMCP run path, for a request the fast path leaves to FastMCP.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import mcp_types
from fastmcp.prompts import Prompt
from fastmcp.prompts.base import PromptArgument
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.server.providers import Provider
from fastmcp.tools import Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec
from pydantic import PrivateAttr

from gateway.backends.pool import BackendPool
from gateway.names import namespace_uri
from gateway.relay import relay_call


class BackendTool(Tool):
    """A backend tool as the gateway lists it."""

    _pool: BackendPool = PrivateAttr()
    _server: str = PrivateAttr()
    _tool: str = PrivateAttr()
    _redact: Callable[[str], str] = PrivateAttr()
    _source: mcp_types.Tool = PrivateAttr()
    _header_params: bool = PrivateAttr()  # whether its schema mirrors arguments into Mcp-Param headers

    @classmethod
    def create(cls, pool: BackendPool, exported: str, server: str, tool: mcp_types.Tool,
               redact: Callable[[str], str]) -> BackendTool:
        made = cls(name=exported, title=tool.title,
                   description=f"[{server}] {tool.description or tool.name}",
                   parameters=tool.input_schema or {"type": "object", "properties": {}},
                   output_schema=tool.output_schema, annotations=tool.annotations,
                   icons=tool.icons, meta=tool.meta)
        made._pool, made._server, made._tool, made._redact = pool, server, tool.name, redact
        made._source = tool
        made._header_params = "x-mcp-header" in json.dumps(made.parameters)
        return made

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return await relay_call(self._pool, self._server, self._tool, arguments, redact=self._redact)


class GatewayProvider(Provider):
    def __init__(self, pool: BackendPool, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._pool = pool
        self._redact = redact
        self._tools: dict[str, Tool] = {}
        self._prompts: list[Prompt] = []
        self._resources: list[Resource] = []
        self._templates: list[ResourceTemplate] = []
        pool.subscribe(self._rebuild)

    def _rebuild(self) -> None:
        pool = self._pool
        backends = {b.name: b for b in pool.backends()}
        tools: dict[str, Tool] = {}
        for exported, (server, name) in pool.tool_index.items():
            mcp_tool = backends[server].components.tools[name].tool
            tool = self._tools.get(exported)
            # unchanged backend tools keep their built Tool; a re-listed one is rebuilt
            if not (isinstance(tool, BackendTool) and tool._source is mcp_tool):
                tool = BackendTool.create(pool, exported, server, mcp_tool, self._redact)
            tools[exported] = tool
        self._tools = tools

        by_name = {(b.name, p.name): p for b in backends.values() for p in b.components.prompts}
        self._prompts = [_listed_prompt(exported, by_name[key]) for exported, key in pool.prompt_index.items()]
        self._resources = [_listed_resource(namespace_uri(b.name, str(r.uri)), r)
                           for b in backends.values() for r in b.components.resources]
        self._templates = [_listed_template(namespace_uri(b.name, t.uri_template), t)
                           for b in backends.values() for t in b.components.templates]

    def header_params_schema(self, name: str) -> dict[str, Any] | None:
        """The input schema of a tool that mirrors arguments into Mcp-Param headers, else None."""
        tool = self._tools.get(name)
        return tool.parameters if isinstance(tool, BackendTool) and tool._header_params else None

    async def _list_tools(self) -> Sequence[Tool]:
        return list(self._tools.values())

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        return self._tools.get(name)

    async def _list_prompts(self) -> Sequence[Prompt]:
        return self._prompts

    async def _list_resources(self) -> Sequence[Resource]:
        return self._resources

    async def _list_resource_templates(self) -> Sequence[ResourceTemplate]:
        return self._templates


def _listed_resource(uri: str, source: mcp_types.Resource) -> Resource:
    return Resource(uri=uri, name=source.name, title=source.title, description=source.description,
                    mime_type=source.mime_type or "text/plain", icons=source.icons,
                    annotations=source.annotations, meta=source.meta)


def _listed_template(uri_template: str, source: mcp_types.ResourceTemplate) -> ResourceTemplate:
    return ResourceTemplate(uri_template=uri_template, name=source.name, title=source.title,
                            description=source.description, mime_type=source.mime_type or "text/plain",
                            icons=source.icons, annotations=source.annotations, parameters={}, meta=source.meta)


def _listed_prompt(name: str, source: mcp_types.Prompt) -> Prompt:
    arguments = [PromptArgument(name=a.name, description=a.description, required=a.required or False)
                 for a in source.arguments or ()]
    return Prompt(name=name, title=source.title, description=source.description, arguments=arguments,
                  icons=source.icons, meta=source.meta)
