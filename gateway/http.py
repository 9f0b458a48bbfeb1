"""HTTP modes: who may reach what. Tokens in front of every route but /healthz; operators only for the
console and its API; CSRF checks for the console's browser sessions."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.access import ACCESS_KEY, Access, Credentials, Role
from gateway.console.sessions import COOKIE, CSRF_HEADER, SESSION_KEY, ConsoleSessions

PUBLIC_PATHS = frozenset({"/healthz", "/ui/login"})
PUBLIC_PREFIXES = ("/ui/static/",)
OPEN = Access(Role.admin, "anonymous")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def presented_token(headers: Headers) -> str:
    presented = headers.get("x-api-key", "")
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        presented = credentials.strip()
    return presented


def _refusal(status: int, error: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


class TokenAuth:
    """Decides every HTTP request's Access and leaves it in the scope's state for the layers below.

    MCP endpoints take any token; everything else but the public paths is the console's, for
    operator tokens and console sessions only. Without any token configured (a loopback-only
    gateway) everyone is an operator.
    """

    def __init__(self, app: ASGIApp, credentials: Credentials, sessions: ConsoleSessions,
                 mcp_paths: Iterable[str]) -> None:
        self.app = app
        self.credentials = credentials
        self.sessions = sessions
        self.mcp_paths = tuple(mcp_paths)

    def _is_mcp(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.mcp_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        # a loopback-only (or --no-auth) gateway: everyone is an operator
        decided = self._access(scope, path) if self.credentials.required else OPEN
        if isinstance(decided, Response):
            await decided(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[ACCESS_KEY] = decided
        state[SESSION_KEY] = decided.session
        await self.app(scope, receive, send)

    def _access(self, scope: Scope, path: str) -> Access | Response:
        """The request's Access, or the answer that refuses it."""
        headers = Headers(scope=scope)
        mcp = self._is_mcp(path)
        presented = presented_token(headers)
        access = self.credentials.access_for(presented) if presented else None
        if access is None and not presented and not mcp:
            session = self.sessions.get(Request(scope).cookies.get(COOKIE))
            if session is not None:
                if scope["method"] not in _SAFE_METHODS and not session.csrf_ok(headers.get(CSRF_HEADER)):
                    return _refusal(403, "csrf", "this change came without the console's CSRF token; "
                                                 "reload the page and try again")
                access = Access(session.role, session.identity, session)
        if access is None:
            if path.startswith("/ui") and scope["method"] in _SAFE_METHODS:
                return RedirectResponse("/ui/login", status_code=303)
            what = "a wrong token" if presented else "no token"
            return _refusal(401, "unauthorized", f"{what}: send 'Authorization: Bearer <token>' or "
                                                 f"'X-API-Key: <token>'")
        if not mcp and access.role is not Role.admin:
            return _refusal(403, "forbidden", "this token may use MCP but not the console or its API; use "
                                              "an operator token (gateway.admin_tokens or --admin-token)")
        return access


def public_routes() -> list[Route]:
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return [Route("/healthz", healthz, methods=["GET"])]
