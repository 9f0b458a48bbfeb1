"""Pipelines as MCP tools: `route_pipeline` and one `pipeline__<name>` tool per pipeline file.

Served by a Provider so that both follow the pipeline directory: the tool list and
`route_pipeline`'s description (which lists the pipelines) change when files change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from typing import Annotated, Any

import mcp_types
from fastmcp.exceptions import ToolError
from fastmcp.server.providers import Provider
from fastmcp.tools import Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec
from pydantic import Field, PrivateAttr

from gateway.backends.pool import BackendPool
from gateway.client_sinks import current_sinks
from gateway.control import parse_object
from gateway.pipelines.budget import MAX_DEPTH, nests_deeper, off_loop, size_of
from gateway.pipelines.engine import run_pipeline
from gateway.pipelines.loader import PipelineRegistry, parse_document
from gateway.pipelines.spec import Pipeline, PipelineError, compile_pipeline
from gateway.policy import Redactor

PIPELINE_PREFIX = "pipeline__"

ROUTE_DESCRIPTION = """\
Run a multi-step workflow of backend tool calls in one request; independent steps run in parallel.
scenario names a pipeline below; scenario="custom" runs the pipeline you give in `pipeline`.
The answer has the overall status (ok, partial, failed), each step's status, result or error, and
the shaped output.

Pipelines:
{pipelines}

A custom pipeline (JSON object, or YAML/JSON text):
  {{"name": "x", "inputs": {{"city": {{"type": "string", "required": true}}}},
   "steps": {{"a": {{"server": "srv", "tool": "t", "args": {{"q": "{{{{ inputs.city }}}}"}}}},
             "b": {{"server": "srv", "tool": "u", "args": {{"v": "{{{{ steps.a.result }}}}"}},
                   "when": "{{{{ steps.a.result }}}}", "timeout": 5, "retries": 1,
                   "on_error": "continue"}}}},
   "output": {{"answer": "{{{{ steps.b.result }}}}"}}}}
Step fields: server, tool, args, needs, when, foreach (+ as, concurrency), timeout, retries,
retry_delay, on_error (fail | continue | {{"fallback": value}}). Templates are Jinja2 expressions
over inputs and steps.<id>.result/.status/.error."""


def _finish(report: dict[str, Any], redact: Redactor) -> tuple[dict[str, Any], str]:
    # The report is the gateway's own answer: errors anywhere in it (the pipeline's, a step's, a
    # foreach item's, or one a template put into the output) may quote a backend's stderr.
    report = redact.value(report)
    return report, json.dumps(report, default=str)


ReportListener = Callable[[dict[str, Any]], None]


async def _run(pipeline: Pipeline, inputs: dict[str, Any], pool: BackendPool, redact: Redactor,
               on_report: ReportListener) -> ToolResult:
    sinks = current_sinks()
    try:
        report = await run_pipeline(pipeline, inputs, pool, sinks.progress if sinks else None,
                                    partial(sinks.attach, pipeline_step=True) if sinks else None)
    except PipelineError as exc:
        raise ToolError(redact(str(exc))) from None
    on_report(report)
    report, text = await off_loop(_finish, report, redact)  # up to max_output_bytes of walking
    return ToolResult(content=[mcp_types.TextContent(type="text", text=text)],
                      structured_content=report, is_error=report["status"] == "failed")


def _compile_custom(pipeline: dict[str, Any] | str, max_bytes: int) -> Pipeline:
    """A client's pipeline definition, parsed and compiled (in a worker thread: this is the costly part)."""
    where = "custom pipeline"
    too_big = (f"{where}: the definition is more than {max_bytes} bytes; "
               f"the limit is gateway.pipelines.max_render_bytes")
    if isinstance(pipeline, str):
        if len(pipeline) > max_bytes:
            raise PipelineError(too_big)
        try:
            raw = parse_document(pipeline, where)
        except RecursionError:
            raise PipelineError(f"{where}: nests deeper than {MAX_DEPTH} levels") from None
    else:
        raw = pipeline
    # YAML aliases can make a small text into a huge tree: measured as the tree it is
    if size_of(raw, max_bytes) > max_bytes:
        raise PipelineError(too_big)
    if nests_deeper(raw, MAX_DEPTH):
        raise PipelineError(f"{where}: nests deeper than {MAX_DEPTH} levels")
    if isinstance(raw, dict):
        raw = {"name": "custom", **raw}
    return compile_pipeline(raw, where)


