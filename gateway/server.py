"""Assembles the gateway: a FastMCP server in front of a running backend pool."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from fastmcp import FastMCP
from fastmcp.server.middleware.dereference import DereferenceRefsMiddleware
from mcp_types import SubscriptionsListenRequestParams
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import _compat
from gateway.backends.pool import BackendPool
from gateway.backends.process import Started
from gateway.client_events import ClientEvents
from gateway.config import GatewayConfig
from gateway.audit import AuditTrail
from gateway.backends.tool_rules import ToolRules
from gateway.console.api import api_routes
from gateway.console.service import Console
from gateway.control import CONTROL_TOOLS, add_control_tools
from gateway.exposure import SEARCH_TOOL, Offer
from gateway.fastpath import FastRelay
from gateway.http import public_routes
from gateway.interceptors import build_interceptors
from gateway.interceptors.observe import Observe
from gateway.metrics import Metrics
from gateway.listen import Listening
from gateway.notify import LegacySessions
from gateway.store import Sections, Store, open_store
from gateway.pipeline_tools import PipelineProvider
from gateway.pipelines.loader import PipelineRegistry
from gateway.profiles import Profiles
from gateway.policy import RedactingFilter, Redactor, RegistrationPolicy
from gateway.registration import Registrar
from gateway.provider import BackendProvider
from gateway.subscriptions import Subscriptions

logger = logging.getLogger("gateway")

INSTRUCTIONS = """\
This gateway stands in front of several MCP servers. list_servers shows them and their tools;
call_backend(server, tool, params) calls any of them, and each backend tool is also available
directly as <server>__<tool>. When not every tool is listed, search_tools finds them by what they do.
route_pipeline runs multi-step workflows across them in one request.
register_server / remove_server change the set of servers at runtime."""
RESERVED_TOOLS = (*CONTROL_TOOLS, SEARCH_TOOL)


@dataclass
class Gateway:
    """A running gateway: its MCP server, and its console's routes (served beside MCP over HTTP, or
    on their own port beside the stdio front)."""

    mcp: FastMCP
    console: Console
    console_routes: list[Route]


def build_gateway(config: GatewayConfig, pool: BackendPool, registry: PipelineRegistry, state: Store,
                  redact: Redactor, audit: AuditTrail | None, metrics: Metrics | None, profiles: Profiles, *,
                  allow_any_command: bool = False, listening: tuple[str, int] | None = None
                  ) -> tuple[Gateway, Callable[[frozenset[str]], Awaitable[None]]]:
    settings = config.gateway
    registrar = Registrar(pool, RegistrationPolicy.from_config(config, allow_any_command, listening), redact, state,
                          config.mcpServers)
    starting: list[anyio.Event] = []  # each configured or restored backend's first attempt
    restored = anyio.Event()

    @asynccontextmanager
    async def lifespan(_server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        # Only the start lives here: FastMCP closes lifespans inside a shielded cancel scope, which
        # a task group cannot be exited from, so the pool itself is owned by `running_gateway`.
        # The backends start in the background: the gateway serves at once, whatever they do.
        starting.extend(await restore(registrar, state, pool, config, profiles))
        restored.set()
        pool.start_task(state.watch)  # other replicas' changes, from now on (a file store has none)
        yield {"pool": pool}

    async def apply_remote(changes: Sections) -> None:
        """Another replica's change, made here too: servers started or stopped, tool settings and
        profiles' servers replaced; the pool's listeners then tell this replica's clients."""
        rules = pool.tool_rules
        for server, tools in (changes.get("tools") or {}).items():
            for problem in rules.replace(server, tools):
                logger.error("%s: tool setting not applied: %s", state.where, problem)
        if changes.get("tools"):
            pool.tools_changed()
        for name, servers in (changes.get("profiles") or {}).items():
            profiles.replace(name, servers)
        await registrar.apply(changes.get("servers") or {})

    state.on_remote_change = apply_remote

    async def readyz(_request: Request) -> JSONResponse:
        """Ready once every configured backend's first start attempt ended (whether it came up or
        not: one broken backend must not keep the replica out of service). A degraded store is
        reported, not made unready: the replica still serves everyone with the state it has."""
        waiting = sum(not event.is_set() for event in starting)
        store = "degraded" if state.degraded else "ok"
        if waiting or not restored.is_set():
            return JSONResponse({"status": "starting", "backends_starting": waiting, "store": store}, status_code=503)
        return JSONResponse({"status": "ready", "store": store})

    sessions = LegacySessions()
    offer = Offer(pool, profiles, registry, settings)
    exported = BackendProvider(pool) if settings.export_tools else None
    on_report = metrics.pipeline_finished if metrics else lambda _report: None
    providers: list[Any] = [PipelineProvider(registry, pool, redact, on_report), *([exported] if exported else [])]
    # Schemas are dereferenced (FastMCP's default) for what is offered, not for every tool before the
    # offer filters it: in search mode that is a handful of tools, not the whole catalog.
    mcp = _compat.GatewayFastMCP("mcp-gateway", instructions=INSTRUCTIONS, lifespan=lifespan, providers=providers,
                                 middleware=[sessions, DereferenceRefsMiddleware(), offer], dereference_schemas=False)
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
    add_control_tools(mcp, pool, registrar, state, offer)
    offer.add_search_tool(mcp)
    console = Console(pool, registrar, state, registry, redact, audit, metrics, frozenset(RESERVED_TOOLS), offer)
    routes = [*public_routes(), Route("/readyz", readyz, methods=["GET"]), *api_routes(console)]
    for route in routes:
        mcp.custom_route(route.path, methods=sorted(route.methods or ()))(route.endpoint)
    async def lists_changed(kinds: frozenset[str]) -> None:
        """Tells clients of both eras that these lists ('tools', 'prompts', 'resources') changed."""
        listen.lists_changed(kinds)
        await sessions.changed(kinds)

    return Gateway(mcp, console, routes), lists_changed


