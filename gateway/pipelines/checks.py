"""Checks a pipeline against running backends: servers, tools, and args against input schemas."""

from __future__ import annotations

from gateway.backends.backend import State
from gateway.backends.errors import BackendError
from gateway.backends.pool import BackendPool
from gateway.pipelines.spec import Pipeline


def check_against_pool(pipeline: Pipeline, pool: BackendPool) -> list[str]:
    # on first use: the gateway's start (the console imports this module) does without jsonschema
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    problems: list[str] = []
    where = f"{pipeline.source}: step"
    for step in pipeline.steps.values():
        spec = step.spec
        try:
            backend = pool.get(spec.server)
        except BackendError as exc:
            problems.append(f"{where} '{step.id}', field 'server': {exc}")
            continue
        if backend.state is not State.ready:
            problems.append(f"{where} '{step.id}', field 'server': server '{spec.server}' could not be "
                            f"started to check it: {backend.last_error}")
            continue
        try:
            entry = backend.catalog.tool(spec.tool)
        except BackendError as exc:
            problems.append(f"{where} '{step.id}', field 'tool': {exc}")
            continue
        if reason := pool.tool_rules.disabled_by(spec.server, spec.tool):
            problems.append(f"{where} '{step.id}', field 'tool': tool '{spec.tool}' of server '{spec.server}' is "
                            f"disabled: {reason}")
        schema = entry.tool.input_schema or {}
        properties = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in spec.args:
                problems.append(f"{where} '{step.id}', field 'args': missing required argument '{name}' "
                                f"of tool '{spec.tool}'")
        for name, value in spec.args.items():
            if name not in properties:
                if schema.get("additionalProperties") is False:
                    problems.append(f"{where} '{step.id}', field 'args.{name}': tool '{spec.tool}' has no "
                                    f"argument '{name}' (it takes: {', '.join(properties) or 'none'})")
                continue
            literal = not (isinstance(value, str) and ("{{" in value or "{%" in value))
            if literal and isinstance(value, (str, int, float, bool, type(None))) and entry.validator is not None:
                try:  # within the whole schema, where the property's references point
                    error = best_match(entry.validator.evolve(schema=properties[name]).iter_errors(value))
                except Unresolvable:  # another document: left to the backend, as for a call
                    continue
                if error is not None:
                    problems.append(f"{where} '{step.id}', field 'args.{name}': {error.message}")
    return problems
