"""HTTP modes: who may reach what. Tokens in front of every route but /healthz; operators only for the
console and its API; CSRF checks for the console's browser sessions."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.access import ACCESS_KEY, PROFILE_KEY, Access, Credentials, Role, path_profile
from gateway.console.sessions import COOKIE, CSRF_HEADER, SESSION_KEY, ConsoleSessions
from gateway.oauth import NOT_A_JWT, WELL_KNOWN, OAuthVerifier, Refused, metadata_url

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/ui/login"})
PUBLIC_PREFIXES = ("/ui/static/",)
OPEN = Access(Role.admin, "anonymous")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def presented_token(headers: Headers) -> str:
    presented = headers.get("x-api-key", "")
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        presented = credentials.strip()
    return presented


def _refusal(status: int, error: str, message: str, challenge: str | None = None) -> JSONResponse:
    """The JSON answer refusing a request; `challenge` is its WWW-Authenticate header (a bare
    'Bearer' on a 401 without one)."""
    challenge = challenge or ("Bearer" if status == 401 else None)
    headers = {"WWW-Authenticate": challenge} if challenge else None
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def _auth_param(value: str) -> str:
    # RFC 6750 allows only printable ASCII but '"' and '\\' in a quoted error_description
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "'" if c == '"' else "?" for c in value)


class TokenAuth:
    """Decides every HTTP request's Access and leaves it in the scope's state for the layers below.

    MCP endpoints take any token; everything else but the public paths is the console's, for
    operator tokens and console sessions only. Without any token configured (a loopback-only
    gateway) everyone is an operator. With `oauth`, a token that is none of the static ones is
    verified as an OAuth access token, and refusals point clients to the resource metadata.
    """

    def __init__(self, app: ASGIApp, credentials: Credentials, sessions: ConsoleSessions,
                 mcp_paths: Iterable[str], oauth: OAuthVerifier | None = None) -> None:
        self.app = app
        self.credentials = credentials
        self.sessions = sessions
        self.mcp_paths = tuple(mcp_paths)
        self.oauth = oauth
        self.required = credentials.required or oauth is not None

    def _is_public(self, path: str) -> bool:
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return True
        return self.oauth is not None and (path == WELL_KNOWN or path.startswith(WELL_KNOWN + "/"))

    def _is_mcp(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.mcp_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self._is_public(path):
            await self.app(scope, receive, send)
            return
        # a loopback-only (or --no-auth) gateway: everyone is an operator
        decided = await self._access(scope, path) if self.required else OPEN
        if isinstance(decided, Response):
            await decided(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[ACCESS_KEY] = decided
        state[SESSION_KEY] = decided.session
        await self.app(scope, receive, send)

    async def _access(self, scope: Scope, path: str) -> Access | Response:
        """The request's Access, or the answer that refuses it."""
        headers = Headers(scope=scope)
        mcp = self._is_mcp(path)
        presented = presented_token(headers)
        access = self.credentials.access_for(presented) if presented else None
        refused: Refused | None = None
        if access is None and presented and self.oauth is not None:
            verified = await self.oauth.verify(presented)
            access, refused = (None, verified) if isinstance(verified, Refused) else (verified, None)
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
            if refused is not None:
                return self._token_refused(scope, refused)
            what = "a wrong token" if presented else "no token"
            return _refusal(401, "unauthorized", f"{what}: send 'Authorization: Bearer <token>' or "
                                                 f"'X-API-Key: <token>'", self._challenge(scope))
        wanted = path_profile(scope)
        if access.profile is not None and access.profile != wanted:
            return _refusal(403, "forbidden", f"this token reaches only the profile '{access.profile}': use "
                                              f"/p/{access.profile}{path}")
        if wanted is not None and (path.startswith("/ui") or path == "/metrics"):
            # these show the whole gateway; a profile's operators have its REST API under /p/<name>/
            return _refusal(403, "forbidden", f"{path} is not part of a profile's view; a profile's operators "
                                              f"use its REST API (/p/{wanted}/servers, /p/{wanted}/tools, ...)")
        if not mcp and access.role is not Role.admin:
            if self.oauth is not None and access.identity.startswith("jwt:"):
                wanted_scope = self.oauth.settings.admin_scope
                why = (f"it lacks the scope '{wanted_scope}'" if wanted_scope else
                       "no access token is an operator's (gateway.auth.oauth.admin_scope is not set)")
                return _refusal(403, "forbidden", f"this token may use MCP but not the console or its API: {why}",
                                self._challenge(scope, "insufficient_scope", why, wanted_scope))
            return _refusal(403, "forbidden", "this token may use MCP but not the console or its API; use "
                                              "an operator token (gateway.admin_tokens or --admin-token)")
        return access

    def _token_refused(self, scope: Scope, refused: Refused) -> Response:
        if refused.status == 503:
            return _refusal(503, "unavailable", refused.reason)
        reason = refused.reason
        if reason == NOT_A_JWT and self.credentials.required:
            reason = "a wrong token: it is none of the gateway's tokens, and not a JWT either"
        challenge = self._challenge(scope, refused.error, reason, refused.scope)
        return _refusal(refused.status, "unauthorized" if refused.status == 401 else "forbidden", reason, challenge)

    def _challenge(self, scope: Scope, error: str | None = None, description: str | None = None,
                   needed: str | None = None) -> str | None:
        """The WWW-Authenticate header (RFC 6750, RFC 9728): with OAuth, where the resource
        metadata is, so that a client can find the authorization server; why a token failed."""
        if self.oauth is None:
            return None
        headers = Headers(scope=scope)
        server = scope.get("server") or ("localhost", None)
        host = headers.get("host") or (f"{server[0]}:{server[1]}" if server[1] else server[0])
        profile = path_profile(scope)
        mcp_path = self.mcp_paths[0] if self.mcp_paths else "/mcp"
        resource = self.oauth.resource(f"{scope.get('scheme', 'http')}://{host}", mcp_path, profile)
        params = [f'resource_metadata="{_auth_param(metadata_url(resource))}"']
        if error:
            params.append(f'error="{error}"')
        if description:
            params.append(f'error_description="{_auth_param(description)}"')
        if needed:
            params.append(f'scope="{_auth_param(needed)}"')
        return "Bearer " + ", ".join(params)