async def restore(registrar: Registrar, state: Store, pool: BackendPool, config: GatewayConfig,
                  profiles: Profiles) -> list[anyio.Event]:
    """Runtime registrations, tool overrides and profiles' runtime servers from the store; then
    every backend starts. The events are set as the backends' first attempts end."""
    restored = await registrar.restore()
    rules = pool.tool_rules
    for problem in rules.restore(state.keep("tools", rules.saved)):
        logger.error("%s: tool setting not restored: %s", state.where, problem)
    for problem in profiles.restore(state.keep("profiles", profiles.saved)):
        logger.error("%s: %s", state.where, problem)
    return pool.start_soon(config.mcpServers, runtime=restored)


@asynccontextmanager
async def running_gateway(config: GatewayConfig, pipelines_dir: Path | None = None, *,
                          allow_any_command: bool = False, listening: tuple[str, int] | None = None,
                          started: dict[str, Started] | None = None, profile: str | None = None
                          ) -> AsyncIterator[Gateway]:
    """The gateway with its pool and pipeline directory; leaving the block stops every backend.
    `started` holds config backends whose processes the CLI started ahead; `listening` is the HTTP
    front's address, which no backend may be; `profile` the view of requests that name none (stdio's
    --profile)."""
    redact = Redactor()
    redact.add(config.secret_values())
    log_filter = RedactingFilter(redact)
    for handler in logging.getLogger().handlers:
        handler.addFilter(log_filter)
    registry = PipelineRegistry(pipelines_dir)
    registry.refresh()
    settings = config.gateway
    state = open_store(settings.store, config.state_path(), settings.store_prefix)
    await state.start()
    rules = ToolRules(config.mcpServers)
    observe = Observe()
    profiles = Profiles(settings, default=profile)
    audit = AuditTrail(settings.audit, config.audit_path(), redact) if settings.audit.enabled else None
    try:
        async with audit or nullcontext():
            async with BackendPool(settings, reserved_names=RESERVED_TOOLS, started=started, tool_rules=rules,
                                   interceptors=build_interceptors(settings, redact, rules, observe, profiles)) as pool, \
                    anyio.create_task_group() as tg:
                metrics = Metrics(pool, registry.pipelines.__contains__) if settings.metrics else None
                observe.listeners = tuple(x for x in (audit, metrics) if x is not None)
                gateway, lists_changed = build_gateway(config, pool, registry, state, redact, audit, metrics,
                                                       profiles, allow_any_command=allow_any_command,
                                                       listening=listening)
                _watch_lists(pool, registry, tg, lists_changed)
                yield gateway
                tg.cancel_scope.cancel()
    finally:
        await state.aclose()
    for handler in logging.getLogger().handlers:
        handler.removeFilter(log_filter)


def _watch_lists(pool: BackendPool, registry: PipelineRegistry, tg: anyio.abc.TaskGroup,
                 lists_changed: Callable[[frozenset[str]], Awaitable[None]]) -> None:
    """Tells clients when what they are offered changes: backends, the operator's tool settings,
    the pipeline directory."""
    listed: dict[str, Any] = {"tools": frozenset(), "prompts": [], "resources": []}

    def push_if_lists_changed() -> None:
        catalogs = [b.catalog for b in pool.backends()]
        rules = pool.tool_rules
        offered = frozenset((name, rules.description(*key)) for name, key in pool.tool_index.items()
                            if not rules.disabled_by(*key))
        now = {"tools": offered | frozenset(registry.pipelines),
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
