"""HTTP modes: token auth in front of every route, and the small REST admin surface."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Any

from fastmcp import FastMCP
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PUBLIC_PATHS = frozenset({"/healthz"})


class TokenAuth:
    """Requires `Authorization: Bearer <token>` or `X-API-Key: <token>` on every non-public path."""

    def __init__(self, app: ASGIApp, tokens: Iterable[str]) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]

    def _authorized(self, headers: Headers) -> bool:
        presented = headers.get("x-api-key", "")
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            presented = credentials.strip()
        given = presented.encode()
        # compare against every token, so timing does not tell which one nearly matched
        return bool(given) and any([hmac.compare_digest(given, t) for t in self.tokens])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS \
                and not self._authorized(Headers(scope=scope)):
            response = JSONResponse(
                {"error": "unauthorized",
                 "message": "send 'Authorization: Bearer <token>' or 'X-API-Key: <token>'"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def add_admin_routes(mcp: FastMCP, servers: Callable[[], dict[str, Any]]) -> None:
    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @mcp.custom_route("/servers", methods=["GET"])
    async def list_servers(_request: Request) -> JSONResponse:
        return JSONResponse(servers())
