"""What each client is offered: its profile's tools, resources, prompts and pipelines, and either
every tool or, in search mode, the control tools, `search_tools` and the tools it found.

`tool_exposure: auto` decides per view: every tool while they fit `tool_budget`, search past it.
A handshake-era client's searches load what they found into its own tool list (and it is told
the list changed); a 2026-07-28 client has no session to keep them in, so it calls what it found
by name or through `call_backend`, which work in every mode.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Annotated, Any

import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.prompts import Prompt
from fastmcp.resources import Resource, ResourceTemplate
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools import Tool, ToolResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from gateway import _compat
from gateway.access import path_profile
from gateway.backends.pool import BackendPool
from gateway.config import GatewaySettings
from gateway.names import split_uri
from gateway.pipeline_tools import PIPELINE_PREFIX, PipelineTool, route_description
from gateway.pipelines.loader import PipelineRegistry
from gateway.profiles import Profiles, View
from gateway.provider import BackendTool
from gateway.tool_search import Found, ToolIndex

SEARCH_TOOL = "search_tools"
LOADED_PER_CLIENT = 64  # the tools a client found and keeps listed; the oldest make way

SEARCH_DESCRIPTION = """\
Find tools of the servers behind this gateway by what you want to do. Only some tools are listed
up front; search before concluding a tool does not exist.
Describe the task in plain words ("open an issue in a GitHub repository", "read a CSV file",
"send a message to a Slack channel"); add `server` to search one server only.
Returns the best matches, each with its name, server, description and input schema. Call a found
tool at once by its name, or with call_backend(server, tool, params); it is also added to your tool
list."""


class Offer(Middleware):
    def __init__(self, pool: BackendPool, profiles: Profiles, registry: PipelineRegistry,
                 settings: GatewaySettings) -> None:
        self._pool = pool
        self.profiles = profiles
        self._registry = registry
        self._budget = settings.tool_budget
        self._separator = settings.separator
        self.index = ToolIndex(pool)
        # each handshake-era client's found tools, by its connection; dropped when it goes
        self._loaded: dict[Any, OrderedDict[str, None]] = {}
        self._fits: dict[str | None, bool] = {}  # per view: whether every tool fits the budget
        pool.subscribe(self._fits.clear)
        registry.subscribe(self._fits.clear)

    def exported(self, server: str, tool: str) -> str:
        return self._pool.tool_rules.exported(server, tool, self._separator)

    def view(self, ctx: Context | None) -> View:
        request = ctx.request_context if ctx is not None else None
        http = request.request if request is not None else None
        return self.profiles.view(path_profile(http.scope) if http is not None else None)

    def _offers(self, view: View, tool: Tool) -> bool:
        if isinstance(tool, BackendTool):
            return view.offers_tool(tool.server, tool.name)
        if isinstance(tool, PipelineTool):
            return self.offers_pipeline(view, tool.pipeline.name)
        return True

    def _for_view(self, view: View, tool: Tool) -> Tool:
        """route_pipeline lists only the profile's pipelines."""
        if tool.name != "route_pipeline":
            return tool
        return tool.model_copy(update={"description": route_description(
            self._registry, lambda name: self.offers_pipeline(view, name))})

    def offers_pipeline(self, view: View, name: str) -> bool:
        pipeline = self._registry.pipelines.get(name)
        if pipeline is None or view.whole:
            return pipeline is not None
        return view.offers_pipeline(name, ((s.spec.server, s.spec.tool) for s in pipeline.steps.values()),
                                    self.exported)

    def searching(self, view: View, offered: Sequence[Tool]) -> bool:
        if view.exposure != "auto":
            return view.exposure == "search"
        fits = self._fits.get(view.name)
        if fits is None:
            tools = [t for t in offered if t.name != SEARCH_TOOL]
            size = len(json.dumps([t.to_mcp_tool().model_dump(by_alias=True, mode="json", exclude_none=True)
                                   for t in tools]))
            fits = self._fits[view.name] = len(tools) <= self._budget.tools and size / 4 <= self._budget.tokens
        return not fits

    async def on_list_tools(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Sequence[Tool]]
                            ) -> Sequence[Tool]:
        tools = await call_next(context)
        ctx = context.fastmcp_context
        view = self.view(ctx)
        offered = list(tools) if view.whole else [self._for_view(view, t) for t in tools if self._offers(view, t)]
        if not self.searching(view, offered):
            return [t for t in offered if t.name != SEARCH_TOOL]
        loaded = self._loaded.get(self._connection(ctx), {})
        return [t for t in offered if not isinstance(t, BackendTool) or t.name in loaded]

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: CallNext[Any, ToolResult]
                           ) -> ToolResult:
        name, arguments = context.message.name, context.message.arguments or {}
        if name.startswith(PIPELINE_PREFIX) or name == "route_pipeline":
            view = self.view(context.fastmcp_context)
            if not view.whole:
                if name.startswith(PIPELINE_PREFIX) and not self.offers_pipeline(view, name[len(PIPELINE_PREFIX):]):
                    raise ToolError(f"Unknown tool: {name!r}")
                scenario = arguments.get("scenario")
                if scenario in self._registry.pipelines and not self.offers_pipeline(view, scenario):
                    raise ToolError(f"unknown pipeline '{scenario}' in the profile '{view.name}'")
        return await call_next(context)

    async def on_list_resources(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Sequence[Resource]]
                                ) -> Sequence[Resource]:
        return self._on_servers(context, await call_next(context), lambda r: str(r.uri))

    async def on_list_resource_templates(self, context: MiddlewareContext[Any],
                                         call_next: CallNext[Any, Sequence[ResourceTemplate]]
                                         ) -> Sequence[ResourceTemplate]:
        return self._on_servers(context, await call_next(context), lambda t: t.uri_template)

    async def on_list_prompts(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Sequence[Prompt]]
                              ) -> Sequence[Prompt]:
        prompts = await call_next(context)
        view = self.view(context.fastmcp_context)
        index = self._pool.prompt_index
        return [p for p in prompts if (key := index.get(p.name)) is None or view.offers_server(key[0])]

    def _on_servers(self, context: MiddlewareContext[Any], items: Sequence[Any], uri_of: Any) -> Sequence[Any]:
        view = self.view(context.fastmcp_context)
        if view.servers is None:
            return items
        return [x for x in items if (target := split_uri(uri_of(x))) is None or view.offers_server(target[0])]

    # -- what clients found ------------------------------------------------------------------------

    def _connection(self, ctx: Context | None) -> Any:
        """A handshake-era client's connection (it outlives the request); None for 2026-07-28 clients."""
        request = ctx.request_context if ctx is not None else None
        if request is None or request.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        return _compat.connection_of(request.session)

    def _load(self, connection: Any, names: list[str]) -> bool:
        """Adds found tools to a client's list; True when the list grew."""
        if connection is None or not names:
            return False
        loaded = self._loaded.get(connection)
        if loaded is None:
            loaded = self._loaded[connection] = OrderedDict()
            connection.exit_stack.callback(self._loaded.pop, connection, None)
        grew = False
        for name in names:
            grew |= name not in loaded
            loaded[name] = None
            loaded.move_to_end(name)
        while len(loaded) > LOADED_PER_CLIENT:
            loaded.popitem(last=False)
        return grew

    def add_search_tool(self, mcp: FastMCP) -> None:
        @mcp.tool(name=SEARCH_TOOL, description=SEARCH_DESCRIPTION,
                  annotations={"title": "Search the gateway's tools", "readOnlyHint": True})
        async def search_tools(
            query: Annotated[str, Field(min_length=1, max_length=1000, description=(
                "What you want to do, in plain words"))],
            ctx: Context,
            limit: Annotated[int, Field(ge=1, le=50, description="How many tools to return, at most")] = 5,
            server: Annotated[str | None, Field(description="Only this server's tools")] = None,
        ) -> dict[str, Any]:
            view = self.view(ctx)
            if server is not None and (server not in self._pool or not view.offers_server(server)):
                raise ToolError(f"unknown server '{server}'; list_servers shows the servers you can search")

            def offered(found: Found) -> bool:
                return (server is None or found.server == server) and view.offers_tool(found.server, found.exported)

            found = self.index.search(query, limit, offered)
            if self._load(self._connection(ctx), [f.exported for f in found]):
                await ctx.send_notification(mcp_types.ToolListChangedNotification())
            return {"tools": [{"name": f.exported, "server": f.server, "tool": f.tool.name,
                               "description": f.description,
                               "input_schema": f.tool.input_schema or {"type": "object", "properties": {}}}
                              for f in found],
                    **({} if found else {"hint": "nothing matched: try other words, or list_servers"})}
