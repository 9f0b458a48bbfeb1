"""The operator's web console: pages rendered on the server (Jinja2, autoescaped) and made live with
htmx, vendored under static/ (no CDN, no build step).

Authentication happens before these routes, in the gateway's middleware: /ui/login and /ui/static/*
are public, every other /ui path is reached only with a valid session cookie or an admin bearer
token, and a cookie-authenticated request that changes anything must carry the session's CSRF token
in `X-CSRF-Token` (the layout puts it in `hx-headers` on <body>, so every htmx request sends it).

A handler never shows a traceback: a ConsoleError's message is shown in the page, verbatim and
escaped, and anything unexpected is logged and reported as an internal error.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.access import Access
from gateway.console.api import caller_of
from gateway.console.forms import BadInput, form_fields, pipeline_inputs, server_fields
from gateway.console.service import Console, ConsoleError
from gateway.console.sessions import COOKIE, SESSION_KEY, ConsoleSessions, Role, Session

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

PAGE_SIZE = 50
CALLS_SHOWN = 100
OUTCOMES = ("ok", "error", "failed", "timeout", "cancelled")

WRONG_TOKEN = "wrong token"
CLIENT_REFUSED = "this token may use MCP but not the console: log in with an operator (admin) token"

CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}
# The pages load only their own scripts and styles; nothing inline, nothing from elsewhere.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not no-referrer: with it a form POST says `Origin: null`, which the gateway refuses
    "Cache-Control": "no-store",
    "Vary": "HX-Request, HX-Target",
}
# htmx: swap error pages too (they carry the message), except 401 (the session is gone: console.js
# goes to the login page); no inline <style> (the CSP forbids it; console.css has the indicator rule).
HTMX_CONFIG = {
    "includeIndicatorStyles": False,
    "allowEval": False,
    "historyCacheSize": 0,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "401", "swap": False, "error": True},
        {"code": "[45]..", "swap": True, "error": True},
        {"code": "...", "swap": False},
    ],
}


# -- formatting helpers (Jinja filters) -------------------------------------------------------------

def _uptime(seconds: Any) -> str:
    try:
        total = int(float(seconds))
    except (TypeError, ValueError):
        return "?"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _ms(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "" if value is None else str(value)
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def _pretty(value: Any, limit: int = 20_000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit} more characters)"
    return text


def _clock(value: Any) -> str:
    """The time of day of an ISO 8601 timestamp ("2026-01-02T03:04:05.678+00:00" → "03:04:05")."""
    text = str(value or "")
    return text[11:19] if len(text) >= 19 and text[10] in "T " else text


def _path(value: Any) -> str:
    return quote(str(value), safe="")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(uptime=_uptime, ms=_ms, pretty=_pretty, clock=_clock, path=_path)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    return env


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """name → (content, content type, short hash for cache-busting URLs)."""
    files = {}
    for path in sorted(STATIC.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            content = path.read_bytes()
            kind = CONTENT_TYPES.get(path.suffix, "text/plain; charset=utf-8")
            files[path.name] = (content, kind, hashlib.sha256(content).hexdigest()[:12])
    return files


# -- the routes -------------------------------------------------------------------------------------

def ui_routes(console: Console, sessions: ConsoleSessions,
              check_token: Callable[[str], Access | None]) -> list[Route]:
    return _UI(console, sessions, check_token).routes()


def _guarded(handler: Callable[[_UI, Request], Awaitable[Response]]) -> Callable[[_UI, Request], Awaitable[Response]]:
    """Whatever goes wrong in a handler, the operator gets a page with a message, not a traceback."""

    @functools.wraps(handler)
    async def run(self: _UI, request: Request) -> Response:
        try:
            return await handler(self, request)
        except Exception:
            log.exception("console: %s %s failed", request.method, request.url.path)
            return self.message(request, "internal error: the gateway's log has the details", 500)

    return run


class _UI:
    def __init__(self, console: Console, sessions: ConsoleSessions,
                 check_token: Callable[[str], Access | None]) -> None:
        self.console = console
        self.sessions = sessions
        self.check_token = check_token
        self.env = _environment()
        self.static_files = _static_files()
        self.env.globals.update(static=self.static_url, htmx_config=HTMX_CONFIG, outcomes=OUTCOMES,
                                catalog=console.templates)

    def routes(self) -> list[Route]:
        return [
            Route("/ui", self.index, methods=["GET"]),
            Route("/ui/", self.index, methods=["GET"]),
            Route("/ui/login", self.login_page, methods=["GET"]),
            Route("/ui/login", self.login, methods=["POST"]),
            Route("/ui/logout", self.logout, methods=["POST"]),
            Route("/ui/static/{file}", self.static, methods=["GET"]),
            Route("/ui/summary", self.summary_part, methods=["GET"]),
            Route("/ui/servers", self.servers_page, methods=["GET"]),
            Route("/ui/servers", self.add_server, methods=["POST"]),
            Route("/ui/servers/{name}", self.server_page, methods=["GET"]),
            Route("/ui/servers/{name}", self.remove_server, methods=["DELETE"]),
            Route("/ui/servers/{name}/restart", self.restart_server, methods=["POST"]),
            Route("/ui/tools", self.tools_page, methods=["GET"]),
            Route("/ui/tools/{name}/toggle", self.toggle_tool, methods=["POST"]),
            Route("/ui/tools/{name}", self.edit_tool, methods=["POST"]),
            Route("/ui/pipelines", self.pipelines_page, methods=["GET"]),
            Route("/ui/pipelines/{name}/run", self.run_pipeline, methods=["POST"]),
            Route("/ui/calls", self.calls_page, methods=["GET"]),
            Route("/ui/calls/rows", self.call_rows, methods=["GET"]),
        ]

    # -- rendering ----------------------------------------------------------------------------------

    def static_url(self, name: str) -> str:
        entry = self.static_files.get(name)
        return f"/ui/static/{name}" + (f"?v={entry[2]}" if entry else "")

    @staticmethod
    def session(request: Request) -> Session | None:
        """The browser's console session (None for a bearer token), as the auth middleware left it."""
        session = (request.scope.get("state") or {}).get(SESSION_KEY)
        return session if isinstance(session, Session) else None

    def summary(self) -> dict[str, Any] | None:
        try:
            return self.console.summary()
        except Exception:  # the header is not worth failing a page for
            log.exception("console: summary failed")
            return None

    def render(self, request: Request, template: str, status: int = 200, *, page: str | None = None,
               changed: bool = False, **context: Any) -> HTMLResponse:
        """A full page (with `page`, the nav entry it is) or a fragment (without). `changed`: the
        answer to a change, after which the header's counts refresh themselves."""
        session = self.session(request)
        if page not in (None, "login"):
            context.setdefault("summary", self.summary())
        html = self.env.get_template(template).render(
            page=page, csrf=session.csrf if session else "", logged_in=page not in (None, "login"), **context)
        headers = {**PAGE_HEADERS, **({"HX-Trigger": "gateway-changed"} if changed else {})}
        return HTMLResponse(html, status, headers=headers)

    def message(self, request: Request, text: str, status: int) -> HTMLResponse:
        if self.fragment(request):
            return self.render(request, "_message.html", status, message=text, kind="error")
        return self.render(request, "message.html", status, page="", message=text, kind="error")

    @staticmethod
    def fragment(request: Request, target: str | None = None) -> bool:
        """Whether htmx asked for a part of a page (into `target`, when given), not a whole one."""
        headers = request.headers
        if headers.get("hx-request") != "true" or headers.get("hx-history-restore-request") == "true":
            return False
        return target is None or headers.get("hx-target") == target

    @staticmethod
    def see_other(request: Request, url: str) -> Response:
        if _UI.fragment(request):  # htmx follows a 303 itself and would swap the page in; go there instead
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)

    # -- login --------------------------------------------------------------------------------------

    @_guarded
    async def index(self, request: Request) -> Response:
        return RedirectResponse("/ui/servers", status_code=303)

    @_guarded
    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", page="login")

    @_guarded
    async def login(self, request: Request) -> Response:
        form = await request.form()
        token = form.get("token")
        access = self.check_token(token) if isinstance(token, str) and token else None
        if access is None:
            return self.render(request, "login.html", 401, page="login", message=WRONG_TOKEN)
        if access.role != Role.admin:
            return self.render(request, "login.html", 403, page="login", message=CLIENT_REFUSED)
        self.sessions.close(request.cookies.get(COOKIE))  # a session this browser had before ends here
        session_id, _session = self.sessions.open(Role.admin, access.identity)
        response = RedirectResponse("/ui/servers", status_code=303)
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    @_guarded
    async def logout(self, request: Request) -> Response:
        self.sessions.close(request.cookies.get(COOKIE))
        response = self.see_other(request, "/ui/login")
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    @_guarded
    async def summary_part(self, request: Request) -> Response:
        return self.render(request, "_summary.html", summary=self.summary())

    @_guarded
    async def static(self, request: Request) -> Response:
        entry = self.static_files.get(request.path_params["file"])
        if entry is None:
            return Response("not found", 404, media_type="text/plain")
        content, kind, digest = entry
        etag = f'"{digest}"'
        headers = {"Cache-Control": "public, max-age=86400", "ETag": etag, "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(content, headers={**headers, "Content-Type": kind})

    # -- servers ------------------------------------------------------------------------------------

    def servers_context(self) -> dict[str, Any]:
        try:
            return {"servers": self.console.servers(), "servers_error": None}
        except ConsoleError as exc:
            return {"servers": [], "servers_error": exc.message}

    @_guarded
    async def servers_page(self, request: Request) -> Response:
        if self.fragment(request, "servers-table"):
            return self.render(request, "_servers_table.html", **self.servers_context())
        return self.render(request, "servers.html", page="servers", form={}, **self.servers_context())

    @_guarded
    async def add_server(self, request: Request) -> Response:
        form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
        try:
            added = await self.console.add_server(server_fields(form))
        except BadInput as exc:
            return self.render(request, "_add_server.html", 400, form=form, message=str(exc), kind="error")
        except ConsoleError as exc:
            return self.render(request, "_add_server.html", exc.status, form=form, message=exc.message,
                               kind="error")
        tools = added.get("tools") or []
        text = f"registered '{added.get('registered', form.get('name'))}': {added.get('status', '?')}, " \
               f"{len(tools)} tool{'s' if len(tools) != 1 else ''}"
        return self.render(request, "_add_server.html", form={}, message=text, kind="ok", oob=True,
                           changed=True, **self.servers_context())

    @_guarded
    async def server_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            server = self.console.server(name)
        except ConsoleError as exc:
            return self.render(request, "server.html", exc.status, page="servers", name=name, server=None,
                               message=exc.message, kind="error")
        if self.fragment(request, "server-detail"):
            return self.render(request, "_server_detail.html", server=server)
        return self.render(request, "server.html", page="servers", name=name, server=server)

    async def server_action(self, request: Request, action: str) -> Response:
        name = request.path_params["name"]
        method = self.console.restart_server if action == "restart" else self.console.remove_server
        status = 200
        try:
            answer = await method(name)
        except ConsoleError as exc:
            message, kind, status = exc.message, "error", exc.status
        else:
            if action == "restart":
                message = f"restarted '{name}'" + (f": {answer['status']}" if isinstance(answer, dict)
                                                    and answer.get("status") else "")
            else:
                message = f"removed '{name}'"
            if isinstance(answer, dict) and answer.get("warning"):
                message += f" ({answer['warning']})"
            kind = "ok"
        if self.fragment(request, "server-detail"):
            try:
                server = self.console.server(name)
            except ConsoleError:
                response = self.see_other(request, "/ui/servers")
                response.headers["HX-Trigger"] = "gateway-changed"
                return response
            return self.render(request, "_server_detail.html", status, server=server, message=message,
                               kind=kind, changed=True)
        return self.render(request, "_servers_table.html", status, table_message=message, table_kind=kind,
                           changed=True, **self.servers_context())

    @_guarded
    async def restart_server(self, request: Request) -> Response:
        return await self.server_action(request, "restart")

    @_guarded
    async def remove_server(self, request: Request) -> Response:
        return await self.server_action(request, "remove")

    # -- tools --------------------------------------------------------------------------------------

    def tools_context(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        query = params.get("q", "").strip()
        server = params.get("server", "").strip()
        try:
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            page = 1
        error = None
        try:
            tools = self.console.tools(query, server or None)
        except ConsoleError as exc:
            tools, error = [], exc.message
        pages = max(1, math.ceil(len(tools) / PAGE_SIZE))
        page = min(page, pages)
        try:
            server_names = sorted(s.get("name", "") for s in self.console.servers())
        except ConsoleError:
            server_names = []

        def url(number: int) -> str:
            return "/ui/tools?" + urlencode({k: v for k, v in (("q", query), ("server", server),
                                                               ("page", number)) if v and v != 1})

        return {"tools": tools[(page - 1) * PAGE_SIZE: page * PAGE_SIZE], "total": len(tools), "current": page,
                "pages": pages, "page_url": url, "q": query, "server": server, "server_names": server_names,
                "message": error, "kind": "error", "first": (page - 1) * PAGE_SIZE + 1}

    @_guarded
    async def tools_page(self, request: Request) -> Response:
        context = self.tools_context(request)
        if self.fragment(request, "tools-results"):
            return self.render(request, "_tools_results.html", **context)
        return self.render(request, "tools.html", page="tools", **context)

    def find_tool(self, exported: str) -> dict[str, Any]:
        for tool in self.console.tools():
            if tool.get("exported_name") == exported:
                return tool
        raise ConsoleError(404, "not_found", f"no tool is exported as '{exported}' (any more): reload the list")

    def tool_row(self, request: Request, tool: dict[str, Any] | None, status: int = 200, *,
                 message: str | None = None, kind: str = "error", **context: Any) -> HTMLResponse:
        return self.render(request, "_tool_row.html", status, tool=tool, row_message=message, row_kind=kind,
                           changed=True, **context)

    @_guarded
    async def toggle_tool(self, request: Request) -> Response:
        exported = request.path_params["name"]
        try:
            current = self.find_tool(exported)
            tool = await self.console.update_tool(exported, {"enabled": not current.get("enabled", True)})
        except ConsoleError as exc:
            return self.tool_row(request, self.tool_or_none(exported), exc.status, exported=exported,
                                 message=exc.message, kind="error")
        return self.tool_row(request, tool, exported=exported)

    def tool_or_none(self, exported: str) -> dict[str, Any] | None:
        try:
            return self.find_tool(exported)
        except ConsoleError:
            return None

    @_guarded
    async def edit_tool(self, request: Request) -> Response:
        exported = request.path_params["name"]
        form = await request.form()
        changes = {}
        for key in ("name", "description"):
            value = form.get(key)
            if isinstance(value, str):
                changes[key] = value.strip() or None  # an empty field clears the override
        if not changes:
            return self.tool_row(request, self.tool_or_none(exported), 400, exported=exported,
                                 message="nothing to change: the form sends a name and a description", kind="error")
        try:
            tool = await self.console.update_tool(exported, changes)
        except ConsoleError as exc:
            return self.tool_row(request, self.tool_or_none(exported), exc.status, exported=exported,
                                 message=exc.message, kind="error", edit=changes)
        return self.tool_row(request, tool, exported=exported, message="saved", kind="ok")

    # -- pipelines ----------------------------------------------------------------------------------

    @_guarded
    async def pipelines_page(self, request: Request) -> Response:
        try:
            pipelines, error = self.console.pipelines(), None
        except ConsoleError as exc:
            pipelines, error = [], exc.message
        pipelines = [{**pipeline, "form_fields": form_fields(pipeline.get("inputs"))} for pipeline in pipelines]
        return self.render(request, "pipelines.html", page="pipelines", pipelines=pipelines, message=error,
                           kind="error")

    @_guarded
    async def run_pipeline(self, request: Request) -> Response:
        name = request.path_params["name"]
        form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
        try:
            found = [p for p in self.console.pipelines() if p.get("name") == name]
            if not found:
                raise ConsoleError(404, "not_found", f"no pipeline is named '{name}' (any more): reload the page")
            inputs = pipeline_inputs(form, found[0].get("inputs"))
            report = await self.console.run_pipeline(name, inputs, caller_of(request))
        except BadInput as exc:
            return self.render(request, "_pipeline_report.html", 400, name=name, message=str(exc), kind="error")
        except ConsoleError as exc:
            return self.render(request, "_pipeline_report.html", exc.status, name=name, message=exc.message,
                               kind="error")
        return self.render(request, "_pipeline_report.html", name=name, report=report, inputs=inputs,
                           changed=True)

    # -- calls --------------------------------------------------------------------------------------

    def calls_context(self, request: Request) -> dict[str, Any]:
        server = request.query_params.get("server", "").strip()
        status = request.query_params.get("status", "").strip()
        try:
            calls, error = self.console.calls(CALLS_SHOWN, server or None, status or None), None
        except ConsoleError as exc:
            calls, error = [], exc.message
        try:
            server_names = sorted(s.get("name", "") for s in self.console.servers())
        except ConsoleError:
            server_names = []
        return {"calls": calls, "server": server, "outcome": status, "server_names": server_names,
                "message": error, "kind": "error", "limit": CALLS_SHOWN}

    @_guarded
    async def calls_page(self, request: Request) -> Response:
        context = self.calls_context(request)
        if self.fragment(request, "calls-live"):
            return self.render(request, "_calls_live.html", **context)
        return self.render(request, "calls.html", page="calls", **context)

    @_guarded
    async def call_rows(self, request: Request) -> Response:
        response = self.render(request, "_call_rows.html", **self.calls_context(request))
        response.headers["HX-Trigger"] = "calls-polled"  # the header's call counts follow (at most every 2 s)
        return response
