"""Passing data between steps: Jinja2 expressions in a sandbox, compiled once per pipeline.

A string that is exactly one `{{ expression }}` keeps the expression's type (a list stays a list, a
number a number); any other string with `{{ }}` renders to text. The sandbox is immutable, undefined
names are errors and `{% %}` statements are not allowed, so templates can read data but never run
code or change anything; sandbox.py bounds what each one may cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.pipelines.budget import Budget, Refused, Stopped, current, rendering, size_of

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)

# One expression compiles to Python code in one C call that holds the GIL; these keep that call to
# a few milliseconds (Jinja's optimizer is also cubic in nesting depth).
MAX_EXPRESSION_NODES = 400
MAX_EXPRESSION_DEPTH = 24


class TemplateProblem(Exception):
    """A template that cannot be compiled or evaluated; the text says which and why."""


@dataclass
class Refs:
    steps: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)


@dataclass
class Compiled:
    """A JSON-like value in which some strings are templates."""

    fn: Callable[[dict[str, Any]], Any]
    refs: Refs
    dynamic: bool  # False when the value holds no template at all

    def render(self, context: dict[str, Any], budget: Budget | None = None) -> Any:
        """Renders in the calling thread within `budget` (the default limits when None). All the
        templates inside count against one max_render_bytes."""
        if not self.dynamic:
            return self.fn(context)
        with rendering(budget):
            return self.fn(context)


def _collect(tree: Any, refs: Refs) -> None:
    from jinja2 import nodes

    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not isinstance(target, nodes.Name):
            continue
        key = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if not isinstance(key, str):
            continue
        if target.name == "steps":
            refs.steps.add(key)
        elif target.name == "inputs":
            refs.inputs.add(key)


def _check_shape(expression: Any, where: str) -> None:
    count, stack = 0, [(expression, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_EXPRESSION_NODES:
            raise TemplateProblem(f"{where}: an expression has more than {MAX_EXPRESSION_NODES} parts; "
                                  f"split it over several fields or steps")
        if depth > MAX_EXPRESSION_DEPTH:
            raise TemplateProblem(f"{where}: an expression nests deeper than {MAX_EXPRESSION_DEPTH} levels")
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


def _compile_expression(expression: Any, where: str) -> Callable[[dict[str, Any]], Any]:
    from jinja2 import nodes
    from jinja2.environment import TemplateExpression

    from gateway.pipelines.sandbox import environment

    _check_shape(expression, where)
    current().tick()  # compiling counts against the same deadline as rendering
    body = [nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)]
    return TemplateExpression(environment().from_string(nodes.Template(body, lineno=1)), undefined_to_none=False)


def _compile_string(text: str, where: str) -> Compiled:
    from jinja2 import TemplateSyntaxError, nodes

    from gateway.pipelines.sandbox import environment

    refs = Refs()
    try:
        tree = environment().parse(text)
        pieces: list[Any] = []
        for node in tree.body:
            if not isinstance(node, nodes.Output):
                raise TemplateProblem(f"{where}: templates hold {{{{ expressions }}}} only; "
                                      f"statements such as {{% ... %}} are not allowed")
            pieces.extend(node.nodes)
        _collect(tree, refs)
        expressions = [p for p in pieces if not isinstance(p, nodes.TemplateData)]
        parts = [p.data if isinstance(p, nodes.TemplateData) else _compile_expression(p, where) for p in pieces]
    except TemplateProblem:
        raise
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{where}: template syntax error: {exc.message}") from None
    except RecursionError:
        raise TemplateProblem(f"{where}: the template nests too deeply") from None
    except (Refused, Stopped) as exc:
        raise TemplateProblem(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - client text: whatever Jinja or Python's compile() says
        raise TemplateProblem(f"{where}: template cannot be compiled: {exc}") from None

    if _WHOLE.match(text) and len(expressions) == 1:
        expression = parts[pieces.index(expressions[0])]

        def render(context: dict[str, Any]) -> Any:
            return _evaluate(lambda: _whole(expression(**context)), where)
    else:
        def render(context: dict[str, Any]) -> Any:
            return _evaluate(lambda: _text(parts, context), where)
    return Compiled(render, refs, True)


def _whole(value: Any) -> Any:
    from jinja2 import Undefined

    if isinstance(value, Undefined):  # an expression hands back undefined instead of raising
        raise TemplateProblem(value._undefined_message)
    state = current()
    state.room(size_of(value, state.limit))  # before copying: a big step result is refused unwalked
    value = _plain(value, state.limit)
    state.add(size_of(value, state.limit))
    return value


def _text(parts: list[Any], context: dict[str, Any]) -> str:
    state = current()
    out = []
    for part in parts:
        if not isinstance(part, str):
            value = part(**context)
            if not isinstance(value, str):
                # a list holding one big string many times is small in memory and huge as text
                state.room(size_of(value, state.limit))
            part = str(value)
        state.add(len(part))
        out.append(part)
    return "".join(out)


def _plain(value: Any, limit: int) -> Any:
    """The value as JSON-like data: lazy results (map, select, range, dict views) become lists."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, Mapping):
        items = {k: _plain(v, limit) for k, v in value.items()}
        return value if isinstance(value, dict) and all(items[k] is v for k, v in value.items()) else items
    if isinstance(value, list):
        items = [_plain(v, limit) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    if hasattr(value, "__iter__") and not isinstance(value, bytes):
        items = []
        for item in value:
            items.append(_plain(item, limit))
            if len(items) > limit:  # every item is at least a byte of JSON
                raise Refused(f"the rendered value would be more than {limit} bytes; "
                              f"the limit is gateway.pipelines.max_render_bytes")
        return items
    return str(value)


def _evaluate(fn: Callable[[], Any], where: str) -> Any:
    from jinja2.exceptions import TemplateError

    try:
        return fn()
    except TemplateProblem as exc:
        raise TemplateProblem(f"{where}: {exc}") from None
    except TemplateError as exc:
        raise TemplateProblem(f"{where}: {exc.message or exc}") from None
    except (Refused, Stopped, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateProblem(f"{where}: {exc}") from None
    except RecursionError:
        raise TemplateProblem(f"{where}: the data nests too deeply to render") from None
    except MemoryError:
        raise TemplateProblem(f"{where}: out of memory while rendering") from None
    except Exception as exc:  # noqa: BLE001 - whatever client data makes a template raise is its problem
        raise TemplateProblem(f"{where}: {type(exc).__name__}: {exc}") from None


def compile_value(value: Any, field: str, owner: str = "") -> Compiled:
    """Compiles every template inside a JSON-like value.

    Errors read "<owner>field '<field>': ..."; nested values extend the field as `args.sql`.
    """
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return _compile_string(value, f"{owner}field '{field}'")
    if isinstance(value, dict):
        parts = {k: compile_value(v, f"{field}.{k}", owner) for k, v in value.items()}
        return _combine(parts, lambda ctx: {k: c.fn(ctx) for k, c in parts.items()}, value)
    if isinstance(value, list):
        items = [compile_value(v, f"{field}[{i}]", owner) for i, v in enumerate(value)]
        return _combine(dict(enumerate(items)), lambda ctx: [c.fn(ctx) for c in items], value)
    return Compiled(lambda _ctx: value, Refs(), False)


def _combine(parts: dict[Any, Compiled], render: Callable[[dict[str, Any]], Any], literal: Any) -> Compiled:
    refs = Refs()
    for part in parts.values():
        refs.steps |= part.refs.steps
        refs.inputs |= part.refs.inputs
    if not any(part.dynamic for part in parts.values()):
        return Compiled(lambda _ctx: literal, refs, False)
    return Compiled(render, refs, True)
