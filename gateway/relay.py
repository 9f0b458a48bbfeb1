"""The FastMCP side of a backend tool call.

Requests for backend tools are answered by `gateway.fastpath` before FastMCP's pipeline; this
serves the FastMCP tools' own run path, for a request the fast path leaves to FastMCP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastmcp.exceptions import ToolError
from fastmcp.tools import ToolResult

from gateway.backends.errors import BackendError
from gateway.backends.pool import BackendPool


async def relay_call(pool: BackendPool, server: str, tool: str, args: dict[str, Any],
                     timeout: float | None = None, redact: Callable[[str], str] = str) -> ToolResult:
    try:
        result = await pool.call(server, tool, args, timeout=timeout)
    except BackendError as exc:
        raise ToolError(redact(str(exc))) from None
    # Passed through unchanged: every content type, structured content, meta and isError.
    return ToolResult(content=result.content, structured_content=result.structured_content,
                      meta=result.meta, is_error=result.is_error)
