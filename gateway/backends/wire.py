"""Backend requests as wire data, without the client session's model round trips.

`ClientSession.call_tool` builds a request model, dumps it, validates the raw result twice and
parses it into a model, which the gateway's front then dumps and re-validates for its own client:
five pydantic passes for one relayed result. The gateway needs none of them on the way through, so
it sends requests as dicts and relays result dicts; the front validates it once against the
caller's protocol version (see `gateway.fastpath`).

This leans on two private members of mcp 2.3's `ClientSession` (pinned in pyproject.toml): the
per-era request stamp and the dispatcher.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp import ClientSession
from mcp.shared.inbound import MCP_NAME_HEADER, NAME_BEARING_METHODS, encode_header_value

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


async def send_request(session: ClientSession, method: str, params: dict[str, Any], *, timeout: float,
                       progress: ProgressFn | None = None) -> dict[str, Any]:
    """Sends a request exactly as `ClientSession.send_request` would and returns the raw result."""
    data: dict[str, Any] = {"method": method, "params": params}
    opts: dict[str, Any] = {"timeout": timeout}
    if progress is not None:
        opts["on_progress"] = progress
    session._stamp(data, opts)  # protocol-era _meta and headers (Mcp-Method, Mcp-Param-*)
    name_key = NAME_BEARING_METHODS.get(method)
    if name_key is not None and isinstance(name := params.get(name_key), str):
        opts.setdefault("headers", {}).setdefault(MCP_NAME_HEADER, encode_header_value(name))
    return await session._dispatcher.send_raw_request(method, data["params"], opts)  # type: ignore[arg-type]


def result_size(result: dict[str, Any]) -> int:
    """Bytes of text and base64 payload: cheap, and what dominates a result's size."""
    size = 0
    for block in result.get("content") or ():
        if not isinstance(block, dict):
            continue
        size += len(block.get("text") or block.get("data") or "")
        resource = block.get("resource")
        if isinstance(resource, dict):
            size += len(resource.get("text") or resource.get("blob") or "")
    return size
