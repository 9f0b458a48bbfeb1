"""The REST API: JSON over HTTP for operators, described at /openapi.json.

Every route here is for operators (the auth middleware lets only operator tokens and console
sessions through); errors are `{"error", "message"}` with the matching status, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.access import ACCESS_KEY, Access, path_profile
from gateway.backends.invocation import Caller
from gateway.console.service import Console, ConsoleError, NewServer, ToolChange, refused
from gateway.metrics import CONTENT_TYPE
from gateway.profiles import View

MAX_BODY = 1 << 20
Handler = Callable[[Request], Awaitable[Any]]


def error_response(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


async def json_body(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise refused(400, f"the body is more than {MAX_BODY} bytes")
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise refused(400, f"the body is not valid JSON{where}: send a JSON object") from None


def caller_of(request: Request) -> Caller:
    access: Access | None = request.scope.get("state", {}).get(ACCESS_KEY)
    return Caller(access.identity if access else "anonymous", "console", profile_of(request))


def profile_of(request: Request) -> str | None:
    """The profile an operator's request is limited to: its credential's, or its path's (/p/<name>/...)."""
    access: Access | None = request.scope.get("state", {}).get(ACCESS_KEY)
    return access.profile if access is not None and access.profile else path_profile(request.scope)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise refused(400, f"query parameter '{name}' must be a whole number, not {raw[:40]!r}") from None
    if not low <= value <= high:
        raise refused(400, f"query parameter '{name}' must be between {low} and {high}")
    return value


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    status: int = 200


OPERATIONS = (
    Operation("GET", "/servers", "List servers with status, tools and last error"),
    Operation("POST", "/servers", "Register a server (trusted like the config file)", NewServer, status=201),
    Operation("GET", "/servers/{name}", "One server, with its stderr tail and restarts"),
    Operation("DELETE", "/servers/{name}", "Stop and remove a server registered at runtime"),
    Operation("POST", "/servers/{name}/restart", "Restart a server's session and process now"),
    Operation("GET", "/tools", "Every backend tool, enabled or not, with overrides and schema",
              query=(("q", "string", "words to find in names and descriptions"),
                     ("server", "string", "only this server's tools"))),
    Operation("PATCH", "/tools/{exported_name}", "Enable, disable, rename or re-describe a tool", ToolChange),
    Operation("GET", "/calls", "Recent calls from the audit trail, newest first",
              query=(("limit", "integer", "at most this many (1-1000, default 100)"),
                     ("server", "string", "only calls to this server"),
                     ("status", "string", "only this outcome: ok, error, failed, timeout, cancelled"))),
    Operation("GET", "/pipelines", "Pipelines with their validation status"),
    Operation("POST", "/pipelines/{name}/run", "Run a pipeline; the body is its inputs as a JSON object"),
    Operation("GET", "/metrics", "Prometheus metrics"),
)


def api_routes(console: Console) -> list[Route]:
    def view(request: Request) -> View | None:
        profile = profile_of(request)
        return None if profile is None else console.view(profile)

    async def list_servers(request: Request) -> Any:
        return console.report(view(request))

    async def get_server(request: Request) -> Any:
        return console.server(request.path_params["name"], view(request))

    async def add_server(request: Request) -> Any:
        return await console.add_server(await json_body(request), view(request))

    async def remove_server(request: Request) -> Any:
        return await console.remove_server(request.path_params["name"], view(request))

    async def restart_server(request: Request) -> Any:
        return await console.restart_server(request.path_params["name"], view(request))

    async def list_tools(request: Request) -> Any:
        tools = console.tools(request.query_params.get("q", ""), request.query_params.get("server") or None,
                              view(request))
        return {"tools": tools, "count": len(tools)}

    async def change_tool(request: Request) -> Any:
        return await console.update_tool(request.path_params["exported_name"], await json_body(request), view(request))

    async def list_calls(request: Request) -> Any:
        query = request.query_params
        return {"calls": console.calls(_int(request, "limit", 100, 1, 1000), query.get("server") or None,
                                       query.get("status") or None, view(request))}

    async def list_pipelines(request: Request) -> Any:
        return {"pipelines": console.pipelines(view(request))}

    async def run(request: Request) -> Any:
        return await console.run_pipeline(request.path_params["name"], await json_body(request), caller_of(request),
                                          view(request))

    async def metrics(_request: Request) -> Any:
        if console.metrics is None:
            raise refused(404, "metrics are off (gateway.metrics is false)")
        return Response(console.metrics.exposition(), media_type=CONTENT_TYPE)

    handlers: dict[tuple[str, str], Handler] = {
        ("GET", "/servers"): list_servers, ("POST", "/servers"): add_server, ("GET", "/servers/{name}"): get_server,
        ("DELETE", "/servers/{name}"): remove_server, ("POST", "/servers/{name}/restart"): restart_server,
        ("GET", "/tools"): list_tools, ("PATCH", "/tools/{exported_name}"): change_tool,
        ("GET", "/calls"): list_calls, ("GET", "/pipelines"): list_pipelines,
        ("POST", "/pipelines/{name}/run"): run, ("GET", "/metrics"): metrics,
    }
    status = {(op.method, op.path): op.status for op in OPERATIONS}
    routes: dict[str, list[str]] = {}
    for op in OPERATIONS:
        routes.setdefault(op.path, []).append(op.method)

    def endpoint_for(path: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            key = ("GET" if request.method == "HEAD" else request.method, path)
            try:
                answer = await handlers[key](request)
            except ConsoleError as exc:
                return error_response(exc.status, exc.error, exc.message)
            return answer if isinstance(answer, Response) else JSONResponse(answer, status_code=status[key])

        return endpoint

    async def openapi_json(_request: Request) -> JSONResponse:
        return JSONResponse(openapi(console.version))

    return [*(Route(path, endpoint_for(path), methods=methods) for path, methods in routes.items()),
            Route("/openapi.json", openapi_json, methods=["GET"])]


def openapi(version: str) -> dict[str, Any]:
    """The API's OpenAPI 3.1 description, from the same table the routes are made from."""
    error = {"$ref": "#/components/schemas/Error"}
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": {"type": "object", "required": ["error", "message"], "properties": {
        "error": {"type": "string"}, "message": {"type": "string"}}}}
    for op in OPERATIONS:
        entry: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op), "responses": {
            str(op.status): {"description": "success", "content": {
                "text/plain" if op.path == "/metrics" else "application/json": {"schema": {}}}},
            "400": {"description": "bad input", "content": {"application/json": {"schema": error}}},
            "401": {"description": "no or wrong token", "content": {"application/json": {"schema": error}}},
            "403": {"description": "not an operator token, or refused by policy",
                    "content": {"application/json": {"schema": error}}},
            "404": {"description": "unknown server, tool or pipeline",
                    "content": {"application/json": {"schema": error}}}}}
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _path_names(op.path)]
        parameters += [{"name": name, "in": "query", "required": False, "schema": {"type": kind},
                        "description": text} for name, kind, text in op.query]
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            schemas[op.body.__name__] = op.body.model_json_schema()
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
        elif op.path.endswith("/run"):
            entry["requestBody"] = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {"openapi": "3.1.0",
            "info": {"title": "mcp-gateway operator API", "version": version},
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
            "security": [{"bearer": []}, {"apiKey": []}]}


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _operation_id(op: Operation) -> str:
    words = [part.strip("{}") for part in op.path.split("/") if part]
    return op.method.lower() + "".join(word.title().replace("_", "") for word in words)
