"""What checking a call's arguments against its tool's input schema costs, for real tools.

    .venv/bin/python benchmarks/schema_check.py [--calls 200]

Every relayed `tools/call` is checked against the tool's `inputSchema` before it goes to the
backend (`Catalog.check_arguments`, python-jsonschema). The bench tool's schema is one string
property; real tools' schemas are larger. This takes the 531 tools of `benchmarks/catalog/`, makes
an argument object for each from its schema, and reports what one check costs (median, p90 and max
over the tools whose object passed, µs). Where `jsonschema_rs` or `fastjsonschema` is importable
(neither is a dependency), it reports the same for them, and how many of those objects they refuse.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp_types

from gateway.backends.catalog import Catalog, ToolEntry
from gateway.backends.errors import InvalidParams

HERE = Path(__file__).resolve().parent


def sample(schema: Any, depth: int = 0) -> Any:
    """A value the schema should accept: the first enum value, each property, one array item."""
    if not isinstance(schema, dict):
        return "x"
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        return {k: sample(v, depth + 1) for k, v in (schema.get("properties") or {}).items()} if depth < 4 else {}
    if kind == "array":
        return [sample(schema.get("items") or {}, depth + 1)]
    minimum = schema.get("minimum")
    return {"integer": minimum if isinstance(minimum, int) else 1, "number": 1.5, "boolean": True,
            "null": None}.get(kind, "abc")


def per_call(check: Callable[[], Any], calls: int) -> float:
    return timeit.timeit(check, number=calls) / calls * 1e6


def summary(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    return (f"{name}: median {statistics.median(ordered):.2f} µs, p90 {ordered[int(len(ordered) * 0.9)]:.2f} µs, "
            f"max {ordered[-1]:.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="checks per tool")
    calls = parser.parse_args().calls
    others: dict[str, Callable[[dict[str, Any]], Callable[[Any], bool]]] = {}
    if importlib.util.find_spec("jsonschema_rs"):
        import jsonschema_rs
        others["jsonschema-rs"] = lambda s: jsonschema_rs.validator_for(s, validate_formats=False).is_valid
    if importlib.util.find_spec("fastjsonschema"):
        import fastjsonschema

        def fast(schema: dict[str, Any]) -> Callable[[Any], bool]:
            validate = fastjsonschema.compile(schema, use_formats=False, use_default=False)

            def is_valid(instance: Any) -> bool:
                try:
                    validate(instance)
                except fastjsonschema.JsonSchemaException:
                    return False
                return True
            return is_valid
        others["fastjsonschema"] = fast
    ours: list[float] = []
    theirs: dict[str, list[float]] = {name: [] for name in others}
    refused: dict[str, int] = dict.fromkeys(others, 0)
    skipped = 0
    for path in sorted((HERE / "catalog" / "servers").glob("*.json")):
        listing = json.loads(path.read_text())
        for tool in listing["tools"]:
            catalog = Catalog(listing["server"], {tool["name"]: ToolEntry(mcp_types.Tool.model_validate(tool))})
            arguments = sample(tool["inputSchema"])
            try:
                catalog.check_arguments(tool["name"], arguments)
            except InvalidParams:  # `sample` could not make a valid object (patterns, lengths, anyOf...)
                skipped += 1
                continue
            ours.append(per_call(lambda: catalog.check_arguments(tool["name"], arguments), calls))
            for name, build in others.items():
                is_valid = build(tool["inputSchema"])
                refused[name] += not is_valid(arguments)
                theirs[name].append(per_call(lambda: is_valid(arguments), calls))
    print(f"{len(ours)} tools of benchmarks/catalog with a valid argument object ({skipped} skipped: no valid "
          f"object made), {calls} checks per tool")
    print(summary("gateway (python-jsonschema)", ours))
    for name, times in theirs.items():
        print(summary(name, times) + f"; refuses {refused[name]} of the objects python-jsonschema accepts")


if __name__ == "__main__":
    main()
