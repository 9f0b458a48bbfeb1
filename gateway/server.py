"""Assembles the gateway: a FastMCP server in front of a running backend pool."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastmcp import FastMCP
from mcp_types import SubscriptionsListenRequestParams

from gateway import _compat
from gateway.backends.pool import BackendPool
from gateway.backends.process import Started
from gateway.client_events import ClientEvents
from gateway.config import GatewayConfig
from gateway.control import CONTROL_TOOLS, add_control_tools, servers_report
from gateway.fastpath import FastRelay
from gateway.http import add_admin_routes
from gateway.interceptors import build_interceptors
from gateway.listen import Listening
from gateway.notify import LegacySessions
from gateway.persistence import StateFile
from gateway.pipeline_tools import PipelineProvider
from gateway.pipelines.loader import PipelineRegistry
from gateway.policy import RedactingFilter, Redactor, RegistrationPolicy
from gateway.registration import Registrar
from gateway.provider import BackendProvider
from gateway.subscriptions import Subscriptions

logger = logging.getLogger("gateway")

INSTRUCTIONS = """\
This gateway stands in front of several MCP servers. list_servers shows them and their tools;
call_backend(server, tool, params) calls any of them, and each backend tool is also available
directly as <server>__<tool>. route_pipeline runs multi-step workflows across them in one request.
register_server / remove_server change the set of servers at runtime."""


def build_gateway(config: GatewayConfig, pool: BackendPool, registry: PipelineRegistry, state: StateFile,
                  redact: Redactor, *, allow_any_command: bool = False,
                  listening: tuple[str, int] | None = None
                  ) -> tuple[FastMCP, Callable[[frozenset[str]], Awaitable[None]]]:
    settings = config.gateway
    registrar = Registrar(pool, RegistrationPolicy.from_config(config, allow_any_command, listening), redact, state,
                          config.mcpServers)

    @asynccontextmanager
    async def lifespan(_server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        # Only the start lives here: FastMCP closes lifespans inside a shielded cancel scope, which
        # a task group cannot be exited from, so the pool itself is owned by `running_gateway`.
        # The backends start in the background: the gateway serves at once, whatever they do.
        restored = await registrar.restore()
        pool.start_soon(config.mcpServers, runtime=restored)
        yield {"pool": pool}

    sessions = LegacySessions()
    exported = BackendProvider(pool) if settings.export_tools else None
    providers: list[Any] = [PipelineProvider(registry, pool, redact), *([exported] if exported else [])]
    mcp = _compat.GatewayFastMCP("mcp-gateway", instructions=INSTRUCTIONS, lifespan=lifespan, providers=providers,
                                 middleware=[sessions])
    lowlevel = _compat.lowlevel(mcp)

    # On 2026-07-28 streamable HTTP, mcp checks Mcp-Param headers of every tools/call against the
    # tool's schema. Only re-exported backend tools can declare such headers (none of our own tools
    # do), and a schema without them has nothing to check; FastMCP's own lookup would also miss
    # backend tools that no tools/list has shown yet.
    lowlevel.get_tool_input_schema = exported.header_params_schema if exported else lambda _name: None
    subscriptions = Subscriptions(pool)
    lowlevel.middleware.insert(0, FastRelay(pool, lowlevel, exported=exported is not None,
                                            log_floor=lambda session: _compat.client_log_level(mcp, session),
                                            subscriptions=subscriptions))
    lowlevel.middleware.insert(1, ClientEvents(pool))
    listen = Listening(pool, subscriptions)
    subscriptions.also_tell = listen.updated
    lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, listen)
    pool.lone_client = sessions.lone_client
    add_control_tools(mcp, pool, registrar, state)
    add_admin_routes(mcp, lambda: servers_report(pool, redact, state))
    async def lists_changed(kinds: frozenset[str]) -> None:
        """Tells clients of both eras that these lists ('tools', 'prompts', 'resources') changed."""
        listen.lists_changed(kinds)
        await sessions.changed(kinds)

    return mcp, lists_changed


@asynccontextmanager
async def running_gateway(config: GatewayConfig, pipelines_dir: Path | None = None, *,
                          allow_any_command: bool = False, listening: tuple[str, int] | None = None,
                          started: dict[str, Started] | None = None) -> AsyncIterator[FastMCP]:
    """The gateway with its pool and pipeline directory; leaving the block stops every backend.
    `started` holds config backends whose processes the CLI started ahead; `listening` is the HTTP
    front's address, which no backend may be."""
    redact = Redactor()
    redact.add(config.secret_values())
    log_filter = RedactingFilter(redact)
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)
    registry = PipelineRegistry(pipelines_dir)
    registry.refresh()
    state = StateFile(config.state_path())
    async with BackendPool(config.gateway, reserved_names=CONTROL_TOOLS, started=started,
                           interceptors=build_interceptors(config.gateway, redact)) as pool, \
            anyio.create_task_group() as tg:
        mcp, lists_changed = build_gateway(config, pool, registry, state, redact,
                                      allow_any_command=allow_any_command, listening=listening)
        listed: dict[str, Any] = {"tools": frozenset(), "prompts": [], "resources": []}

        def push_if_lists_changed() -> None:
            catalogs = [b.catalog for b in pool.backends()]
            now = {"tools": frozenset(pool.tool_index) | frozenset(registry.pipelines),
                   "prompts": [(c.server, c.prompts) for c in catalogs if c.prompts],
                   "resources": [(c.server, c.resources, c.templates) for c in catalogs if c.resources or c.templates]}
            changed = frozenset(kind for kind, names in now.items() if listed[kind] != names)
            listed.update(now)
            if changed:
                try:
                    tg.start_soon(lists_changed, changed)
                except RuntimeError:  # shutting down: nobody left to tell
                    pass

        pool.subscribe(push_if_lists_changed)
        registry.subscribe(push_if_lists_changed)
        tg.start_soon(registry.watch)
        yield mcp
        tg.cancel_scope.cancel()
    for handler in logging.getLogger().handlers:
        handler.removeFilter(log_filter)
