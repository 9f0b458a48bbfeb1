"""What the console can see and do, shared by the REST API and the web UI.

Every answer is plain JSON-ready data; every refusal is a ConsoleError with the HTTP status, a short
error code and a message that names the thing and what to do. Secrets never appear: server views
come from list_servers' summary, and errors, stderr and pipeline reports pass the redactor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.audit import AuditTrail
from gateway.backends.backend import Backend
from gateway.backends.errors import BackendError, RegistrationError, UnknownServer
from gateway.backends.invocation import Caller, Invocation
from gateway.backends.pool import BackendPool
from gateway.control import save_profiles, servers_report, server_summary
from gateway.exposure import Offer
from gateway.metrics import Metrics
from gateway.names import VALID_NAME
from gateway.store import Store
from gateway.pipeline_tools import PIPELINE_PREFIX
from gateway.pipelines.checks import check_against_pool
from gateway.pipelines.engine import run_pipeline
from gateway.pipelines.loader import PipelineRegistry
from gateway.pipelines.spec import PipelineError
from gateway.policy import Redactor
from gateway.profiles import View
from gateway.registration import Registrar, registration_entry


@dataclass
class ConsoleError(Exception):
    status: int  # 400 bad input, 403 refused by policy, 404 unknown, 409 conflict, 502 backend failed
    error: str  # short code: "bad_request", "not_found", "policy", "conflict", "backend", "state_file"
    message: str

    def __str__(self) -> str:
        return self.message


_ERROR_CODES = {400: "bad_request", 403: "policy", 404: "not_found", 409: "conflict", 502: "backend"}


def refused(status: int, message: str) -> ConsoleError:
    return ConsoleError(status, _ERROR_CODES.get(status, "error"), message)


def parsed(model: type[BaseModel], body: Any, what: str) -> Any:
    """A request body checked against its model; unknown fields and wrong types are a 400 naming them."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: "
                             f"{'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}" for e in exc.errors())
        raise refused(400, f"invalid {what}: {problems}") from None


class NewServer(BaseModel):
    """POST /servers: register_server's fields. An operator's server is trusted like the config file's."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="short unique name, letters/digits/_/-")
    template: str | None = Field(None, description="a template of gateway.catalog")
    params: dict[str, Any] | None = Field(None, description="values for the template's parameters")
    env: dict[str, str] | None = Field(None, description="environment values")
    url: str | None = Field(None, description="URL of a remote server")
    transport: str | None = Field(None, description="stdio, streamable-http or sse")
    headers: dict[str, str] | None = None
    bearer_token: str | None = None
    api_key: str | None = None
    description: str | None = None
    timeout: float | None = Field(None, gt=0, le=3600)
    command: str | None = Field(None, description="executable of a stdio server")
    args: list[str] | None = None
    cwd: str | None = None


class ToolChange(BaseModel):
    """PATCH /tools/{exported_name}: each field given is set; null clears the operator's override."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, description="offer the tool or not")
    name: str | None = Field(None, description="exported name instead of <server>__<tool>")
    description: str | None = Field(None, description="description shown to clients instead of the server's")


