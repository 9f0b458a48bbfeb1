"""Re-exports every backend's tools, resources and prompts under its namespace.

One long-lived Provider reads the pool: components are rebuilt when the pool reports a change, so
listing or resolving a tool during a call is a dict lookup and never a request to a backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import mcp_types
from fastmcp.prompts import Prompt
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.server.providers import Provider
from fastmcp.server.providers.proxy import ProxyPrompt, ProxyResource, ProxyTemplate
from fastmcp.tools import Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec
from pydantic import PrivateAttr

from gateway.backends.backend import Backend
from gateway.backends.pool import BackendPool
from gateway.relay import relay_call

_URI = re.compile(r"^([^:]+://)(.*)$", re.DOTALL)


def namespace_uri(server: str, uri: str) -> str:
    """`scheme://path` -> `scheme://server/path`, the scheme FastMCP's own namespacing uses."""
    match = _URI.match(uri)
    return f"{match.group(1)}{server}/{match.group(2)}" if match else f"{server}+{uri}"


class BackendTool(Tool):
    """A backend tool as the gateway lists it; running it takes the pool's call path."""

    _pool: BackendPool = PrivateAttr()
    _server: str = PrivateAttr()
    _tool: str = PrivateAttr()
    _redact: Callable[[str], str] = PrivateAttr()
    _source: mcp_types.Tool = PrivateAttr()

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
        return made

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return await relay_call(self._pool, self._server, self._tool, arguments, redact=self._redact)


class GatewayProvider(Provider):
    def __init__(self, pool: BackendPool, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._pool = pool
        self._redact = redact
        self._tools: dict[str, Tool] = {}
        self._prompts: dict[str, Prompt] = {}
        self._resources: dict[str, Resource] = {}
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

        prompts: dict[str, Prompt] = {}
        by_name = {(b.name, p.name): p for b in backends.values() for p in b.components.prompts}
        for exported, (server, name) in pool.prompt_index.items():
            prompt = ProxyPrompt.from_mcp_prompt(_client_factory(backends[server]), by_name[server, name])
            prompts[exported] = prompt.model_copy(update={"name": exported})
        self._prompts = prompts

        resources: dict[str, Resource] = {}
        templates: list[ResourceTemplate] = []
        for backend in backends.values():
            factory = _client_factory(backend)
            for res in backend.components.resources:
                uri = namespace_uri(backend.name, str(res.uri))
                resources[uri] = ProxyResource.from_mcp_resource(factory, res).model_copy(update={"uri": uri})
            for tpl in backend.components.templates:
                template = ProxyTemplate.from_mcp_template(factory, tpl)
                templates.append(template.model_copy(
                    update={"uri_template": namespace_uri(backend.name, tpl.uri_template)}))
        self._resources, self._templates = resources, templates

    def tool(self, name: str) -> Tool | None:
        return self._tools.get(name)

    async def _list_tools(self) -> Sequence[Tool]:
        return list(self._tools.values())

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        return self._tools.get(name)

    async def _list_prompts(self) -> Sequence[Prompt]:
        return list(self._prompts.values())

    async def _get_prompt(self, name: str, version: VersionSpec | None = None) -> Prompt | None:
        return self._prompts.get(name)

    async def _list_resources(self) -> Sequence[Resource]:
        return list(self._resources.values())

    async def _get_resource(self, uri: str, version: VersionSpec | None = None) -> Resource | None:
        return self._resources.get(uri)

    async def _list_resource_templates(self) -> Sequence[ResourceTemplate]:
        return list(self._templates)


def _client_factory(backend: Backend):
    async def factory():
        return await backend.ready_client()
    return factory
