"""Pipelines through a real MCP client against the real `gateway` command (streamable HTTP).

One gateway serves the whole module; each test connects its own client.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastmcp import Client

from conftest import GATEWAY, backend_spec, http_gateway, processes_marked, text_of, wait_until, write_config


@pytest.fixture(scope="module")
def pipelines_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipelines")


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, pipelines_dir: Path) -> Iterator[str]:
    mark = uuid.uuid4().hex
    config = write_config(tmp_path_factory.mktemp("config") / "config.json", {
        "t": backend_spec(mark), "u": backend_spec(mark)})
    with http_gateway(config, mark, "streamable-http", "--pipelines", str(pipelines_dir)) as (url, _proc):
        yield url
    wait_until(lambda: not processes_marked(mark), timeout=8, message="module processes to exit")


async def run(url: str, pipeline: dict[str, Any] | str, inputs: dict[str, Any] | None = None,
              **kwargs: Any) -> Any:
    async with Client(url, timeout=60) as client:
        return await client.call_tool("route_pipeline", {"scenario": "custom", "pipeline": pipeline,
                                                         "inputs": inputs or {}},
                                      raise_on_error=False, **kwargs)


def step(tool: str, **fields: Any) -> dict[str, Any]:
    return {"server": fields.pop("server", "t"), "tool": tool, **fields}


async def test_independent_steps_run_concurrently_and_dependents_wait(gateway_url: str) -> None:
    result = await run(gateway_url, {"steps": {
        "a": step("slow", args={"seconds": 0.6}),
        "b": step("slow", server="u", args={"seconds": 0.6}),
        "c": step("echo", args={"text": "{{ steps.a.result }} and {{ steps.b.result }}"}),
    }, "output": {"joined": "{{ steps.c.result }}"}})
    report = result.structured_content
    assert report["status"] == "ok", report
    assert report["output"] == {"joined": "slept 0.6 and slept 0.6"}
    a, b = (report["steps"][name]["duration_ms"] for name in ("a", "b"))
    # a and b overlapped: the whole took less than the two one after the other, however loaded the machine
    assert 600 <= max(a, b) <= report["duration_ms"] < a + b, (a, b, report["duration_ms"])
    assert list(report["steps"]) == ["a", "b", "c"]


async def test_foreach_respects_its_concurrency_limit(gateway_url: str) -> None:
    key = uuid.uuid4().hex
    result = await run(gateway_url, {"inputs": {"n": {"type": "integer", "default": 6}},
                                     "steps": {"each": step("crowd", foreach="{{ range(inputs.n) | list }}",
                                                            concurrency=3, args={"key": key, "seconds": 0.5})}})
    report = result.structured_content
    assert report["status"] == "ok", report
    # the backend counts the calls in flight at once: three, never more, however loaded the machine
    peaks = report["steps"]["each"]["result"]
    assert len(peaks) == 6 and max(peaks) == 3, peaks


async def test_when_skips_a_step_and_its_dependents(gateway_url: str) -> None:
    result = await run(gateway_url, {"inputs": {"go": {"type": "boolean", "default": False}},
                                     "steps": {"gate": step("echo", args={"text": "x"}, when="{{ inputs.go }}"),
                                               "after": step("echo", args={"text": "{{ steps.gate.result }}"}),
                                               "other": step("echo", args={"text": "runs"})}})
    report = result.structured_content
    assert report["status"] == "ok"
    assert report["steps"]["gate"] == {"status": "skipped", "duration_ms": report["steps"]["gate"]["duration_ms"],
                                       "error": "condition 'when' is false"}
    assert report["steps"]["after"]["status"] == "skipped" and "gate" in report["steps"]["after"]["error"]
    assert report["steps"]["other"]["result"] == "runs"
    ran = await run(gateway_url, {"inputs": {"go": {"type": "boolean"}},
                                  "steps": {"gate": step("echo", args={"text": "x"}, when="{{ inputs.go }}")}},
                    {"go": True})
    assert ran.structured_content["steps"]["gate"]["result"] == "x"


async def test_retries_with_backoff(gateway_url: str) -> None:
    key = uuid.uuid4().hex
    ok = await run(gateway_url, {"steps": {"f": step("flaky", args={"key": key, "failures": 2},
                                                     retries=2, retry_delay=0.05)}})
    report = ok.structured_content
    assert report["steps"]["f"]["status"] == "ok" and report["steps"]["f"]["attempts"] == 3
    assert report["steps"]["f"]["result"] == "ok after 3 calls"
    failed = await run(gateway_url, {"steps": {"f": step("flaky", args={"key": key + "x", "failures": 5},
                                                         retries=1, retry_delay=0.05)}})
    assert failed.is_error
    assert "after 2 attempts" in failed.structured_content["steps"]["f"]["error"]


async def test_on_error_modes_keep_what_succeeded(gateway_url: str) -> None:
    base = {"good": step("echo", args={"text": "kept"})}
    cont = await run(gateway_url, {"steps": {**base, "bad": step("fail", args={"message": "nope"},
                                                                 on_error="continue")}})
    report = cont.structured_content
    assert not cont.is_error and report["status"] == "partial"
    assert report["steps"]["bad"] == {"status": "failed", "duration_ms": report["steps"]["bad"]["duration_ms"],
                                      "error": "nope"}
    assert report["steps"]["good"]["result"] == "kept"

    fallback = await run(gateway_url, {"steps": {
        "bad": step("fail", args={"message": "nope"}, on_error={"fallback": "plan b"}),
        "use": step("echo", args={"text": "{{ steps.bad.result }}"})}})
    report = fallback.structured_content
    assert report["status"] == "partial" and report["steps"]["bad"]["status"] == "fallback"
    assert report["steps"]["use"]["result"] == "plan b"

    failing = await run(gateway_url, {"steps": {**base,
                                                "bad": step("fail", args={"message": "nope"}, needs=["good"]),
                                                "never": step("echo", args={"text": "{{ steps.bad.result }}"})}})
    report = failing.structured_content
    assert failing.is_error and report["status"] == "failed"
    assert report["error"] == "step 'bad' failed: nope"
    assert report["steps"]["good"]["result"] == "kept"
    assert report["steps"]["never"]["status"] == "not run"


async def test_step_and_pipeline_timeouts(gateway_url: str) -> None:
    started = time.monotonic()
    step_timeout = await run(gateway_url, {"steps": {"h": step("hang", timeout=0.3, on_error="continue"),
                                                     "ok": step("echo", args={"text": "fine"})}})
    report = step_timeout.structured_content
    assert report["status"] == "partial" and "timed out after 0.3s" in report["steps"]["h"]["error"]
    whole = await run(gateway_url, {"timeout": 0.5, "steps": {
        "quick": step("echo", args={"text": "done"}),
        "slow": step("slow", args={"seconds": 30})}})
    report = whole.structured_content
    assert whole.is_error and report["error"] == "pipeline timed out after 0.5s"
    assert report["steps"]["quick"]["result"] == "done" and report["steps"]["slow"]["status"] == "cancelled"
    assert time.monotonic() - started < 5


async def test_a_backend_crash_mid_pipeline(gateway_url: str) -> None:
    result = await run(gateway_url, {"steps": {
        "boom": step("crash", server="u", on_error="continue"),
        "steady": step("slow", args={"seconds": 0.3}),
        # a restart on a loaded 2-core machine may take longer than the default 10 s call timeout
        "after": step("echo", server="u", args={"text": "u is back"}, needs=["steady"], timeout=60),
    }})
    report = result.structured_content
    assert report["status"] == "partial", report
    assert "lost its connection" in report["steps"]["boom"]["error"]
    assert report["steps"]["steady"]["status"] == "ok"
    assert report["steps"]["after"]["result"] == "u is back"  # restarted on the next call


async def test_each_finished_step_reports_progress(gateway_url: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    await run(gateway_url, {"steps": {"a": step("echo", args={"text": "1"}),
                                      "b": step("echo", args={"text": "{{ steps.a.result }}"}),
                                      "c": step("echo", args={"text": "3"})}},
              progress_handler=on_progress)
    assert sorted(p for p, _, _ in seen) == [1, 2, 3] and {t for _, t, _ in seen} == {3}
    assert any("step 'b' ok" in (m or "") for _, _, m in seen)


@pytest.mark.parametrize(("pipeline", "inputs", "expected"), [
    ({"steps": {"a": step("echo", needs=["b"]), "b": step("echo", needs=["a"])}}, {},
     "steps form a cycle: a -> b -> a"),
    ({"steps": {"a": step("echo", args={"text": "{{ steps.zz.result }}"})}}, {},
     "step 'a': refers to unknown step 'zz'"),
    ({"steps": {"a": step("echo", colour="red")}}, {}, "step 'a', field 'colour': unknown field"),
    ({"steps": {"a": step("echo", retries="lots")}}, {}, "step 'a', field 'retries'"),
    ({"steps": {"a": step("echo", args={"text": "{{ inputs.who }}"})}}, {},
     "uses inputs.who, which is not declared"),
    ({"steps": {"a": step("echo", args={"text": "{{ steps.a. }}"})}}, {},
     "step 'a', field 'args.text': template syntax error"),
    ({"inputs": {"n": {"type": "integer", "required": True}}, "steps": {"a": step("echo")}}, {},
     "'n' is a required property"),
    ({"inputs": {"n": {"type": "integer"}}, "steps": {"a": step("echo")}}, {"n": "three"},
     "input 'n': 'three' is not of type 'integer'"),
    ({"steps": {}}, {}, "field 'steps'"),
    ("steps: [unclosed", {}, "not valid YAML"),
])
async def test_invalid_pipelines_are_rejected_before_anything_runs(gateway_url: str, pipeline: Any,
                                                                   inputs: dict, expected: str) -> None:
    result = await run(gateway_url, pipeline, inputs)
    assert result.is_error and expected in text_of(result), text_of(result)


async def test_custom_pipeline_as_yaml_text(gateway_url: str) -> None:
    text = yaml.safe_dump({"name": "yaml-one", "steps": {"a": step("add", args={"a": 2, "b": 3})},
                           "output": "{{ steps.a.result * 10 }}"})
    result = await run(gateway_url, text)
    assert result.structured_content["output"] == 50


async def test_pipeline_files_become_tools_and_reload_without_restart(gateway_url: str, pipelines_dir: Path) -> None:
    name = f"hot-{uuid.uuid4().hex[:6]}"
    path = pipelines_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "description": "first version",
                                    "inputs": {"word": {"type": "string", "required": True}},
                                    "steps": {"say": step("echo", args={"text": "v1 {{ inputs.word }}"})},
                                    "output": "{{ steps.say.result }}"}))
    async with Client(gateway_url, timeout=60) as client:
        async def tools() -> dict[str, Any]:
            return {t.name: t for t in await client.list_tools()}

        deadline = time.monotonic() + 10
        while f"pipeline__{name}" not in await tools():
            assert time.monotonic() < deadline, "new pipeline file was not picked up"
        tool = (await tools())[f"pipeline__{name}"]
        assert tool.input_schema["required"] == ["word"]
        assert (await client.call_tool(f"pipeline__{name}", {"word": "hi"})).structured_content["output"] == "v1 hi"
        route = await client.call_tool("route_pipeline", {"scenario": name, "inputs": {"word": "yo"}})
        assert route.structured_content["output"] == "v1 yo"
        routes = {t.name: t for t in await client.list_tools()}["route_pipeline"]
        assert f"{name}: first version" in routes.description

        path.write_text(path.read_text().replace("v1", "v2"))
        route = await client.call_tool("route_pipeline", {"scenario": name, "inputs": {"word": "yo"}})
        assert route.structured_content["output"] == "v2 yo"

        broken = pipelines_dir / f"{name}-broken.yaml"
        broken.write_text("name: broken\nsteps:\n  a: {server: t}\n")
        result = await client.call_tool("route_pipeline", {"scenario": f"{name}-broken"}, raise_on_error=False)
        assert result.is_error and "invalid" in text_of(result) and "field 'tool'" in text_of(result)
        assert (await client.call_tool(f"pipeline__{name}", {"word": "still"})).structured_content["output"] == "v2 still"
        broken.unlink()

        path.unlink()
        deadline = time.monotonic() + 10
        while f"pipeline__{name}" in await tools():
            assert time.monotonic() < deadline, "deleted pipeline file still served"
        gone = await client.call_tool("route_pipeline", {"scenario": name}, raise_on_error=False)
        assert gone.is_error and f"unknown pipeline '{name}'" in text_of(gone)


def test_gateway_validate(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "echo.yaml").write_text(yaml.safe_dump({"name": "echo", "steps": {"a": step("echo", args={"text": "x"})}}))
    done = subprocess.run([GATEWAY, "validate", "--pipelines", str(good)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("ok: 1 pipeline"), done

    (good / "cycle.json").write_text(json.dumps({"name": "cycle", "steps": {"a": step("echo", needs=["a"])}}))
    (good / "typo.yaml").write_text("name: typo\nsteps:\n  a: {server: t, tool: echo, arg: {}}\n")
    done = subprocess.run([GATEWAY, "validate", "--pipelines", str(good)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    assert any(line.startswith("cycle.json: ") and "depends on itself" in line for line in lines)
    assert any(line.startswith("typo.yaml: step 'a', field 'arg': unknown field") for line in lines)


def test_gateway_validate_against_running_backends(tmp_path: Path, mark: str) -> None:
    directory = tmp_path / "pipelines"
    directory.mkdir()
    (directory / "p.yaml").write_text(yaml.safe_dump({"name": "p", "steps": {
        "ok": step("add", args={"a": 1, "b": "{{ 2 }}"}),
        "no_tool": step("nope"),
        "no_server": step("echo", server="ghost"),
        "missing": step("add", args={"a": 1}),
        "extra": step("echo", args={"text": "x", "loud": True}),
        "wrong_type": step("add", args={"a": "one", "b": 2}),
    }}))
    config = write_config(tmp_path / "config.json", {"t": backend_spec(mark)})
    done = subprocess.run([GATEWAY, "validate", "--pipelines", str(directory), "--auto-register", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 5, lines
    assert any("step 'no_tool', field 'tool': server 't' has no tool 'nope'" in line for line in lines)
    assert any("step 'no_server', field 'server': unknown server 'ghost'" in line for line in lines)
    assert any("step 'missing', field 'args': missing required argument 'b'" in line for line in lines)
    assert any("step 'extra', field 'args.loud': tool 'echo' has no argument 'loud'" in line for line in lines)
    assert any("step 'wrong_type', field 'args.a': 'one' is not of type 'integer'" in line for line in lines)
