"""Runs a pipeline's step graph on the backend pool: each step as soon as its needs are done."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from gateway.backends.errors import BackendError
from gateway.backends.invocation import Invocation, Road
from gateway.backends.pool import BackendPool
from gateway.config import PipelineLimits
from gateway.pipelines.budget import MAX_DEPTH, Budget, nests_deeper, off_loop, size_of
from gateway.pipelines.spec import Fallback, Pipeline, PipelineError, Step
from gateway.pipelines.templates import Compiled, TemplateProblem

StepProgress = Callable[[int, int, str], Awaitable[None]]


class StepFailed(Exception):
    pass


@dataclass
class StepRun:
    status: str = "pending"  # ok | failed | fallback | skipped | cancelled | pending
    result: Any = None
    error: str | None = None
    started: float | None = None
    duration: float | None = None
    attempts: int = 0
    items: list[dict[str, Any]] | None = None
    done: anyio.Event = field(default_factory=anyio.Event)

    def view(self) -> dict[str, Any]:
        """What a step looks like to later templates: steps.<id>.result, .status, .error."""
        return {"status": self.status, "result": self.result, "error": self.error}

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.duration is not None:
            out["duration_ms"] = round(self.duration * 1000, 2)
        if self.attempts > 1:
            out["attempts"] = self.attempts
        if self.status in ("ok", "fallback"):
            out["result"] = self.result
        if self.error:
            out["error"] = self.error
        if self.items is not None:
            out["items"] = self.items
        return out


def check_inputs(pipeline: Pipeline, inputs: dict[str, Any], max_bytes: int | None = None) -> dict[str, Any]:
    """Validates inputs against the pipeline's declared inputs and fills in defaults."""
    import jsonschema  # on first use: the gateway's start does without it

    if max_bytes is not None and size_of(inputs, max_bytes) > max_bytes:
        raise PipelineError(f"pipeline '{pipeline.name}': the inputs are more than {max_bytes} bytes; "
                            f"the limit is gateway.pipelines.max_render_bytes")
    if nests_deeper(inputs, MAX_DEPTH):
        raise PipelineError(f"pipeline '{pipeline.name}': the inputs nest deeper than {MAX_DEPTH} levels")

    schema = pipeline.input_schema()
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(inputs), key=lambda e: list(e.path))
    if errors:
        problems = []
        for error in errors:
            where = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"input '{where}': {error.message}" if where else error.message)
        expected = ", ".join(f"{n} ({s['type']}{', required' if n in schema['required'] else ''})"
                             for n, s in schema["properties"].items()) or "no inputs"
        raise PipelineError(f"pipeline '{pipeline.name}': {'; '.join(problems)}. Expected: {expected}")
    filled = {name: spec.default for name, spec in pipeline.spec.inputs.items() if spec.default is not None}
    return {**filled, **inputs}


def result_text(result: dict[str, Any]) -> str:
    return "".join(block.get("text") or "" for block in result.get("content") or ()
                   if isinstance(block, dict) and block.get("type") == "text")


def result_value(result: dict[str, Any], output_schema: dict[str, Any] | None) -> Any:
    """A tool result as data: structured content, else the text parsed as JSON when it is JSON."""
    structured = result.get("structuredContent")
    if isinstance(structured, dict):
        if (output_schema or {}).get("x-fastmcp-wrap-result") and set(structured) == {"result"}:
            return structured["result"]
        return structured
    text = result_text(result)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _kept(result: dict[str, Any], output_schema: dict[str, Any] | None, limit: int) -> tuple[Any, int]:
    """A result as data, and its size. Text too big for the answer is not parsed: parsing megabytes
    of JSON is one C call that holds the GIL, and the run is about to stop anyway."""
    if not isinstance(result.get("structuredContent"), dict):
        text = result_text(result)
        if len(text) > limit:
            return text, len(text)
    value = result_value(result, output_schema)
    return value, size_of(value, limit)


