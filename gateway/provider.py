"""Re-exports every backend's tools, resources and prompts under its namespace.

One long-lived Provider reads the pool: components are rebuilt when the pool reports a change, so
listing or resolving a tool is a dict lookup and never a request to a backend. Calls, reads and
prompt renders of these components are answered by `gateway.fastpath` before FastMCP sees them;
tools keep a FastMCP run path too (for FastMCP's own callers, such as a transform), through the
same entry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import mcp_types
from fastmcp.exceptions import ToolError
from fastmcp.prompts import Prompt
from fastmcp.prompts.base import PromptArgument
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.server.providers import Provider
from fastmcp.tools import Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec
from pydantic import PrivateAttr, ValidationError

from gateway.backends.errors import BackendError
from gateway.backends.invocation import Invocation, Road
from gateway.backends.pool import BackendPool
from gateway.client_sinks import current_sinks
from gateway.names import namespace_uri

logger = logging.getLogger("gateway.provider")
T = TypeVar("T")


async def run_backend_tool(pool: BackendPool, invocation: Invocation) -> ToolResult:
    """A backend tool call FastMCP runs itself, through the pool's one entry, as a ToolResult."""
    sinks = current_sinks()
    if sinks is not None:
        sinks.attach(invocation)
    try:
        raw = await pool.invoke(invocation)
    except BackendError as exc:
        raise ToolError(str(exc)) from None
    try:
        result = mcp_types.CallToolResult.model_validate(raw, by_name=False)
    except ValidationError:
        raise ToolError(f"server '{invocation.server}' returned a malformed result for {invocation.what}") from None
    # Passed through unchanged: every content type, structured content, meta and isError.
    return ToolResult(content=result.content, structured_content=result.structured_content,
                      meta=result.meta, is_error=result.is_error)


def listed_description(server: str, tool: mcp_types.Tool) -> str:
    return f"[{server}] {tool.description or tool.name}"


class BackendTool(Tool):
    """A backend tool as the gateway lists it."""

    _pool: BackendPool = PrivateAttr()
    _server: str = PrivateAttr()
    _source: mcp_types.Tool = PrivateAttr()

    @classmethod
    def create(cls, pool: BackendPool, exported: str, server: str, tool: mcp_types.Tool,
               description: str | None = None) -> BackendTool:
        made = cls(name=exported, title=tool.title, description=description or listed_description(server, tool),
                   parameters=tool.input_schema or {"type": "object", "properties": {}},
                   output_schema=tool.output_schema, annotations=tool.annotations,
                   icons=tool.icons, meta=tool.meta)
        made._pool, made._server, made._source = pool, server, tool
        return made

    @property
    def server(self) -> str:
        return self._server

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return await run_backend_tool(self._pool, Invocation(
            Road.tool, self._server, "tools/call", {"name": self._source.name, "arguments": arguments}))


class BackendProvider(Provider):
    def __init__(self, pool: BackendPool) -> None:
        super().__init__()
        self._pool = pool
        self._tools: dict[str, Tool] = {}
        self._header_schemas: dict[str, dict[str, Any]] = {}
        self._prompts: list[Prompt] = []
        self._resources: list[Resource] = []
        self._templates: list[ResourceTemplate] = []
        pool.subscribe(self._rebuild)

    def _rebuild(self) -> None:
        pool = self._pool
        backends = {b.name: b for b in pool.backends()}
        tools: dict[str, Tool] = {}
        rules = pool.tool_rules
        for exported, (server, name) in pool.tool_index.items():
            if rules.disabled_by(server, name):
                continue
            mcp_tool = backends[server].catalog.tools[name].tool
            described = rules.description(server, name) or listed_description(server, mcp_tool)
            tool = self._tools.get(exported)
            # unchanged backend tools keep their built Tool; a re-listed or re-described one is rebuilt
            if not (isinstance(tool, BackendTool) and tool._source is mcp_tool and tool.description == described):
                tool = _built(lambda: BackendTool.create(pool, exported, server, mcp_tool, described), server,
                              f"tool '{name}'")
            if tool is not None:
                tools[exported] = tool
        self._tools = tools
        # asked on every 2026-07-28 HTTP tools/call: a plain dict, not a walk of the tools' models
        self._header_schemas = {name: tool.parameters for name, tool in tools.items()
                                if "x-mcp-header" in json.dumps(tool.parameters)}

        catalogs = [b.catalog for b in backends.values()]
        by_name = {(c.server, p.name): p for c in catalogs for p in c.prompts}
        # A backend's component that FastMCP will not take (a resource URI with a space, say) is left
        # out and logged: one backend's oddity must not stop the listing, let alone the gateway.
        self._prompts = [p for exported, key in pool.prompt_index.items()
                         if (p := _built(lambda: _listed_prompt(exported, by_name[key]), key[0],
                                         f"prompt '{key[1]}'")) is not None]
        self._resources = [x for c in catalogs for r in c.resources
                           if (x := _built(lambda: _listed_resource(namespace_uri(c.server, str(r.uri)), r), c.server,
                                           f"resource {str(r.uri)[:100]!r}")) is not None]
        self._templates = [x for c in catalogs for t in c.templates
                           if (x := _built(lambda: _listed_template(namespace_uri(c.server, t.uri_template), t),
                                           c.server, f"resource template {t.uri_template[:100]!r}")) is not None]

    def header_params_schema(self, name: str) -> dict[str, Any] | None:
        """The input schema of a tool that mirrors arguments into Mcp-Param headers, else None."""
        return self._header_schemas.get(name)

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


def _built(make: Callable[[], T], server: str, what: str) -> T | None:
    try:
        return make()
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        logger.warning("server '%s': %s is left out: %s", server, what, str(exc).splitlines()[0][:300])
        return None
