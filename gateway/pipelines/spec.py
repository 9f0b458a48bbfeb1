"""What a pipeline is: the YAML/JSON schema, and its compiled, checked form."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.pipelines.budget import Budget, rendering
from gateway.pipelines.templates import Compiled, TemplateProblem, compile_value

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_]*$"
PIPELINE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"
_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean",
               "array": "array", "object": "object"}


class PipelineError(Exception):
    """A pipeline that cannot run; the text names the source, step and field."""


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "number", "integer", "boolean", "array", "object"] = "string"
    description: str | None = None
    default: Any = None
    required: bool = False
    enum: list[Any] | None = None


class Fallback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fallback: Any = Field(description="used as the step's result when it fails")


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    server: str
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None
    needs: list[str] = Field(default_factory=list, description="steps that must finish first")
    when: str | bool | None = Field(None, description="run only when this template is truthy")
    foreach: str | list[Any] | None = Field(None, description="run once per element of this list")
    as_: str = Field("item", alias="as", pattern=STEP_ID, description="name of the element in args")
    concurrency: int = Field(10, ge=1, le=100, description="foreach calls in flight at once")
    timeout: float | None = Field(None, gt=0, description="seconds per attempt")
    retries: int = Field(0, ge=0, le=10)
    retry_delay: float = Field(0.5, ge=0, le=60, description="seconds; doubles after each attempt")
    on_error: Literal["fail", "continue"] | Fallback = "fail"


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=PIPELINE_NAME)
    description: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: dict[str, StepSpec] = Field(min_length=1)
    output: Any = None
    timeout: float = Field(60.0, gt=0, le=3600)


@dataclass
class Step:
    id: str
    spec: StepSpec
    needs: frozenset[str]  # declared and inferred from templates
    args: Compiled
    when: Compiled | None
    foreach: Compiled | None


@dataclass
class Pipeline:
    spec: PipelineSpec
    steps: dict[str, Step]
    order: list[str]  # a topological order, for reporting
    output: Compiled | None
    source: str

    @property
    def name(self) -> str:
        return self.spec.name

    def input_schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for name, spec in self.spec.inputs.items():
            prop: dict[str, Any] = {"type": _JSON_TYPES[spec.type]}
            if spec.description:
                prop["description"] = spec.description
            if spec.default is not None:
                prop["default"] = spec.default
            if spec.enum is not None:
                prop["enum"] = spec.enum
            properties[name] = prop
        required = [n for n, s in self.spec.inputs.items() if s.required and s.default is None]
        return {"type": "object", "properties": properties, "required": required,
                "additionalProperties": False}


def _describe(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
    if len(loc) >= 2 and loc[0] == "steps":
        # union members add their type name to the path; drop it
        field = ".".join(p for p in loc[2:] if p not in ("str", "bool", "list[any]", "Fallback",
                                                         "literal['fail','continue']"))
        return f"step '{loc[1]}'" + (f", field '{field}'" if field else "") + f": {message}"
    return (f"field '{'.'.join(loc)}': " if loc else "") + message


def compile_pipeline(raw: Any, source: str) -> Pipeline:
    """Validates a decoded pipeline document and checks its step graph before anything runs."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{source}: a pipeline must be a mapping with name, steps, ...")
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise PipelineError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    # compiling counts against the pipeline's own timeout, as rendering does
    with rendering(Budget(deadline=time.monotonic() + spec.timeout)):
        return _compile(spec, source)


def _compile(spec: PipelineSpec, source: str) -> Pipeline:
    problems: list[str] = []
    steps: dict[str, Step] = {}
    for step_id, step in spec.steps.items():
        if not re.match(STEP_ID, step_id):
            problems.append(f"step '{step_id}': ids may hold letters, digits and '_' "
                            f"(they are used as steps.<id> in templates)")
            continue
        owner = f"step '{step_id}', "
        try:
            args = compile_value(step.args, "args", owner)
            when = compile_value(step.when, "when", owner) if isinstance(step.when, str) else None
            foreach = compile_value(step.foreach, "foreach", owner) if step.foreach is not None else None
        except TemplateProblem as exc:
            problems.append(str(exc))
            continue
        refs = [c.refs for c in (args, when, foreach) if c is not None]
        used_steps = set().union(*(r.steps for r in refs)) if refs else set()
        used_inputs = set().union(*(r.inputs for r in refs)) if refs else set()
        for name in sorted(used_inputs - set(spec.inputs)):
            problems.append(f"step '{step_id}': uses inputs.{name}, which is not declared in 'inputs'")
        for name in sorted((used_steps | set(step.needs)) - set(spec.steps)):
            problems.append(f"step '{step_id}': refers to unknown step '{name}'")
        if step_id in used_steps | set(step.needs):
            problems.append(f"step '{step_id}': depends on itself")
        steps[step_id] = Step(step_id, step, frozenset((used_steps | set(step.needs)) & set(spec.steps)),
                              args, when, foreach)
    output = None
    try:
        output = compile_value(spec.output, "output") if spec.output is not None else None
    except TemplateProblem as exc:
        problems.append(str(exc))
    if output is not None:
        for name in sorted(output.refs.steps - set(spec.steps)):
            problems.append(f"field 'output': refers to unknown step '{name}'")
    if problems:
        raise PipelineError(f"{source}: " + "; ".join(problems))
    order = _topological(steps)
    if isinstance(order, str):
        raise PipelineError(f"{source}: {order}")
    return Pipeline(spec, steps, order, output, source)


def _topological(steps: dict[str, Step]) -> list[str] | str:
    """A run order, or a message naming a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(step_id: str, path: list[str]) -> str | None:
        if state.get(step_id) == 2:
            return None
        if state.get(step_id) == 1:
            cycle = path[path.index(step_id):] + [step_id]
            return "steps form a cycle: " + " -> ".join(cycle)
        state[step_id] = 1
        for dep in sorted(steps[step_id].needs):
            problem = visit(dep, path + [step_id])
            if problem:
                return problem
        state[step_id] = 2
        order.append(step_id)
        return None

    for step_id in steps:
        problem = visit(step_id, [])
        if problem:
            return problem
    return order
