"""The shipped gateway-config.json and its example backends, through the real gateway."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, stdio_client, text_of

sys.path.insert(0, str(Path(__file__).parent / "backends"))
from weather_standin import serve_weather_standin  # noqa: E402


def shipped_config(tmp_path: Path, mark: str, weather_base: str) -> Path:
    """The shipped config, with absolute paths and the test's process mark added."""
    raw = json.loads((ROOT / "gateway-config.json").read_text())
    for spec in raw["mcpServers"].values():
        spec["command"] = str(ROOT / spec["command"])
        spec["cwd"] = str(ROOT)
        spec.setdefault("env", {})["GATEWAY_TEST_MARK"] = mark
    raw["mcpServers"]["weather"]["env"]["WEATHER_API_BASE"] = weather_base
    for template in raw["gateway"]["catalog"].values():
        template["command"] = str(ROOT / template["command"])
        template["args"] = [str(ROOT / arg) if (ROOT / arg).is_file() else arg for arg in template["args"]]
        template.setdefault("env", {})["GATEWAY_TEST_MARK"] = mark
        for param in template["params"].values():
            param["roots"] = [str(ROOT / root) for root in param["roots"]]
    path = tmp_path / "gateway-config.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture
def weather_base() -> str:
    with serve_weather_standin() as base:
        yield base


async def test_shipped_backends_work_through_the_gateway(tmp_path: Path, mark: str, weather_base: str) -> None:
    async with stdio_client(shipped_config(tmp_path, mark, weather_base), mark) as client:
        listed = (await client.call_tool("list_servers", {})).structured_content["servers"]
        assert {s["name"]: s["status"] for s in listed} == {"sqlite": "ready", "filesystem": "ready",
                                                             "weather": "ready"}
        tables = (await client.call_tool("sqlite__list_tables", {})).structured_content["result"]
        assert {"customers", "orders", "products"} <= set(tables)
        described = await client.call_tool("sqlite__describe_table", {"table": "orders"})
        assert described.structured_content["row_count"] > 0
        rows = await client.call_tool("call_backend", {"server": "sqlite", "tool": "query",
                                                       "params": {"sql": "SELECT count(*) FROM customers"}})
        assert rows.structured_content["rows"][0][0] > 0
        write = await client.call_tool("sqlite__query", {"sql": "DELETE FROM customers"}, raise_on_error=False)
        assert write.is_error and "read-only" in text_of(write)

        files = await client.call_tool("filesystem__list_files", {"recursive": True})
        paths = {f["path"] for f in files.structured_content["result"]}
        assert "README.md" in paths
        readme = await client.call_tool("filesystem__read_file", {"path": "README.md"})
        assert text_of(readme)
        outside = await client.call_tool("filesystem__read_file", {"path": "../../../../etc/passwd"},
                                         raise_on_error=False)
        assert outside.is_error and "outside the root" in text_of(outside)

        alerts = await client.call_tool("weather__get_alerts", {"state": "CA"})
        assert alerts.structured_content["count"] == 2
        forecast = await client.call_tool("weather__get_forecast", {"latitude": 37.77, "longitude": -122.42})
        assert forecast.structured_content["periods"]


async def test_shipped_catalog_registers_from_a_template(tmp_path: Path, mark: str, weather_base: str) -> None:
    async with stdio_client(shipped_config(tmp_path, mark, weather_base), mark) as client:
        registered = await client.call_tool("register_server", {"name": "shop", "template": "sqlite",
                                                                "params": {"db": "sample.db"}})
        assert registered.structured_content["status"] == "ready"
        rows = await client.call_tool("shop__query", {"sql": "SELECT count(*) AS n FROM customers"})
        assert '"n"' in text_of(rows)
        refused = await client.call_tool("register_server", {"name": "etc", "template": "files",
                                                             "params": {"folder": "../../../etc"}},
                                         raise_on_error=False)
        assert refused.is_error and "is not under" in text_of(refused)
        await client.call_tool("remove_server", {"name": "shop"})


async def test_weather_without_network_gives_a_clear_error(tmp_path: Path, mark: str) -> None:
    async with stdio_client(shipped_config(tmp_path, mark, "http://127.0.0.1:9"), mark) as client:
        result = await client.call_tool("weather__get_alerts", {"state": "TX"}, raise_on_error=False)
        assert result.is_error
        assert "could not reach http://127.0.0.1:9" in text_of(result)
        assert "WEATHER_API_BASE" in text_of(result)


async def test_shipped_pipelines(tmp_path: Path, mark: str, weather_base: str) -> None:
    config = shipped_config(tmp_path, mark, weather_base)
    async with stdio_client(config, mark, "auto", "--pipelines", str(ROOT / "pipelines")) as client:
        names = {t.name for t in await client.list_tools()}
        assert {"pipeline__weather-analysis", "pipeline__database-report", "pipeline__table-profile"} <= names

        weather = await client.call_tool("route_pipeline", {"scenario": "weather-analysis", "inputs": {
            "state": "CA", "latitude": 37.77, "longitude": -122.42}})
        report = weather.structured_content
        assert report["status"] == "ok", report
        assert report["output"]["alert_count"] == 2 and len(report["output"]["alert_headlines"]) == 2
        assert report["output"]["next_periods"] and "active alert(s) in CA" in report["output"]["summary"]

        database = await client.call_tool("pipeline__database-report", {"table": "orders", "limit": 3})
        report = database.structured_content
        assert report["status"] == "ok", report
        assert len(report["output"]["sample_rows"]) == 3
        assert len(report["output"]["sample_rows"][0]) == len(report["output"]["columns"])

        profile = await client.call_tool("pipeline__table-profile", {})
        report = profile.structured_content
        assert report["status"] == "ok", report
        assert {p["table"] for p in report["output"]["profiles"]} == set(report["output"]["tables"])
