"""The control tools an LLM calls. Thin: check input, call the pool, shape the answer."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Annotated, Any

import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools import Tool, ToolResult
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from gateway.backends.backend import Backend, State
from gateway.backends.catalog import describe_params
from gateway.backends.errors import BackendError
from gateway.backends.invocation import Invocation, Road
from gateway.backends.pool import BackendPool
from gateway.backends.tool_rules import ToolRules
from gateway.store import Store
from gateway.profiles import View
from gateway.policy import Redactor, redact_url
from gateway.provider import run_backend_tool
from gateway.registration import Registrar, registration_entry
from gateway.sandbox import shown_command

if TYPE_CHECKING:
    from gateway.exposure import Offer

CONTROL_TOOLS = ("register_server", "remove_server", "list_servers", "call_backend", "route_pipeline")


def server_summary(backend: Backend, exported: dict[tuple[str, str], str], redact: Redactor, rules: ToolRules,
                   *, operator: bool = False, view: View | None = None) -> dict[str, Any]:
    """What list_servers shows of a backend: its offered tools (those of the caller's profile); an
    operator's view shows the disabled ones too, and why. Env and header values are never included."""
    spec = backend.spec
    state = backend.refresh_state()
    info: dict[str, Any] = {
        "name": backend.name,
        "transport": spec.kind,
        "status": state.value,
        "protocol_version": backend.protocol_version,
        "description": redact(spec.description) if spec.description else None,
        "tool_count": 0,
        "tools": [],
        "timeout_seconds": backend.call_timeout,
        "last_error": redact(backend.last_error) if backend.last_error else None,
        "registered_at_runtime": backend.runtime,
    }
    for name in sorted(backend.catalog.tools):
        reason = rules.disabled_by(backend.name, name)
        shown_as = exported.get((backend.name, name))
        if view is not None and not view.offers_tool(backend.name, shown_as or name):
            continue
        if reason is None or operator:
            info["tools"].append({"name": name, "exported_as": shown_as,
                                  **({"disabled_by": reason} if operator else {})})
    info["tool_count"] = len(info["tools"])
    if state in (State.down, State.failed):
        info["consecutive_failures"] = backend.failures
        info["next_retry_in_seconds"] = round(max(0.0, backend.retry_at - time.monotonic()), 1)
    if spec.command:
        command, in_sandbox = shown_command(spec)
        info["command"] = os.path.basename(command)
        if in_sandbox:
            info["sandbox"] = "bwrap"
        info["env_keys"] = sorted(spec.env)
    else:
        info["url"] = redact(redact_url(spec.url or ""))
        info["header_keys"] = sorted(spec.http_headers())
    catalog = backend.catalog
    if catalog.duplicates:
        info["duplicate_tools"] = (f"listed more than once, the first of each is used: "
                                   f"{', '.join(sorted(set(catalog.duplicates)))}")
    if catalog.resources or catalog.templates:
        info["resource_count"] = len(catalog.resources) + len(catalog.templates)
    if catalog.prompts:
        info["prompt_count"] = len(catalog.prompts)
    return info


def servers_report(pool: BackendPool, redact: Redactor, state: Store | None, *, operator: bool = False,
                   view: View | None = None) -> dict[str, Any]:
    """list_servers' answer, for the caller's profile; an operator's (GET /servers) also lists disabled
    tools, and why."""
    exported = {key: name for name, key in pool.tool_index.items()}  # (server, tool) -> exported name
    view = None if view is None or view.whole else view
    result: dict[str, Any] = {"servers": [
        server_summary(b, exported, redact, pool.tool_rules, operator=operator, view=view)
        for b in pool.backends() if view is None or view.offers_server(b.name)]}
    if view is not None:
        result["profile"] = view.name
    elif pool.collisions:
        result["name_collisions"] = pool.collisions
    if state is not None and state.problem:
        result["state_file_problem"] = redact(state.problem)
    if state is not None and state.degraded:
        result["store"] = {"status": "degraded", "problem": redact(state.degraded)}
    return result


def parse_object(value: dict[str, Any] | str | None, what: str) -> dict[str, Any]:
    """A JSON object given as an object or as JSON text (LLMs send both)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ToolError(f"{what} is not valid JSON ({exc.msg} at position {exc.pos}). "
                            f'Pass a JSON object such as {{"a": 1}}.') from None
        except RecursionError:
            raise ToolError(f"{what} is nested too deeply to parse") from None
    if not isinstance(value, dict):
        raise ToolError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


class CallBackendArgs(BaseModel):
    """`call_backend`'s arguments: its input schema, and what the fast path validates."""

    model_config = ConfigDict(extra="forbid")

    server: str = Field(description="Server name, from list_servers")
    tool: str = Field(description="Tool name on that server (its own name, without the server prefix)")
    params: dict[str, Any] | str | None = Field(
        None, description="The tool's arguments as a JSON object (or a JSON string of one)")
    timeout: float | None = Field(None, gt=0, le=3600, description=(
        "Seconds to wait before giving up; defaults to the server's timeout (10 s unless configured)"))


class CallBackendTool(Tool):
    """`call_backend` for FastMCP's own run path; requests to it normally go through gateway.fastpath."""

    _pool: BackendPool = PrivateAttr()

    @classmethod
    def create(cls, pool: BackendPool) -> CallBackendTool:
        schema = CallBackendArgs.model_json_schema()
        schema.pop("title", None)
        for prop in schema["properties"].values():
            prop.pop("title", None)
        tool = cls(name="call_backend", parameters=schema, output_schema=None,
                   annotations=mcp_types.ToolAnnotations(title="Call a tool on a server"),
                   description="Call one tool on one server behind the gateway and return its result unchanged.")
        tool._pool = pool
        return tool

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        try:
            args = CallBackendArgs.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ToolError(f"invalid arguments for call_backend: {problems}") from None
        return await run_backend_tool(self._pool, Invocation(
            Road.call_backend, args.server, "tools/call",
            {"name": args.tool, "arguments": parse_object(args.params, "params")}, timeout=args.timeout))


async def save_profiles(state: Store | None) -> str | None:
    """Saves a profile's servers; a warning when that could not be done."""
    if state is None:
        return None
    try:
        await state.save()
    except OSError as exc:
        return f"the profile's servers could not be saved in {state.where} ({exc.strerror or exc})"
    return None


async def _notify_changed(ctx: Context) -> None:
    # On the call's own stream: a 2026-07-28 caller without a listen stream hears of it only so
    # (every other client is told by the gateway when the pool changes).
    for note in (mcp_types.ToolListChangedNotification(), mcp_types.ResourceListChangedNotification(),
                 mcp_types.PromptListChangedNotification()):
        await ctx.send_notification(note)


def add_control_tools(mcp: FastMCP, pool: BackendPool, registrar: Registrar, state: Store | None,
                      offer: Offer) -> None:
    redact = registrar.redact
    catalog = registrar.policy.describe()
    # Descriptions are given, not docstrings: FastMCP parses a tool function's docstring with
    # griffe, whose import alone costs the gateway's start 20 ms and 2 MB.
    @mcp.tool(annotations={"title": "Register an MCP server", "destructiveHint": False}, description=(
        "Connect a new MCP server to the gateway and make its tools callable.\n\n"
        "Register from a template of the operator's catalog: register_server(name, template, params, env), "
        "where params fills the template's parameters and env sets only the names it lists. "
        + (f"Templates:\n{catalog}\n" if catalog else "The catalog is empty. ")
        + "Or give the url of a remote server the gateway allows. Returns the server's tools with their "
        "descriptions and parameters; call them with call_backend(server=name, ...) or as <name>__<tool>."))
    async def register_server(
        name: Annotated[str, Field(description="Short unique name, letters/digits/_/-, e.g. 'github'. "
                                               "Its tools become <name>__<tool>.")],
        ctx: Context,
        template: Annotated[str | None, Field(description="Name of a catalog template (listed above)")] = None,
        params: Annotated[dict[str, Any] | str | None, Field(description=(
            "Values for the template's parameters, as a JSON object"))] = None,
        env: Annotated[dict[str, str] | None, Field(description=(
            "Environment values for the names the template accepts"))] = None,
        url: Annotated[str | None, Field(description="URL of a remote server (streamable HTTP, or "
                                                     "SSE when it ends in /sse), instead of a template")] = None,
        transport: Annotated[str | None, Field(description="for url: streamable-http or sse; "
                                                           "inferred when omitted")] = None,
        headers: Annotated[dict[str, str] | None, Field(description="HTTP headers for url")] = None,
        bearer_token: Annotated[str | None, Field(description="Sent to url as a bearer token")] = None,
        api_key: Annotated[str | None, Field(description="Sent to url as the X-API-Key header")] = None,
        description: Annotated[str | None, Field(description="What a url server is for")] = None,
        timeout: Annotated[float | None, Field(gt=0, description="Per-call timeout in seconds "
                                                                 "(default 10)")] = None,
        command: Annotated[str | None, Field(description=(
            "Only when the operator allows any command: executable of a stdio server"))] = None,
        args: Annotated[list[str] | None, Field(description="Only with command: its arguments")] = None,
        cwd: Annotated[str | None, Field(description="Only with command: its working directory")] = None,
    ) -> dict[str, Any]:
        try:
            entry = registration_entry(name, {
                "template": template, "params": None if params is None else parse_object(params, "params"),
                "env": env, "url": url, "transport": transport, "headers": headers, "bearer_token": bearer_token,
                "api_key": api_key, "description": description, "timeout": timeout, "command": command,
                "args": args, "cwd": cwd})
        except BackendError as exc:
            raise ToolError(str(exc)) from None
        try:
            backend = await registrar.register(name, entry)
        except BackendError as exc:
            raise ToolError(str(exc)) from None
        warning = await save_profiles(state) if offer.profiles.registered(offer.view(ctx).name, name) else None
        await _notify_changed(ctx)
        tools = backend.catalog.tools
        return {
            **({"warning": warning} if warning else {}),
            "registered": name,
            "status": backend.state.value,
            "tools": [{"name": t.tool.name, "description": t.tool.description,
                       "params": describe_params(t.tool.input_schema)} for t in tools.values()],
        }

    @mcp.tool(annotations={"title": "Remove an MCP server", "destructiveHint": True},
              description="Disconnect a server, stop its process and remove its tools from the gateway.")
    async def remove_server(
        name: Annotated[str, Field(description="Name of a registered server (see list_servers)")],
        ctx: Context,
    ) -> dict[str, Any]:
        if not offer.view(ctx).offers_server(name):
            raise ToolError(f"unknown server '{name}'; list_servers shows the servers you can use")
        try:
            warning = await registrar.remove(name)
        except BackendError as exc:
            raise ToolError(str(exc)) from None
        if offer.profiles.removed(name):
            warning = await save_profiles(state) or warning
        await _notify_changed(ctx)
        view = offer.view(ctx)
        return {"removed": name, "servers": [s for s in pool.names() if view.offers_server(s)],
                **({"warning": warning} if warning else {})}

    @mcp.tool(annotations={"title": "List MCP servers", "readOnlyHint": True}, description=(
        "List every server behind the gateway with its status (connecting, ready, failed, down), its "
        "tools, and its last error. Use it to find the server and tool names for call_backend."))
    async def list_servers(ctx: Context) -> dict[str, Any]:
        return servers_report(pool, redact, state, view=offer.view(ctx))

    mcp.add_tool(CallBackendTool.create(pool))
