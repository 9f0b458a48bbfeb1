"""No result over `gateway.max_result_bytes` is relayed: tool results, resource contents, prompts."""

from __future__ import annotations

from typing import Any

from gateway.backends.errors import ResultTooLarge
from gateway.backends.invocation import CallNext, Invocation, Result
from gateway.sizes import size_of


class SizeLimit:
    def __init__(self, limit: int) -> None:
        self._limit = limit

    async def __call__(self, invocation: Invocation, call_next: CallNext) -> Result:
        result = await call_next(invocation)
        size = result_size(result)
        if size > self._limit:
            raise ResultTooLarge(f"the result of {invocation.what} on server '{invocation.server}' is {size:,} "
                                 f"bytes, over the gateway's limit of {self._limit:,} (gateway.max_result_bytes). "
                                 f"Ask for less data.")
        return result


def result_size(result: dict[str, Any]) -> int:
    """Bytes of text and base64 payload, which is what dominates a result's size: a tool result's
    content blocks and structured content, a resource's contents, a prompt's messages."""
    size = size_of(result["structuredContent"]) if result.get("structuredContent") is not None else 0
    for block in result.get("content") or ():
        size += _block_size(block)
    for contents in result.get("contents") or ():
        size += _block_size(contents)
    for message in result.get("messages") or ():
        if isinstance(message, dict):
            size += _block_size(message.get("content"))
    return size


def _block_size(block: Any) -> int:
    if not isinstance(block, dict):
        return 0
    size = len(block.get("text") or block.get("data") or block.get("blob") or "")
    resource = block.get("resource")
    if isinstance(resource, dict):
        size += len(resource.get("text") or resource.get("blob") or "")
    return size

