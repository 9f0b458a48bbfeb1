"""Tool search, measured: what tools/list costs a client in each exposure mode, how well
search_tools finds the tool a task needs, and how fast it is.

    .venv/bin/python benchmarks/tool_search.py            # everything (about a minute)
    .venv/bin/python benchmarks/tool_search.py --only retrieval

- listing: bytes of the tools/list answer and its tokens (counted with LLaMA 2's tokenizer, the one
  real tokenizer that installs offline here, and estimated as bytes / 4) for the shipped config and
  for the catalog of every fixture
  server (benchmarks/catalog/servers, 400+ real tools), with tool_exposure all and search, through a
  real gateway over stdio.
- retrieval: each query of benchmarks/catalog/queries.json against the whole catalog; a query is
  found when one of the tools it is labelled with ranks in the top 5 (recall@5); MRR is the mean of
  1 / the rank of the first labelled tool (0 past the top 50).
- speed: the catalog repeated under other server names to 1,000 tools: building the index (after
  the import of bm25s, reported apart) and search_tools' ranking, p50 and p95 over the queries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mcp_types

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "benchmarks" / "catalog"
sys.path.insert(0, str(ROOT))

from gateway.tool_search import Catalog, Found  # noqa: E402


def fixtures() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted((CATALOG / "servers").glob("*.json"))]


def catalog(servers: list[dict[str, Any]], copies: int = 1, size: int | None = None) -> Catalog:
    """The fixtures' tools as search_tools ranks them; `copies` repeats them under other server names."""
    found: list[Found] = []
    descriptions: dict[str, str | None] = {}
    for copy in range(copies):
        for fixture in servers:
            server = fixture["server"] + (f"{copy}" if copy else "")
            descriptions[server] = fixture.get("description")
            for raw in fixture["tools"]:
                tool = mcp_types.Tool.model_validate({"inputSchema": {"type": "object"}, **raw}, by_name=False)
                found.append(Found(f"{server}__{tool.name}", server, tool, tool.description or ""))
    return Catalog(found[:size], descriptions)


def scored(catalog: Catalog, queries: list[dict[str, Any]]) -> dict[str, Any]:
    hits, reciprocal, misses = 0, 0.0, []
    for item in queries:
        ranked = [found.exported for found in catalog.search(item["query"], 50)]
        rank = next((i + 1 for i, name in enumerate(ranked) if name in item["tools"]), None)
        hits += rank is not None and rank <= 5
        reciprocal += 1 / rank if rank else 0.0
        if rank is None or rank > 5:
            misses.append({"query": item["query"], "wanted": item["tools"], "rank": rank, "top3": ranked[:3]})
    return {"queries": len(queries), "recall_at_5": round(hits / len(queries), 3),
            "mrr": round(reciprocal / len(queries), 3), "misses": misses}


def retrieval() -> dict[str, Any]:
    """All queries; and apart, the half the ranking's weights were chosen on (the even-numbered
    queries) and the half they were only checked on."""
    built = catalog(fixtures())
    queries = json.loads((CATALOG / "queries.json").read_text())
    every = scored(built, queries)
    return {"tools": len(built.entries), **{k: v for k, v in every.items() if k != "misses"},
            "tuned_half": {k: v for k, v in scored(built, queries[::2]).items() if k != "misses"},
            "held_out_half": {k: v for k, v in scored(built, queries[1::2]).items() if k != "misses"},
            "misses": every["misses"]}


def speed() -> dict[str, Any]:
    began = time.perf_counter()
    import bm25s  # noqa: F401
    import Stemmer  # noqa: F401
    import wordllama  # noqa: F401
    imported = time.perf_counter() - began
    servers = fixtures()
    copies = -(-1000 // sum(len(f["tools"]) for f in servers))
    builds = []
    for _ in range(5):
        began = time.perf_counter()
        built = catalog(servers, copies, 1000)
        builds.append(time.perf_counter() - began)
    queries = [item["query"] for item in json.loads((CATALOG / "queries.json").read_text())]
    built.search(queries[0], 5)
    timings = []
    for _ in range(5):
        for query in queries:
            began = time.perf_counter()
            built.search(query, 5, lambda found: not found.server.startswith("x"))
            timings.append(time.perf_counter() - began)
    timings.sort()
    return {"tools": len(built.entries), "import_ms": round(imported * 1000, 1),
            "build_ms_median": round(statistics.median(builds) * 1000, 1),
            "search_ms_p50": round(timings[len(timings) // 2] * 1000, 3),
            "search_ms_p95": round(timings[int(len(timings) * 0.95)] * 1000, 3)}


async def listed(config: dict[str, Any]) -> str:
    """The gateway's tools/list answer, as JSON text."""
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "config.json"
        config["gateway"] = {**config.get("gateway", {}), "state_file": str(Path(scratch) / "state.json")}
        path.write_text(json.dumps(config))
        transport = StdioTransport(str(ROOT / ".venv" / "bin" / "gateway"),
                                   ["--auto-register", str(path), "--pipelines", str(ROOT / "pipelines")],
                                   cwd=str(ROOT), keep_alive=False)
        async with Client(transport, timeout=120) as client:
            for _ in range(1200):  # the gateway serves while its backends start: wait for them
                servers = (await client.call_tool("list_servers", {})).structured_content["servers"]
                if all(s["status"] != "connecting" for s in servers):
                    break
                await asyncio.sleep(0.05)
            result = await client.list_tools_mcp()
            return result.model_dump_json(by_alias=True, exclude_none=True)


def llama2_tokenizer() -> Any:
    """A real BPE tokenizer that installs offline: LLaMA 2's (32,000 tokens), which WordLlama ships
    in its wheel, read by Hugging Face's `tokenizers`. Other models' tokenizers count differently;
    bytes / 4 is given beside it."""
    import wordllama
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(wordllama.__file__).parent / "tokenizers" / "l2_supercat_tokenizer_config.json"))


def listing() -> dict[str, Any]:
    shipped = json.loads((ROOT / "gateway-config.json").read_text())
    for spec in shipped["mcpServers"].values():  # its relative paths, from the temporary config's directory
        spec["command"] = str(ROOT / spec["command"]) if (ROOT / spec["command"]).exists() else spec["command"]
        spec["args"] = [str(ROOT / a) if (ROOT / a).exists() else a for a in spec.get("args", [])]
        spec["env"] = {k: v.replace("examples/", f"{ROOT}/examples/") for k, v in spec.get("env", {}).items()}
    every = [path.stem for path in sorted((CATALOG / "servers").glob("*.json"))]
    big = {"mcpServers": {"catalog": {"command": sys.executable,
                                      "args": [str(ROOT / "tests" / "backends" / "catalog_server.py"), *every]}}}
    tokenizer = llama2_tokenizer()
    rows = {}
    for name, config in (("shipped config", shipped), ("fixture catalog", big)):
        for mode in ("all", "search"):
            sized = {**config, "gateway": {**config.get("gateway", {}), "tool_exposure": mode}}
            text = asyncio.run(listed(json.loads(json.dumps(sized))))
            rows[f"{name}, {mode}"] = {"bytes": len(text.encode()), "tokens_bytes_over_4": len(text.encode()) // 4,
                                       "tokens_llama2": len(tokenizer.encode(text).ids)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["listing", "retrieval", "speed"])
    args = parser.parse_args()
    parts = {"retrieval": retrieval, "speed": speed, "listing": listing}
    report = {name: run() for name, run in parts.items() if args.only in (None, name)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