class Console:
    def __init__(self, pool: BackendPool, registrar: Registrar, state: Store, registry: PipelineRegistry,
                 redact: Redactor, audit: AuditTrail | None, metrics: Metrics | None,
                 reserved_names: frozenset[str], offer: Offer) -> None:
        self.pool, self.registrar, self.state, self.registry = pool, registrar, state, registry
        self.offer = offer
        self.redact, self.audit, self.metrics = redact, audit, metrics
        self.reserved_names = reserved_names
        self.started = time.monotonic()
        self.version = version("mcp-gateway")

    # -- overview -----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        backends = self.pool.backends()
        rules = self.pool.tool_rules
        return {"version": self.version, "uptime_seconds": round(time.monotonic() - self.started, 1),
                "servers": len(backends), "servers_ready": sum(b.refresh_state().value == "ready" for b in backends),
                "tools": len(self.pool.tool_index),
                "tools_enabled": sum(not rules.disabled_by(*key) for key in self.pool.tool_index.values()),
                "pipelines": len(self.registry.pipelines),
                "calls_in_flight": self.metrics.calls_in_flight if self.metrics else None,
                "calls_total": self.audit.total if self.audit else None,
                "audit_lines_dropped": self.audit.dropped if self.audit else None,
                "store_problem": self.redact(self.state.degraded) if self.state.degraded else None}

    # -- servers ------------------------------------------------------------------------------

    def view(self, profile: str | None) -> View:
        """What an operator of that profile (None: of the whole gateway) sees and may change."""
        return self.offer.profiles.view(profile)

    def report(self, view: View | None = None) -> dict[str, Any]:
        """list_servers' answer: the servers, and name collisions or a state file problem if any."""
        return servers_report(self.pool, self.redact, self.state, operator=True, view=view)

    def servers(self) -> list[dict[str, Any]]:
        servers: list[dict[str, Any]] = self.report()["servers"]
        return servers

    def _backend(self, name: str, view: View | None = None) -> Backend:
        if view is not None and not view.offers_server(name):
            raise refused(404, f"unknown server '{name}' in the profile '{view.name}'")
        try:
            return self.pool.get(name)
        except UnknownServer as exc:
            raise refused(404, str(exc)) from None

    def server(self, name: str, view: View | None = None) -> dict[str, Any]:
        backend = self._backend(name, view)
        exported = {key: exported for exported, key in self.pool.tool_index.items()}
        info = server_summary(backend, exported, self.redact, self.pool.tool_rules, operator=True,
                              view=None if view is None or view.whole else view)
        info["stderr_tail"] = self.redact(backend.stderr.tail(50)) if backend.stderr is not None else None
        info["restarts"] = max(0, backend.sessions - 1)
        return info

    def templates(self) -> list[dict[str, str]]:
        """The operator's catalog: each template's name and what it starts."""
        return [{"name": name, "summary": self.redact(template.summary())}
                for name, template in sorted(self.registrar.policy.catalog.items())]

    async def add_server(self, body: Any, view: View | None = None) -> dict[str, Any]:
        fields = parsed(NewServer, body, "server").model_dump()
        name = fields.pop("name")
        try:
            entry = registration_entry(name, fields)
            if "server" in entry:
                entry["by"] = "operator"
            backend = await self.registrar.register(name, entry)
        except RegistrationError as exc:
            raise refused(exc.status, str(exc)) from None
        except BackendError as exc:
            raise refused(502, str(exc)) from None
        warning = await save_profiles(self.state) if view is not None and self.offer.profiles.registered(view.name, name) \
            else None
        return {"registered": name, "status": backend.state.value, "tools": sorted(backend.catalog.tools),
                **({"warning": warning} if warning else {})}

    async def remove_server(self, name: str, view: View | None = None) -> dict[str, Any]:
        self._backend(name, view)
        try:
            warning = await self.registrar.remove(name)
        except RegistrationError as exc:
            raise refused(exc.status, str(exc)) from None
        if self.offer.profiles.removed(name):
            warning = await save_profiles(self.state) or warning
        return {"removed": name, **({"warning": warning} if warning else {})}

    async def restart_server(self, name: str, view: View | None = None) -> dict[str, Any]:
        backend = self._backend(name, view)
        try:
            await backend.restart()
        except BackendError as exc:
            raise refused(502, self.redact(str(exc))) from None
        return self.server(name, view)

    # -- tools --------------------------------------------------------------------------------

    def _tool(self, exported: str, server: str, name: str) -> dict[str, Any]:
        rules = self.pool.tool_rules
        tool = self.pool.get(server).catalog.tools[name].tool
        override = rules.overrides.get((server, name))
        return {"exported_name": exported, "server": server, "tool": name,
                "enabled": not rules.disabled_by(server, name), "disabled_by": rules.disabled_by(server, name),
                "overrides": override.shown() if override else {},
                "description": rules.description(server, name) or tool.description or "",
                "input_schema": tool.input_schema}

    def tools(self, query: str = "", server: str | None = None, view: View | None = None) -> list[dict[str, Any]]:
        words = query.lower().split()
        found = []
        for exported, (owner, name) in sorted(self.pool.tool_index.items()):
            if server and owner != server or view is not None and not view.offers_tool(owner, exported):
                continue
            tool = self._tool(exported, owner, name)
            text = f"{exported} {name} {owner} {tool['description']}".lower()
            if all(word in text for word in words):
                found.append(tool)
        return found

    def tool(self, exported: str) -> dict[str, Any]:
        key = self.pool.tool_index.get(exported)
        if key is None:
            raise refused(404, f"unknown tool '{exported}': give the exported name GET /tools lists")
        return self._tool(exported, *key)

    async def update_tool(self, exported: str, body: Any, view: View | None = None) -> dict[str, Any]:
        change = parsed(ToolChange, body, "tool change")
        changes = {field: getattr(change, field) for field in change.model_fields_set}
        if not changes:
            raise refused(400, "nothing to change: give 'enabled', 'name' or 'description'")
        server, name = self.pool.tool_index.get(exported) or (None, None)
        if server is None or name is None or view is not None and not view.offers_tool(server, exported):
            raise refused(404, f"unknown tool '{exported}': give the exported name GET /tools lists")
        if (new_name := changes.get("name")) is not None:
            self._check_free(new_name, (server, name))
        if self.state.degraded:
            raise ConsoleError(503, "store_unavailable", f"the change was not made: {self.state.degraded}")
        rules = self.pool.tool_rules
        before = rules.overrides.get((server, name))
        rules.override(server, name, changes)
        try:
            await self.state.save()
        except OSError as exc:
            rules.overrides.pop((server, name), None)
            if before:
                rules.overrides[(server, name)] = before
            raise ConsoleError(500, "state_file", f"the change was not made: {self.state.where} "
                                                  f"could not be written ({exc.strerror or exc})") from None
        self.pool.tools_changed()
        now = next(e for e, key in self.pool.tool_index.items() if key == (server, name))
        return self.tool(now)

    def _check_free(self, wanted: str, key: tuple[str, str]) -> None:
        if not VALID_NAME.match(wanted):
            raise refused(400, f"tool name {wanted!r} may only hold letters, digits, '_' and '-' (1 to 64 of them)")
        owner = self.pool.tool_index.get(wanted)
        if wanted in self.reserved_names or wanted.startswith(PIPELINE_PREFIX) or \
                (owner is not None and owner != key):
            taken_by = f"tool '{owner[1]}' of server '{owner[0]}'" if owner else "the gateway's own tools"
            raise refused(409, f"the name '{wanted}' is taken by {taken_by}; choose another")

    # -- calls and pipelines ------------------------------------------------------------------

    def calls(self, limit: int = 100, server: str | None = None, status: str | None = None,
              view: View | None = None) -> list[dict[str, Any]]:
        if self.audit is None:
            raise refused(404, "the audit trail is off (gateway.audit.enabled is false)")
        return self.audit.recent(limit, server, status, view.name if view is not None else None)

    def pipelines(self, view: View | None = None) -> list[dict[str, Any]]:
        self.registry.refresh()
        listed = []
        for name, pipeline in sorted(self.registry.pipelines.items()):
            if view is not None and not self.offer.offers_pipeline(view, name):
                continue
            problems = [self.redact(p) for p in check_against_pool(pipeline, self.pool)]
            listed.append({"name": name, "description": pipeline.spec.description, "valid": not problems,
                           "problems": problems, "inputs": pipeline.input_schema(), "source": str(pipeline.source)})
        for source, error in sorted(self.registry.errors.items()):
            listed.append({"name": source, "description": None, "valid": False, "problems": [self.redact(error)],
                           "inputs": None, "source": source})
        return listed

    async def run_pipeline(self, name: str, inputs: Any, caller: Caller, view: View | None = None) -> dict[str, Any]:
        self.registry.refresh()
        pipeline = self.registry.pipelines.get(name)
        if pipeline is None or view is not None and not self.offer.offers_pipeline(view, name):
            broken = self.registry.error_for(name)
            raise refused(400 if broken else 404, f"pipeline '{name}' is invalid and was not loaded: {broken}"
                          if broken else f"unknown pipeline '{name}'. Known: {', '.join(sorted(self.registry.pipelines)) or 'none'}")
        if not isinstance(inputs, dict):
            raise refused(400, "the body must be a JSON object of the pipeline's inputs")

        def on_behalf(invocation: Invocation) -> Invocation:
            invocation.caller = caller
            return invocation

        try:
            report = await run_pipeline(pipeline, inputs, self.pool, on_behalf=on_behalf)
        except PipelineError as exc:
            raise refused(400, self.redact(str(exc))) from None
        if self.metrics is not None:
            self.metrics.pipeline_finished(report)
        shown: dict[str, Any] = self.redact.value(report)
        return shown
