"""The Jinja2 sandbox, extended so that no client can spend the gateway's memory or CPU through a
template.

Templates come from clients (`route_pipeline(scenario="custom")`), so every operation that can make
a value bigger than its inputs (`*`, `**`, `+`, `%`, `~`, slices, `range`, string methods and
filters) is checked *before* it runs: no single C-level operation may build more than
`max_render_bytes` or an integer of more than 4300 digits, so none of them holds the GIL for long,
and what a render makes on the way is counted. Between those operations every hook checks the
pipeline's deadline, which is how a long render stops. Renders run in worker threads (budget.py).
"""

from __future__ import annotations

import functools
import math
import re
import string
import types
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg

from gateway.pipelines.budget import MAX_INT_BITS, MAX_INT_DIGITS, OBJECT, Refused, Render, current, size_of

MAX_RANGE = 100_000  # items one range() may make (Jinja's own sandbox allows as many)


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b ~ c` is one C-level join in stock Jinja; send it through the environment so that
        # its size is checked before anything is joined
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        # stock Jinja slices in place, out of the environment's sight; a slice is a copy, so count it
        self.write("environment.slice(")
        self.visit(node.node, frame)
        for part in (node.arg.start, node.arg.stop, node.arg.step):
            self.write(", ")
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
        self.write(")")


def bounded_range(*args: int) -> range:
    current().tick()
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:
        count = math.inf
    if count > MAX_RANGE:
        raise Refused(f"range() would make more than {MAX_RANGE} numbers; that is the most templates may make")
    return numbers


def _check_int_bits(bits: int, operator: str) -> None:
    if bits > MAX_INT_BITS:
        raise Refused(f"'{operator}' would make an integer of more than {MAX_INT_DIGITS} digits; "
                      f"that is the most templates may make")


def _repeat_size(state: Render, sequence: Any, times: int) -> float:
    if times <= 0:
        return 0
    each = len(sequence) if isinstance(sequence, str) else size_of(sequence, state.limit)
    return each * times


def _check_binop(state: Render, operator: str, left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints:
        if right > 0 and abs(left) > 1:
            _check_int_bits(right * left.bit_length(), "**")
    elif operator == "*":
        if ints:
            _check_int_bits(left.bit_length() + right.bit_length(), "*")
        elif isinstance(left, (str, list, tuple)) and isinstance(right, int):
            state.check(_repeat_size(state, left, right), "'*'")
        elif isinstance(right, (str, list, tuple)) and isinstance(left, int):
            state.check(_repeat_size(state, right, left), "'*'")
    elif operator == "+":
        if isinstance(left, str) and isinstance(right, str):
            state.check(len(left) + len(right), "'+'")
        elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            state.check(size_of(left, state.limit) + size_of(right, state.limit), "'+'")
    elif operator == "%" and isinstance(left, str):
        state.check(_printf_size(state, left, right), "'%'")


_PRINTF = re.compile(r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?(?P<type>.?)")


def _number(digits: str | None) -> float:
    # a width of a million digits is not worth turning into an int to learn that it is too big
    return 0 if not digits else (int(digits) if len(digits) <= 9 else math.inf)


def _printf_size(state: Render, template: str, values: Any) -> float:
    """What `template % values` would produce, at most: widths, precisions and every value it uses."""
    total: float = len(template)
    position = 0
    for match in _PRINTF.finditer(template):
        if match["type"] == "%":
            continue
        if "*" in (match["width"], match["precision"]):
            raise Refused("'*' widths in % formatting are not allowed in templates")
        total += _number(match["width"]) + _number(match["precision"])
        if match["key"] is not None and isinstance(values, Mapping):
            value = values.get(match["key"])
        elif isinstance(values, tuple):
            value = values[position] if position < len(values) else None
            position += 1
        else:
            value = values
        total += size_of(value, state.limit)
        if total > state.limit:
            break
    return total


_FIELD_HEAD = re.compile(r"[^.\[]*")


def _format_size(state: Render, template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> float:
    """What `template.format(*args, **kwargs)` would produce, at most."""
    total: float = len(template)
    automatic = 0
    for _text, field, spec, _conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if "{" in (spec or ""):
            raise Refused("nested fields in format specs ('{:{}}') are not allowed in templates")
        total += sum(_number(digits) for digits in re.findall(r"\d+", spec or ""))
        head = _FIELD_HEAD.match(field).group()
        if head == "":
            key: int | str = automatic
            automatic += 1
        else:
            key = int(head) if head.isdigit() else head
        value = (args[key] if key < len(args) else None) if isinstance(key, int) else kwargs.get(key)
        total += size_of(value, state.limit)
        if total > state.limit:
            break
    return total


def _join_size(state: Render, separator: str, items: list[Any] | str) -> float:
    return size_of(items, state.limit) + len(separator) * len(items)


def _replace_size(text: str, old: str, new: str, count: int | None) -> float:
    found = text.count(old)
    if count is not None and count >= 0:
        found = min(found, count)
    return len(text) + found * max(0, len(new) - len(old))


def _width_check(state: Render, width: Any, what: str) -> None:
    if isinstance(width, int):
        state.check(width, what)


# Methods a template may call on its data. All read or reshape; the ones that can grow a value are
# checked first. Anything else (encode, translate, expandtabs, ...) is refused: a list of what is
# safe ages better than a list of what is not.
_STR_METHODS = frozenset({
    "capitalize", "casefold", "center", "count", "endswith", "find", "index", "isalnum", "isalpha",
    "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace",
    "istitle", "isupper", "join", "ljust", "lower", "lstrip", "partition", "removeprefix", "removesuffix",
    "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines",
    "startswith", "strip", "swapcase", "title", "upper", "zfill"})
_METHODS: tuple[tuple[type, frozenset[str]], ...] = (
    (str, _STR_METHODS),
    (Mapping, frozenset({"get", "items", "keys", "values"})),
    (list, frozenset({"count", "index"})),
    (tuple, frozenset({"count", "index"})),
)


def _allowed_method(obj: Any) -> str | None:
    if not isinstance(obj, (types.BuiltinMethodType, types.MethodType)):
        return None
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    for kind, names in _METHODS:
        if isinstance(owner, kind) and name in names:
            return name
    return None


def _check_filter(state: Render, name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Checks a filter's arguments before it runs; returns the value to run it on (a generator given
    to `join` has to be counted, so it is turned into a list first)."""
    def arg(index: int, key: str, default: Any = None) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    if name == "center":
        _width_check(state, arg(0, "width"), "filter 'center'")
    elif name == "indent":
        width = arg(0, "width", 4)
        per_line = width if isinstance(width, int) else len(str(width))
        text = str(value)
        state.check(len(text) + (text.count("\n") + 1) * per_line, "filter 'indent'")
    elif name == "format":
        state.check(_printf_size(state, str(value), kwargs or tuple(args)), "filter 'format'")
    elif name == "replace":
        state.check(_replace_size(str(value), str(arg(0, "old", "")), str(arg(1, "new", "")), arg(2, "count")),
                    "filter 'replace'")
    elif name == "join":
        value = value if isinstance(value, (str, list)) else list(value)
        state.check(_join_size(state, str(arg(0, "d", "")), value), "filter 'join'")
    elif name in ("batch", "slice"):
        count = arg(0, "linecount" if name == "batch" else "slices")
        filler = arg(1, "fill_with")
        if isinstance(count, int) and count > MAX_RANGE and (name == "slice" or filler is not None):
            raise Refused(f"filter '{name}' would make more than {MAX_RANGE} items; that is the most templates may make")
    elif name in ("sort", "unique", "dictsort", "groupby", "min", "max"):
        # one C call that holds the GIL for as long as it takes, and may copy every item (as the
        # lowercase keys of a case-insensitive sort): bounded in items and in bytes, counting an
        # item that appears many times each time
        value = value if isinstance(value, (list, tuple, str, Mapping)) else list(value)
        if len(value) > MAX_RANGE:
            raise Refused(f"filter '{name}' takes at most {MAX_RANGE} items in templates")
        state.check(size_of(value, state.limit), f"filter '{name}'")
    elif name == "sum":
        start = arg(1, "start", 0)
        if not isinstance(start, (int, float)):
            raise Refused("filter 'sum' adds numbers only in templates")
    elif name == "tojson":
        indent = arg(0, "indent")
        if indent is not None and (not isinstance(indent, (int, str)) or
                                   (indent if isinstance(indent, int) else len(indent)) > 16):
            raise Refused("filter 'tojson' takes an indent of at most 16")
    return value


# Filters that turn their value into text: a list holding one big string many times is small in
# memory and huge as text, so its size is checked before the filter runs.
_STRINGIFYING = frozenset({
    "capitalize", "center", "e", "escape", "filesizeformat", "forceescape", "format", "indent", "lower",
    "pprint", "replace", "safe", "string", "striptags", "title", "tojson", "trim", "truncate", "upper",
    "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"})


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    skip = 0 if _PassArg.from_obj(fn) is None else 1  # context / eval context / environment first

    @functools.wraps(fn)  # keeps jinja_pass_arg
    def guarded(*args: Any, **kwargs: Any) -> Any:
        state = current()
        state.tick()
        if len(args) > skip:
            value = args[skip]
            if name in _STRINGIFYING and not isinstance(value, str):
                state.check(size_of(value, state.limit), f"filter '{name}'")
            value = _check_filter(state, name, value, args[skip + 1:], kwargs)
            args = (*args[:skip], value, *args[skip + 1:])
        result = state.fits(fn(*args, **kwargs), f"filter '{name}'")
        if name == "list" and len(args) > skip and isinstance(args[skip], str):  # one new string per character
            state.count(OBJECT * len(result))
        return result

    return guarded


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with every growing operation checked and the deadline honoured."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        # lipsum makes text of any length; cycler, joiner and namespace serve {% %} statements,
        # which pipelines do not allow
        self.globals = {"range": bounded_range, "dict": dict}
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        state = current()
        state.tick()
        _check_binop(state, operator, left, right)
        return state.fits(self.binop_table[operator](left, right), f"'{operator}'")

    def getattr(self, obj: Any, attribute: str) -> Any:
        current().tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        current().tick()
        return super().getitem(obj, argument)

    def slice(self, obj: Any, start: Any, stop: Any, step: Any) -> Any:
        state = current()
        state.tick()
        return state.fits(obj[start:stop:step], "a slice")  # a copy

    def concat(self, parts: tuple[Any, ...]) -> str:
        state = current()
        state.tick()
        size = 0
        for part in parts:
            size += len(part) if isinstance(part, str) else size_of(part, state.limit)
            state.check(size, "'~'")
        return state.fits("".join(map(str, parts)), "'~'")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        template: str = value.__self__
        is_map = value.__name__ == "format_map"

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            state = current()
            mapping = args[0] if is_map and args and isinstance(args[0], Mapping) else kwargs
            state.check(_format_size(state, template, () if is_map else args, mapping), "'.format()'")
            return state.fits(formatter(*args, **kwargs), "'.format()'")

        bounded_format.bounded = True  # type: ignore[attr-defined]
        return bounded_format

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        state = current()
        state.tick()
        if __obj is dict:
            return state.fits(__context.call(__obj, *args, **kwargs), "dict()")
        if (__obj is bounded_range or isinstance(__obj, Undefined)
                or (isinstance(__obj, types.FunctionType) and getattr(__obj, "bounded", False) is True)):
            return __context.call(__obj, *args, **kwargs)
        name = _allowed_method(__obj)
        if name is None:
            shown = getattr(__obj, "__name__", None) or type(__obj).__name__
            raise SecurityError(f"calling {shown!r} is not allowed in templates")
        owner = __obj.__self__
        if name in ("center", "ljust", "rjust", "zfill"):
            _width_check(state, args[0] if args else kwargs.get("width"), f"'.{name}()'")
        elif name == "replace" and len(args) >= 2:
            state.check(_replace_size(owner, str(args[0]), str(args[1]), args[2] if len(args) > 2 else None),
                        "'.replace()'")
        elif name == "join" and args:
            items = list(args[0])
            state.check(_join_size(state, owner, items), "'.join()'")
            args = (items, *args[1:])
        result = state.fits(__obj(*args, **kwargs), f"'.{name}()'")
        if isinstance(result, (list, tuple)) and isinstance(owner, str):  # split and the like: new strings
            state.count(len(owner) + OBJECT * len(result))
        return result


@functools.cache
def environment() -> BoundedEnvironment:
    return BoundedEnvironment()
