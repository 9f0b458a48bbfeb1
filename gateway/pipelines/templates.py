"""Passing data between steps: Jinja2 expressions in a sandbox, compiled once per pipeline.

A string that is exactly one `{{ expression }}` keeps the expression's type (a list stays a list, a
number a number); any other string with `{{ }}` renders to text. The sandbox is immutable and
undefined names are errors, so templates can read data but never run code or change anything.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)


class TemplateProblem(Exception):
    """A template that cannot be compiled or evaluated; the text says which and why."""


@dataclass
class Refs:
    steps: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)


@dataclass
class Compiled:
    """A JSON-like value in which some strings are templates."""

    render: Callable[[dict[str, Any]], Any]
    refs: Refs
    dynamic: bool  # False when the value holds no template at all


@functools.cache
def _env() -> ImmutableSandboxedEnvironment:
    # Jinja2 is loaded on first use: a gateway without templated pipelines never pays its memory.
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _collect(tree: nodes.Node, refs: Refs) -> None:
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


def _compile_string(text: str, where: str) -> Compiled:
    from jinja2 import TemplateSyntaxError, Undefined

    env, refs = _env(), Refs()
    try:
        whole = _WHOLE.match(text)
        if whole:
            expression = env.compile_expression(whole.group("expr"), undefined_to_none=False)
            _collect(env.parse("{{" + whole.group("expr") + "}}"), refs)

            def render(context: dict[str, Any]) -> Any:
                value = _evaluate(lambda: expression(**context), where)
                if isinstance(value, Undefined):  # an expression hands back undefined instead of raising
                    raise TemplateProblem(f"{where}: {value._undefined_message}")
                return value
        else:
            template = env.from_string(text)
            _collect(env.parse(text), refs)

            def render(context: dict[str, Any]) -> Any:
                return _evaluate(lambda: template.render(**context), where)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{where}: template syntax error: {exc.message}") from None
    return Compiled(render, refs, True)


def _evaluate(fn: Callable[[], Any], where: str) -> Any:
    from jinja2.exceptions import TemplateError

    try:
        return fn()
    except TemplateError as exc:
        raise TemplateProblem(f"{where}: {exc.message or exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateProblem(f"{where}: {exc}") from None


def compile_value(value: Any, field: str, owner: str = "") -> Compiled:
    """Compiles every template inside a JSON-like value.

    Errors read "<owner>field '<field>': ..."; nested values extend the field as `args.sql`.
    """
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return _compile_string(value, f"{owner}field '{field}'")
    if isinstance(value, dict):
        parts = {k: compile_value(v, f"{field}.{k}", owner) for k, v in value.items()}
        return _combine(parts, lambda ctx: {k: c.render(ctx) for k, c in parts.items()}, value)
    if isinstance(value, list):
        items = [compile_value(v, f"{field}[{i}]", owner) for i, v in enumerate(value)]
        return _combine(dict(enumerate(items)), lambda ctx: [c.render(ctx) for c in items], value)
    return Compiled(lambda _ctx: value, Refs(), False)


def _combine(parts: dict[Any, Compiled], render: Callable[[dict[str, Any]], Any], literal: Any) -> Compiled:
    refs = Refs()
    for part in parts.values():
        refs.steps |= part.refs.steps
        refs.inputs |= part.refs.inputs
    if not any(part.dynamic for part in parts.values()):
        return Compiled(lambda _ctx: literal, refs, False)
    return Compiled(render, refs, True)