class ProfilePaths:
    """Serves each profile's view of the gateway under /p/<name>/: the path's rest is routed as
    usual, with the profile left in the scope's state for the layers below (and a prefix for the
    URLs the SSE front hands out)."""

    def __init__(self, app: ASGIApp, profiles: Collection[str]) -> None:
        self.app = app
        self.profiles = profiles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/p/"):
            await self.app(scope, receive, send)
            return
        name, _, rest = path[3:].partition("/")
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none are configured"
            await JSONResponse({"error": "unknown_profile", "message": f"no profile '{name}' (profiles: {known})"},
                               status_code=404)(scope, receive, send)
            return
        prefix = f"/p/{name}"
        state = {**scope.get("state", {}), PROFILE_KEY: name}
        await self.app({**scope, "path": "/" + rest, "raw_path": ("/" + rest).encode(),
                        "root_path": scope.get("root_path", "") + prefix, "state": state}, receive, send)


def public_routes(oauth: OAuthVerifier | None = None, mcp_path: str = "/mcp") -> list[Route]:
    """/healthz, and with OAuth the resource metadata (see resource_metadata_routes)."""
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return [Route("/healthz", healthz, methods=["GET"]),
            *(resource_metadata_routes(oauth, mcp_path) if oauth is not None else ())]


def resource_metadata_routes(oauth: OAuthVerifier, mcp_path: str) -> list[Route]:
    """The protected resource metadata (RFC 9728), served to anyone: at the well-known path, at
    the well-known path followed by the MCP endpoint's (how the MCP spec has clients look for it),
    and for each profile's endpoint, /p/<name><mcp path>."""
    suffix = mcp_path.rstrip("/")

    async def metadata(request: Request) -> JSONResponse:
        profile = request.path_params.get("profile")
        origin = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse(oauth.metadata(oauth.resource(origin, mcp_path, profile)))

    paths = dict.fromkeys([WELL_KNOWN, WELL_KNOWN + suffix, WELL_KNOWN + "/p/{profile}" + suffix])
    return [Route(path, metadata, methods=["GET"]) for path in paths]