class PipelineRun:
    def __init__(self, pipeline: Pipeline, inputs: dict[str, Any], pool: BackendPool,
                 progress: StepProgress | None, on_behalf: Callable[[Invocation], Invocation] | None,
                 limits: PipelineLimits) -> None:
        self.pipeline = pipeline
        self.inputs = inputs
        self.pool = pool
        self.progress = progress
        # gives a step's request the pipeline caller's sinks: backends' log messages and requests
        # (sampling, elicitation, roots) during its steps go to that client
        self.on_behalf = on_behalf or (lambda invocation: invocation)
        self.runs = {step_id: StepRun() for step_id in pipeline.steps}
        self.finished = 0
        self.failure: str | None = None
        self.limits = limits
        self.budget = Budget(limits)
        self.kept = 0  # bytes of results and errors held for the answer so far
        self.too_big = False
        self.scope: anyio.CancelScope | None = None

    def context(self, **extra: Any) -> dict[str, Any]:
        return {"inputs": self.inputs, "steps": {i: r.view() for i, r in self.runs.items()}, **extra}

    async def render(self, compiled: Compiled, context: dict[str, Any]) -> Any:
        """Renders off the event loop, within the run's budget: its deadline is the pipeline's."""
        if not compiled.dynamic:
            return compiled.fn(context)
        return await off_loop(compiled.render, context, self.budget)

    def keep(self, size: int) -> None:
        """Counts bytes the answer will hold. Past max_output_bytes the answer could never be sent,
        so the run stops, whatever on_error says, instead of holding more (a foreach of big results
        would fill the memory)."""
        self.kept += size
        if self.kept > self.limits.max_output_bytes and not self.too_big:
            self.too_big = True
            self.failure = self.too_big_message()
            if self.scope is not None:
                self.scope.cancel()

    def too_big_message(self) -> str:
        return (f"the pipeline's answer would be more than {self.limits.max_output_bytes} bytes; "
                f"the limit is gateway.pipelines.max_output_bytes")

    async def execute(self) -> dict[str, Any]:
        started = time.perf_counter()
        timeout = self.pipeline.spec.timeout
        self.budget.deadline = time.monotonic() + timeout
        try:
            with anyio.move_on_after(timeout) as deadline:
                async with anyio.create_task_group() as tg:
                    self.scope = tg.cancel_scope
                    for step in self.pipeline.steps.values():
                        tg.start_soon(self.run_step, step, tg.cancel_scope)
            if deadline.cancelled_caught:
                self.failure = f"pipeline timed out after {timeout:g}s"
            for run in self.runs.values():
                if run.status == "pending":
                    run.status = "cancelled" if run.started is not None else "not run"
                    if run.started is not None:
                        run.duration = time.perf_counter() - run.started
            return await self.report(time.perf_counter() - started)
        finally:
            self.budget.stop()  # renders left behind by a cancelled step stop at their next check

    async def report(self, duration: float) -> dict[str, Any]:
        statuses = {run.status for run in self.runs.values()}
        status = "failed" if self.failure else ("partial" if statuses & {"failed", "fallback"} else "ok")
        out: dict[str, Any] = {"pipeline": self.pipeline.name, "status": status,
                               "duration_ms": round(duration * 1000, 2)}
        if self.failure:
            out["error"] = self.failure
        out["steps"] = {step_id: self.runs[step_id].report() for step_id in self.pipeline.order}
        if self.pipeline.output is not None and not self.failure:
            try:
                out["output"] = await self.render(self.pipeline.output, self.context())
            except TemplateProblem as exc:
                out["status"] = "partial"
                out["output_error"] = str(exc)
        limit = self.limits.max_output_bytes
        if self.too_big or await off_loop(size_of, out, limit) > limit:
            # what the client still learns: which steps ran and how they ended
            out = {"pipeline": out["pipeline"], "status": "failed", "duration_ms": out["duration_ms"],
                   "error": self.too_big_message(),
                   "steps": {i: {"status": self.runs[i].status} for i in self.pipeline.order}}
        return out

    async def run_step(self, step: Step, pipeline_scope: anyio.CancelScope) -> None:
        run = self.runs[step.id]
        for need in step.needs:
            await self.runs[need].done.wait()
        run.started = time.perf_counter()
        try:
            blocked = [n for n in sorted(step.needs) if self.runs[n].status not in ("ok", "fallback")]
            if blocked:
                run.status = "skipped"
                run.error = f"needs '{blocked[0]}', which is {self.runs[blocked[0]].status}"
            elif not (await self.render(step.when, self.context()) if step.when else step.spec.when is not False):
                run.status = "skipped"
                run.error = "condition 'when' is false"
            else:
                await self.attempt(step, run)
        except (StepFailed, TemplateProblem) as exc:
            self.fail_step(step, run, str(exc), pipeline_scope)
        finally:
            run.duration = time.perf_counter() - run.started
            if run.status != "pending":
                run.done.set()
                self.finished += 1
                if self.progress is not None:
                    # shielded: a failing step cancels the pipeline, and its own report still goes out
                    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                        await self.progress(self.finished, len(self.runs), f"step '{step.id}' {run.status}")

    def fail_step(self, step: Step, run: StepRun, error: str, pipeline_scope: anyio.CancelScope) -> None:
        run.error = error
        self.keep(len(error))
        policy = step.spec.on_error
        if isinstance(policy, Fallback):
            run.status, run.result = "fallback", policy.fallback
        else:
            run.status = "failed"
            if policy == "fail" and not self.too_big:
                self.failure = f"step '{step.id}' failed: {error}"
                pipeline_scope.cancel()

    async def attempt(self, step: Step, run: StepRun) -> None:
        if step.foreach is None:
            run.result = await self.call_with_retries(step, run, await self.render(step.args, self.context()))
            run.status = "ok"
            return
        items = await self.render(step.foreach, self.context())
        if not isinstance(items, list):
            raise StepFailed(f"'foreach' must give a list, got {type(items).__name__}")
        if len(items) > self.limits.max_foreach_items:
            raise StepFailed(f"'foreach' gives {len(items)} items; the limit is gateway.pipelines.max_foreach_items "
                             f"({self.limits.max_foreach_items})")
        limiter = anyio.CapacityLimiter(step.spec.concurrency)
        results: list[dict[str, Any]] = [{} for _ in items]

        async def one(index: int, item: Any) -> None:
            async with limiter:
                try:
                    args = await self.render(step.args, self.context(**{step.spec.as_: item, "index": index}))
                    results[index] = {"status": "ok", "result": await self.call_with_retries(step, run, args)}
                except (StepFailed, TemplateProblem) as exc:
                    results[index] = {"status": "failed", "error": str(exc)}
                    self.keep(len(str(exc)))

        async with anyio.create_task_group() as tg:
            for index, item in enumerate(items):
                tg.start_soon(one, index, item)
        run.items = [{"status": r["status"], **({"error": r["error"]} if "error" in r else {})} for r in results]
        run.result = [r.get("result") for r in results]
        failed = [i for i, r in enumerate(results) if r["status"] == "failed"]
        if failed:
            raise StepFailed(f"{len(failed)} of {len(items)} items failed; first (item {failed[0]}): "
                             f"{results[failed[0]]['error']}")
        run.status = "ok"

    async def call_with_retries(self, step: Step, run: StepRun, args: Any) -> Any:
        spec = step.spec
        if not isinstance(args, dict):
            raise StepFailed(f"'args' must give an object, got {type(args).__name__}")
        delay = spec.retry_delay
        for attempt in range(spec.retries + 1):
            run.attempts += 1
            try:
                result = await self.pool.invoke(self.on_behalf(Invocation(
                    Road.pipeline, spec.server, "tools/call", {"name": spec.tool, "arguments": args},
                    timeout=spec.timeout)))
                if not result.get("isError"):
                    schema = self.pool.get(spec.server).catalog.tool(spec.tool).tool.output_schema
                    # off the loop: the result may be megabytes of JSON text to parse and measure
                    value, size = await off_loop(_kept, result, schema, self.limits.max_output_bytes)
                    self.keep(size)
                    return value
                error = result_text(result) or "the tool reported an error"
            except BackendError as exc:
                error = str(exc)
            if attempt < spec.retries:
                await anyio.sleep(delay)
                delay *= 2
        raise StepFailed(error + (f" (after {spec.retries + 1} attempts)" if spec.retries else ""))


async def run_pipeline(pipeline: Pipeline, inputs: dict[str, Any], pool: BackendPool,
                       progress: StepProgress | None = None,
                       on_behalf: Callable[[Invocation], Invocation] | None = None) -> dict[str, Any]:
    """Checks inputs (raising PipelineError before anything runs), then runs every step; each
    step is a request through the pool's one entry."""
    limits = pool.settings.pipelines
    checked = await off_loop(check_inputs, pipeline, inputs, limits.max_render_bytes)
    return await PipelineRun(pipeline, checked, pool, progress, on_behalf, limits).execute()
