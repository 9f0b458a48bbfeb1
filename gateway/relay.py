"""The FastMCP side of a backend call: forwards progress and logs to the caller, maps the result.

Shared by `call_backend` and every re-exported tool, so both behave the same.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastmcp.client.logging import LogMessage
from fastmcp.exceptions import ToolError
from fastmcp.server.context import Context
from fastmcp.server.dependencies import get_context
from fastmcp.tools import ToolResult

from gateway.backends.errors import BackendError
from gateway.backends.pool import BackendPool


def current_context() -> Context | None:
    try:
        return get_context()
    except RuntimeError:
        return None


async def relay_call(pool: BackendPool, server: str, tool: str, args: dict[str, Any],
                     timeout: float | None = None, redact: Callable[[str], str] = str) -> ToolResult:
    ctx = current_context()
    progress = log = None
    if ctx is not None:
        # Backend notifications are handled in the backend session's own task, where FastMCP's
        # request context is unset; run the forwarding in a copy of the caller's context instead.
        caller = contextvars.copy_context()

        def in_caller(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
            return asyncio.create_task(coro, context=caller)

        async def progress(value: float, total: float | None, message: str | None) -> None:
            await in_caller(ctx.report_progress(value, total, message))

        async def log(message: LogMessage) -> None:
            data = message.data
            if isinstance(data, dict) and isinstance(data.get("msg"), str):
                text, extra = data["msg"], data.get("extra")
            else:
                text, extra = (data if isinstance(data, str) else json.dumps(data)), None
            await in_caller(ctx.log(text, level=message.level, logger_name=message.logger or server,
                                    extra=extra))
    try:
        result = await pool.call(server, tool, args, timeout=timeout, progress=progress, log=log)
    except BackendError as exc:
        raise ToolError(redact(str(exc))) from None
    # Passed through unchanged: every content type, structured content, meta and isError.
    return ToolResult(content=result.content, structured_content=result.structured_content,
                      meta=result.meta, is_error=result.is_error)
