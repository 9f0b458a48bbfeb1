"""Assembles the gateway: a FastMCP server in front of a running backend pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastmcp import FastMCP

from gateway.backends.pool import BackendPool
from gateway.config import GatewayConfig
from gateway.control import CONTROL_TOOLS, add_control_tools
from gateway.pipeline_tools import PipelineProvider
from gateway.pipelines.loader import PipelineRegistry
from gateway.policy import RegistrationPolicy
from gateway.provider import GatewayProvider

INSTRUCTIONS = """\
This gateway stands in front of several MCP servers. list_servers shows them and their tools;
call_backend(server, tool, params) calls any of them, and each backend tool is also available
directly as <server>__<tool>. route_pipeline runs multi-step workflows across them in one request.
register_server / remove_server change the set of servers at runtime."""


def build_gateway(config: GatewayConfig, pool: BackendPool, registry: PipelineRegistry, *,
                  allow_any_command: bool = False) -> FastMCP:
    settings = config.gateway

    @asynccontextmanager
    async def lifespan(_server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        # Only the start lives here: FastMCP closes lifespans inside a shielded cancel scope, which
        # a task group cannot be exited from, so the pool itself is owned by `running_gateway`.
        await pool.start_all(config.mcpServers)
        yield {"pool": pool}

    providers: list[Any] = [PipelineProvider(registry, pool)]
    if settings.export_tools:
        providers.append(GatewayProvider(pool))
    mcp = FastMCP("mcp-gateway", instructions=INSTRUCTIONS, lifespan=lifespan, providers=providers)
    add_control_tools(mcp, pool, RegistrationPolicy.from_settings(settings, allow_any_command))
    return mcp


@asynccontextmanager
async def running_gateway(config: GatewayConfig, pipelines_dir: Path | None = None, *,
                          allow_any_command: bool = False) -> AsyncIterator[FastMCP]:
    """The gateway with its pool and pipeline directory; leaving the block stops every backend."""
    registry = PipelineRegistry(pipelines_dir)
    registry.refresh()
    async with BackendPool(config.gateway, reserved_names=CONTROL_TOOLS) as pool, \
            anyio.create_task_group() as tg:
        tg.start_soon(registry.watch)
        yield build_gateway(config, pool, registry, allow_any_command=allow_any_command)
        tg.cancel_scope.cancel()