class PipelineTool(Tool):
    _pipeline: Pipeline = PrivateAttr()
    _pool: BackendPool = PrivateAttr()
    _redact: Redactor = PrivateAttr()
    _on_report: ReportListener = PrivateAttr()

    @classmethod
    def create(cls, pipeline: Pipeline, pool: BackendPool, redact: Redactor, on_report: ReportListener) -> PipelineTool:
        tool = cls(name=f"{PIPELINE_PREFIX}{pipeline.name}",
                   description=f"Pipeline: {pipeline.spec.description or pipeline.name}",
                   parameters=pipeline.input_schema())
        tool._pipeline, tool._pool, tool._redact, tool._on_report = pipeline, pool, redact, on_report
        return tool

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return await _run(self._pipeline, arguments, self._pool, self._redact, self._on_report)


def _route_tool(registry: PipelineRegistry, pool: BackendPool, redact: Redactor, on_report: ReportListener) -> Tool:
    async def route_pipeline(
        scenario: Annotated[str, Field(description="A pipeline name from the list, or 'custom'")],
        inputs: Annotated[dict[str, Any] | str | None, Field(
            description="The pipeline's inputs as a JSON object (or a JSON string of one)")] = None,
        pipeline: Annotated[dict[str, Any] | str | None, Field(
            description="With scenario='custom': the pipeline definition")] = None,
    ) -> ToolResult:
        registry.refresh()
        max_bytes = pool.settings.pipelines.max_render_bytes
        if isinstance(inputs, str) and len(inputs) > max_bytes:
            raise ToolError(f"inputs are more than {max_bytes} bytes; the limit is gateway.pipelines.max_render_bytes")
        values = parse_object(inputs, "inputs")
        if scenario == "custom":
            if pipeline is None:
                raise ToolError("scenario 'custom' needs the pipeline definition in 'pipeline'")
            try:
                chosen = await off_loop(_compile_custom, pipeline, max_bytes)
            except PipelineError as exc:
                raise ToolError(str(exc)) from None
        else:
            chosen = registry.pipelines.get(scenario)
            if chosen is None:
                broken = registry.error_for(scenario)
                if broken:
                    raise ToolError(f"pipeline '{scenario}' is invalid and was not loaded: {broken}")
                known = ", ".join(sorted(registry.pipelines)) or "none"
                raise ToolError(f"unknown pipeline '{scenario}'. Available: {known}; or use "
                                f"scenario='custom' with a pipeline definition")
        return await _run(chosen, values, pool, redact, on_report)

    return Tool.from_function(route_pipeline, description=route_description(registry), output_schema=None,
                              annotations={"title": "Run a pipeline"})


def route_description(registry: PipelineRegistry, offered: Callable[[str], bool] | None = None) -> str:
    """route_pipeline's description, listing the pipelines (those `offered`, for a profile)."""
    lines = [f"- {p.name}: {p.spec.description or '(no description)'} "
             f"(inputs: {', '.join(p.spec.inputs) or 'none'})" for p in registry.pipelines.values()
             if offered is None or offered(p.name)]
    if offered is None:
        lines += [f"- (invalid, not loaded) {name}" for name in registry.errors]
    return ROUTE_DESCRIPTION.format(pipelines="\n".join(lines) or "- (none yet)")


class PipelineProvider(Provider):
    def __init__(self, registry: PipelineRegistry, pool: BackendPool, redact: Redactor,
                 on_report: ReportListener = lambda _report: None) -> None:
        super().__init__()
        self._on_report = on_report
        self._registry = registry
        self._pool = pool
        self._redact = redact
        self._tools: dict[str, Tool] = {}
        registry.subscribe(self._rebuild)
        self._rebuild()

    def _rebuild(self) -> None:
        tools: dict[str, Tool] = {"route_pipeline": _route_tool(self._registry, self._pool, self._redact,
                                                                self._on_report)}
        for pipeline in self._registry.pipelines.values():
            tool = PipelineTool.create(pipeline, self._pool, self._redact, self._on_report)
            tools[tool.name] = tool
        self._tools = tools

    async def _list_tools(self) -> Sequence[Tool]:
        return list(self._tools.values())

    async def _get_tool(self, name: str, version: VersionSpec | None = None) -> Tool | None:
        return self._tools.get(name)
