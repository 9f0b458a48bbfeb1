"""What a pipeline run may spend on client-driven work: its Budget (deadline, max_render_bytes),
cheap size estimates, and the worker threads that parse, compile and render off the event loop.

Kept free of Jinja2 so that a gateway that never renders a template never loads it; sandbox.py holds
the Jinja2 side.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from gateway.config import PipelineLimits
from gateway.sizes import size_of

T = TypeVar("T")

MAX_DEPTH = 64  # of a client's pipeline or inputs: parsers, validators and compilers recurse
MAX_RENDER_THREADS = 2  # renders at once, all pipelines together; more would only compete for the GIL
MADE_FACTOR = 4  # what one render may make on the way to its value, in max_render_bytes: a few reshapings
OBJECT = 50  # what a Python object costs besides its contents, about
MAX_INT_DIGITS = 4300  # Python's own limit for turning an int into text; bigger ones cannot be shown anyway
MAX_INT_BITS = math.ceil(MAX_INT_DIGITS * math.log2(10))
YIELD_EVERY = 0.001  # seconds a render may hold the GIL before it offers it to the event loop


class Refused(Exception):
    """An operation a template may not do; the text says which and names the limit."""


class Stopped(Exception):
    """The pipeline ran out of time, or ended, while a template was rendering."""


class Budget:
    """What one pipeline run may spend on templates. Shared by its renders, which may run in several
    threads: `deadline` and `stopped` are only ever set once from the event loop."""

    def __init__(self, limits: PipelineLimits | None = None, deadline: float = math.inf) -> None:
        self.limits = limits or PipelineLimits()
        self.deadline = deadline  # time.monotonic(), the clock anyio's cancel scopes use
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


class Render:
    """One top-level render: its budget, the bytes of the value it renders (`used`) and the bytes of
    everything it made on the way (`made`)."""

    __slots__ = ("budget", "limit", "used", "made", "yielded")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.limit = budget.limits.max_render_bytes
        self.used = 0
        self.made = 0
        self.yielded = time.monotonic()

    def tick(self) -> None:
        if self.budget.stopped:
            raise Stopped("the pipeline ended before this template was done")
        now = time.monotonic()
        if now > self.budget.deadline:
            raise Stopped("the pipeline's timeout ran out at this template")
        if now - self.yielded > YIELD_EVERY:
            # hand the GIL over now and then: the event loop would otherwise wait out Python's
            # 5 ms switch interval at every one of its wake-ups
            self.yielded = now
            time.sleep(0)

    def too_big(self, what: str) -> Refused:
        return Refused(f"{what} would produce more than {self.limit} bytes; "
                       f"the limit is gateway.pipelines.max_render_bytes")

    def check(self, size: float, what: str) -> None:
        if size > self.limit:
            raise self.too_big(what)

    def fits(self, result: T, what: str) -> T:
        """Checks what an operation made, and counts the memory it takes: `range(100000) |
        map('center', 10000) | list` makes no single big value, yet a gigabyte of them."""
        if isinstance(result, str):
            if len(result) > self.limit:
                raise self.too_big(what)
            self.count(len(result) + OBJECT)
        elif isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
            # `int(base=16)` is not bound by Python's digit limit, and arithmetic on such an integer
            # (`//`, `%`) is quadratic
            raise Refused(f"{what} would make an integer of more than {MAX_INT_DIGITS} digits; that is the "
                          f"most templates may make")
        elif isinstance(result, (list, tuple, Mapping)):
            # As values, not as memory: a list holding one big string a hundred thousand times is
            # small in memory, yet comparing or counting it (`in`, `==`, `.count()`) is one C call
            # over all of it
            if size_of(result, self.limit) > self.limit:
                raise self.too_big(what)
            # pointers; new items were counted as they were made
            self.count((8 if isinstance(result, (list, tuple)) else 100) * len(result) + OBJECT)
        return result

    def count(self, size: int) -> None:
        self.made += size
        if self.made > self.limit * MADE_FACTOR:
            raise Refused(f"the template would make more than {self.limit * MADE_FACTOR} bytes of values on "
                          f"the way to its result; the limit is {MADE_FACTOR} × gateway.pipelines.max_render_bytes")

    def room(self, size: int) -> None:
        """Checks that a value of `size` still fits in what this render may make."""
        if self.used + size > self.limit:
            raise Refused(f"the rendered value would be more than {self.limit} bytes; "
                          f"the limit is gateway.pipelines.max_render_bytes")

    def add(self, size: int) -> None:
        """Counts a rendered value against the one limit for everything this render makes."""
        self.room(size)
        self.used += size


_local = threading.local()


def current() -> Render:
    """The render under way in this thread, or one with the default limits (for direct calls)."""
    return getattr(_local, "render", None) or Render(_DEFAULT_BUDGET)


_DEFAULT_BUDGET = Budget()


@contextmanager
def rendering(budget: Budget | None) -> Iterator[Render]:
    """Makes `budget` the one the sandbox's checks use in this thread, for one top-level render."""
    previous = getattr(_local, "render", None)
    _local.render = state = Render(budget or _DEFAULT_BUDGET)
    try:
        yield state
    finally:
        _local.render = previous


def nests_deeper(value: Any, limit: int, depth: int = 0) -> bool:
    """Whether `value` nests deeper than `limit`. Call it on values already bounded by `size_of`."""
    if depth > limit:
        return True
    children = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else ()
    return any(nests_deeper(child, limit, depth + 1) for child in children)


# --- off the event loop ----------------------------------------------------------------------------

_render_threads: RunVar[anyio.CapacityLimiter] = RunVar("_render_threads")


def _limiter() -> anyio.CapacityLimiter:
    try:
        return _render_threads.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(MAX_RENDER_THREADS)
        _render_threads.set(limiter)
        return limiter


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Runs client-driven work (parsing, compiling, rendering, sizing) in a worker thread. When the
    caller is cancelled the thread is left to finish on its own: renders stop at their next check
    once their Budget is stopped, and everything else here is bounded in size."""
    return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True, limiter=_limiter())
