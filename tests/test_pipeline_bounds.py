"""Hostile pipelines: what a prompt-injected client can send to `route_pipeline(scenario="custom")`
is refused or bounded with an error naming the limit, and the gateway keeps serving everyone else.

One gateway (streamable HTTP, default limits) serves the module; each test connects its own clients.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
import pytest
from fastmcp import Client

from conftest import (backend_spec, http_gateway, processes_marked, served_promptly, text_of, wait_for, wait_until,
                      write_config)
from gateway.pipelines.templates import TemplateProblem, compile_value

RENDER_LIMIT = "1048576 bytes; the limit is gateway.pipelines.max_render_bytes"
BIG = "x" * 600_000  # more than half of max_render_bytes: two of them are too many


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, psutil.Process]]:
    mark = uuid.uuid4().hex
    config = write_config(tmp_path_factory.mktemp("config") / "config.json", {
        "t": backend_spec(mark), "u": backend_spec(mark)})
    with http_gateway(config, mark) as (url, proc):
        yield url, psutil.Process(proc.pid)
    wait_until(lambda: not processes_marked(mark), timeout=8, message="module processes to exit")


async def run(url: str, pipeline: dict[str, Any] | str, inputs: dict[str, Any] | None = None) -> Any:
    async with Client(url, timeout=120) as client:
        return await client.call_tool("route_pipeline", {"scenario": "custom", "pipeline": pipeline,
                                                         "inputs": inputs or {}}, raise_on_error=False)


def echo(text: Any, **fields: Any) -> dict[str, Any]:
    return {"steps": {"a": {"server": "t", "tool": "echo", "args": {"text": text}, **fields}}}


def with_big_input(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": {"big": {"type": "string"}}, **pipeline}


ATTACKS = [
    # what the template does, and what the refusal says
    ("{{ (7 ** 30000000) % 10 }}", "'**' would make an integer of more than 4300 digits"),
    ("{{ 'a' * 10 ** 9 }}", f"'*' would produce more than {RENDER_LIMIT}"),
    ("{{ ['a'] * 10 ** 9 }}", f"'*' would produce more than {RENDER_LIMIT}"),
    ("{{ range(10 ** 9) | list }}", "range() would make more than 100000 numbers"),
    ("{{ 'a' | center(10 ** 9) }}", f"filter 'center' would produce more than {RENDER_LIMIT}"),
    ("{{ 'a'.ljust(10 ** 9) }}", f"'.ljust()' would produce more than {RENDER_LIMIT}"),
    ("{{ '{:>999999999}'.format(1) }}", f"'.format()' would produce more than {RENDER_LIMIT}"),
    ("{{ '%999999999d' % 1 }}", f"'%' would produce more than {RENDER_LIMIT}"),
    ("{{ '%s' | format(inputs.big) | replace('x', 'xx') }}", f"filter 'replace' would produce more than {RENDER_LIMIT}"),
    ("{{ [inputs.big] * 2 }}", f"'*' would produce more than {RENDER_LIMIT}"),
    ("{{ [inputs.big, inputs.big, inputs.big] | join }}", f"filter 'join' would produce more than {RENDER_LIMIT}"),
    ("{{ inputs.big ~ inputs.big }}", f"'~' would produce more than {RENDER_LIMIT}"),
    ("{{ [inputs.big, inputs.big] }}", f"the rendered value would be more than {RENDER_LIMIT}"),
    ("{{ inputs.big }} and {{ inputs.big }}", f"the rendered value would be more than {RENDER_LIMIT}"),
    ("{{ range(3) | batch(10 ** 9, 'x') | list }}", "filter 'batch' would make more than 100000 items"),
    ("{{ range(100000) | map('center', 10000) | list }}",
     "the template would make more than 4194304 bytes of values on the way to its result; "
     "the limit is 4 × gateway.pipelines.max_render_bytes"),
    ("{{ [" + ", ".join(["inputs.big[1:]"] * 20) + "] | length }}", "the template would make more than 4194304 bytes"),
    ("{{ range(200000, 0, -1) | list | sort }}", "range() would make more than 100000 numbers"),
    ("{{ 'a'.encode() }}", "calling 'encode' is not allowed in templates"),
    ("{{ lipsum(10 ** 6) }}", "'lipsum' is undefined"),
    # found by an independent attacker: an integer through a filter, and sorting what is small in
    # memory but big as values (one string many times)
    ("{{ (('f' * 500000) | int(base=16)) // 3 }}", "filter 'int' would make an integer of more than 4300 digits"),
    ("{{ ['a' * 100000] | batch(20000, fill_with='a' * 100000) | first | sort | length }}",
     f"filter 'first' would produce more than {RENDER_LIMIT}"),
    ("{{ ['a' * 100000] | batch(30000, fill_with='a' * 100000) | first | max | length }}",
     f"filter 'first' would produce more than {RENDER_LIMIT}"),
    ("{{ ('a' * 999999 ~ 'b') in (range(100000) | map(attribute='n', default='a' * 1000000) | list) }}",
     f"filter 'list' would produce more than {RENDER_LIMIT}"),
]


@pytest.mark.parametrize(("template", "expected"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_templates_refuse_what_would_grow_without_bound(template: str, expected: str) -> None:
    started = time.thread_time()  # CPU spent on the render, whatever else the machine runs
    compiled = compile_value(template, "args.text", "step 'a', ")
    with pytest.raises(TemplateProblem) as caught:
        compiled.render({"inputs": {"big": BIG}, "steps": {}})
    assert str(caught.value).startswith(f"step 'a', field 'args.text': {expected}"), str(caught.value)
    assert time.thread_time() - started < 1


@pytest.mark.parametrize(("template", "expected"), [
    ("{% for x in range(10) %}{{ x }}{% endfor %}", "statements such as {% ... %} are not allowed"),
    ("{{ [" + ", ".join(["1"] * 500) + "] }}", "an expression has more than 400 parts"),
    ("{{ x" + " | string" * 40 + " }}", "an expression nests deeper than 24 levels"),
])
def test_templates_refuse_what_would_be_costly_to_compile(template: str, expected: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        compile_value(template, "args.text", "step 'a', ")
    assert str(caught.value).startswith("step 'a', field 'args.text': ") and expected in str(caught.value)


def test_ordinary_templates_still_work() -> None:
    context = {"inputs": {"n": 3, "who": "ann"},
               "steps": {"s": {"result": {"columns": [{"name": "id"}, {"name": "name"}]}}}}
    assert compile_value({
        "sql": "SELECT {{ steps.s.result.columns | map(attribute='name') | join(', ') }} LIMIT {{ inputs.n }}",
        "names": "{{ steps.s.result.columns | map(attribute='name') }}",
        "numbers": "{{ range(inputs.n) }}",
        "sum": "{{ 2 ** 10 + inputs.n * 2 }}",
        "text": "{{ '%s-%05d' % (inputs.who, 7) }} {{ '{}!'.format(inputs.who | upper) }} {{ 'x' * 3 ~ 'y' }}",
    }, "args").render(context) == {
        "sql": "SELECT id, name LIMIT 3", "names": ["id", "name"], "numbers": [0, 1, 2], "sum": 1030,
        "text": "ann-00007 ANN! xxxy"}


def failed_with(result: Any, expected: str) -> dict[str, Any]:
    report = result.structured_content
    assert result.is_error and report["status"] == "failed", report
    assert expected in report["error"], report["error"]
    return report


OVER_HTTP = [ATTACKS[i] for i in (0, 1, 3, 11, 12)]  # the reported ones, and the two ways to combine big values


@pytest.mark.parametrize(("template", "expected"), OVER_HTTP, ids=[a[0] for a in OVER_HTTP])
async def test_each_attack_over_http_fails_at_once_and_names_the_limit(gateway: tuple[str, psutil.Process],
                                                                       template: str, expected: str) -> None:
    url, _proc = gateway
    started = time.monotonic()
    result = await run(url, with_big_input(echo(template)), {"big": BIG})
    failed_with(result, f"step 'a' failed: step 'a', field 'args.text': {expected}")
    assert time.monotonic() - started < 5


async def test_the_big_string_attempt_costs_no_memory(gateway: tuple[str, psutil.Process]) -> None:
    url, proc = gateway
    await run(url, echo("warm up"))
    before = proc.memory_info().rss
    for template in ("{{ 'a' * 10 ** 9 }}", "{{ ('a' * 1000000) * 1000 }}", "{{ ['a' * 1000000] * 1000 }}",
                     "{{ ([inputs.big] * 1000) | join }}"):
        result = await run(url, with_big_input(echo(template)), {"big": BIG})
        assert result.is_error and "max_render_bytes" in result.structured_content["error"]
    grown = proc.memory_info().rss - before
    assert grown < 64 * 2**20, f"gateway RSS grew by {grown / 2**20:.0f} MiB"


async def test_foreach_lists_have_an_item_limit(gateway: tuple[str, psutil.Process]) -> None:
    url, _proc = gateway
    started = time.monotonic()
    result = await run(url, echo("{{ item }}", foreach="{{ range(1001) | list }}"))
    failed_with(result, "'foreach' gives 1001 items; the limit is gateway.pipelines.max_foreach_items (1000)")
    # the attack that ran 130 s and left 5.3 GB behind
    result = await run(url, {"timeout": 15, **echo("{{ item }}", foreach="{{ range(1000000) | list }}")})
    failed_with(result, "range() would make more than 100000 numbers")
    assert time.monotonic() - started < 5


async def test_the_answer_has_a_byte_limit(gateway: tuple[str, psutil.Process]) -> None:
    url, proc = gateway
    limit = "the pipeline's answer would be more than 4194304 bytes; the limit is gateway.pipelines.max_output_bytes"
    steps = {f"s{i}": {"server": "t", "tool": "big", "args": {"kb": 1000}} for i in range(5)}
    result = await run(url, {"steps": steps})
    report = failed_with(result, limit)
    assert len(json.dumps(report)) < 4 * 2**20
    # a foreach of big results stops once they could no longer be sent, instead of holding them all
    before = proc.memory_info().rss
    result = await run(url, {"steps": {"many": {"server": "t", "tool": "big", "args": {"kb": 1000},
                                                "foreach": "{{ range(500) | list }}", "concurrency": 2}}})
    report = failed_with(result, limit)
    assert report["steps"]["many"]["status"] in ("cancelled", "failed")
    assert proc.memory_info().rss - before < 256 * 2**20


async def test_the_timeout_covers_rendering(gateway: tuple[str, psutil.Process]) -> None:
    url, proc = gateway
    part = "(range(100000)" + " | map('abs')" * 10 + " | sum)"
    slow = "{{ " + " + ".join([part] * 10) + " }}"  # many seconds of work, no memory
    started = time.monotonic()
    result = await run(url, {"timeout": 0.5, **echo(slow)})
    report = failed_with(result, "pipeline timed out after 0.5s")
    assert report["steps"]["a"]["status"] == "cancelled"
    assert time.monotonic() - started < 3
    # and the render stopped rather than going on in its thread: the gateway is soon idle again,
    # where a render going on would keep it busy for seconds
    deadline = time.monotonic() + 3
    while True:
        cpu = sum(proc.cpu_times()[:2])
        await anyio.sleep(0.5)  # a measuring window, not a wait for something to happen
        used = sum(proc.cpu_times()[:2]) - cpu
        if used < 0.2:
            break
        assert time.monotonic() < deadline, f"the gateway still used {used:.2f}s of CPU in 0.5s, 3s after the timeout"


TOO_BIG = "custom pipeline: the definition is more than 1048576 bytes; the limit is gateway.pipelines.max_render_bytes"
TOO_DEEP = "custom pipeline: nests deeper than 64 levels"


def nested(depth: int) -> str:
    return "steps:\n  a: {server: t, tool: echo, args: {text: " + "[" * depth + "]" * depth + "}}\n"


def alias_bomb() -> str:
    """Eight lines of YAML that stand for a list of 10**8 strings."""
    lines = ["a: &a [" + ", ".join(["xxxxxxxxxx"] * 10) + "]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]" for i in range(7)]
    return "\n".join(lines) + "\nsteps: {a: {server: t, tool: echo, args: {text: *h}}}\n"


@pytest.mark.parametrize(("definition", "expected"), [
    pytest.param("x" * (2**20 + 1), TOO_BIG, id="too-long"),
    pytest.param(alias_bomb(), TOO_BIG, id="alias-bomb"),
    pytest.param(nested(100), TOO_DEEP, id="deep"),
    pytest.param(nested(5000), TOO_DEEP, id="deeper-than-the-parser-can-go"),
])
async def test_client_definitions_are_bounded_before_they_are_used(gateway: tuple[str, psutil.Process],
                                                                   definition: str, expected: str) -> None:
    url, _proc = gateway
    started = time.monotonic()
    result = await run(url, definition)
    assert result.is_error and text_of(result) == expected, text_of(result)
    assert time.monotonic() - started < 10


HOSTILE = {
    # a foreach at the item limit, every item a render of ~1 MB built from 20,000 filter calls; the
    # timeout ends it
    "renders": {"timeout": 3, **echo("{{ ((range(20000) | map('string') | join(',')) * 9) | length }}",
                                      foreach="{{ range(1000) | list }}", concurrency=100)},
    # a definition of 30,000 expressions to compile; its own timeout ends the compiling
    "compiling": {"timeout": 3, **echo("{{ 'x' }}" * 30000)},
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
async def test_everyone_else_is_served_within_100ms_while_a_hostile_pipeline_runs(
        gateway: tuple[str, psutil.Process], hostile: str) -> None:
    url, proc = gateway
    health = url.removesuffix("/mcp") + "/healthz"
    async with Client(url, timeout=60) as other, httpx2.AsyncClient(timeout=30) as http:
        assert (await http.get(health)).status_code == 200
        quiet = []
        for _ in range(5):
            started = time.monotonic()
            assert text_of(await other.call_tool("u__echo", {"text": "warm"})) == "warm"
            quiet.append(time.monotonic() - started)
        # 100 ms, or four times a call on this machine while nothing hostile runs, if that is more: a
        # blocked event loop would hold every call for the seconds the attack takes
        bound = max(0.1, 4 * sorted(quiet)[2])
        outcome: dict[str, Any] = {}

        async def attack() -> None:
            started = time.monotonic()
            outcome["result"] = await run(url, HOSTILE[hostile])
            outcome["seconds"] = time.monotonic() - started

        busy_from = sum(proc.cpu_times()[:2])
        latencies: dict[str, list[float]] = {"healthz": [], "echo": []}
        async with anyio.create_task_group() as tg:
            tg.start_soon(attack)
            # in flight: the gateway is burning CPU on it
            await wait_for(lambda: sum(proc.cpu_times()[:2]) - busy_from > 0.3, timeout=10,
                           message="the hostile pipeline to start working")
            for _ in range(10):
                started = time.monotonic()
                assert (await http.get(health)).json() == {"status": "ok"}
                latencies["healthz"].append(time.monotonic() - started)
                started = time.monotonic()
                assert text_of(await other.call_tool("u__echo", {"text": "still here"})) == "still here"
                latencies["echo"].append(time.monotonic() - started)
            assert "result" not in outcome, "the hostile pipeline ended before the measurements did"
        print(f"{hostile}: worst /healthz {max(latencies['healthz']) * 1000:.1f} ms, "
              f"worst echo {max(latencies['echo']) * 1000:.1f} ms, hostile run {outcome['seconds']:.2f} s")
        assert served_promptly(latencies["healthz"], bound), (bound, latencies)
        assert served_promptly(latencies["echo"], bound), (bound, latencies)
        result = outcome["result"]
        assert result.is_error
        assert "timed out after 3s" in text_of(result) or "timeout ran out" in text_of(result), text_of(result)
        assert outcome["seconds"] < 8


async def test_the_configured_limits_are_the_ones_applied(tmp_path: Path, mark: str) -> None:
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)},
                          pipelines={"max_foreach_items": 3, "max_render_bytes": 1000, "max_output_bytes": 5000})
    async with http_gateway(config, mark) as (url, _proc):
        result = await run(url, echo("{{ item }}", foreach="{{ range(4) | list }}"))
        failed_with(result, "'foreach' gives 4 items; the limit is gateway.pipelines.max_foreach_items (3)")
        result = await run(url, echo("{{ 'a' * 1001 }}"))
        failed_with(result, "'*' would produce more than 1000 bytes; the limit is gateway.pipelines.max_render_bytes")
        steps = {f"s{i}": {"server": "t", "tool": "echo", "args": {"text": "{{ 'a' * 900 }}"}} for i in range(6)}
        failed_with(await run(url, {"steps": steps}), "the pipeline's answer would be more than 5000 bytes")
        result = await run(url, with_big_input(echo("{{ inputs.big | length }}")), {"big": "b" * 1001})
        assert result.is_error and "the inputs are more than 1000 bytes" in text_of(result), text_of(result)
        result = await run(url, json.dumps(echo("x" * 1001)))
        assert result.is_error and "the definition is more than 1000 bytes" in text_of(result), text_of(result)
