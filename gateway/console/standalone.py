"""The console on a port of its own, beside the stdio front: a Claude Desktop user can open it too."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastmcp.server.http import HostOriginGuardMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from gateway.console.sessions import ConsoleSessions
from gateway.access import Credentials
from gateway.http import TokenAuth

logger = logging.getLogger("gateway.console")


class ConsoleServer(uvicorn.Server):
    """uvicorn, minus its signal handlers: the stdio front owns the signals, and stops this server."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def console_server(routes: list[BaseRoute], credentials: Credentials, sessions: ConsoleSessions, port: int,
                   allowed_hosts: list[str] | None, allowed_origins: list[str] | None) -> ConsoleServer:
    app = Starlette(routes=routes, middleware=[
        Middleware(HostOriginGuardMiddleware, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins),
        Middleware(TokenAuth, credentials=credentials, sessions=sessions, mcp_paths=())])
    return ConsoleServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                        timeout_graceful_shutdown=1))


def generated_admin_token(path: Path) -> str:
    """An operator token for a console that was given none: written, readable only by this user, to
    `path`, whose name (never the token) is logged."""
    token = secrets.token_urlsafe(32)
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8", opener=lambda p, flags: os.open(p, flags, 0o600)) as handle:
        handle.write(token + "\n")
    return token
