"""The gateway's pipe streams (gateway/line_streams.py) against what a misbehaving peer writes."""

import os
import time
from collections.abc import Callable

import anyio
import mcp_types
import pytest

from gateway import line_streams
from gateway.line_streams import LineReader


def _response(request_id: int, text: str) -> bytes:
    return (f'{{"jsonrpc":"2.0","id":{request_id},"result":{{"content":[{{"type":"text","text":"{text}"}}]}}}}'
            "\n").encode()


async def _read_all(write: Callable[[Callable[[bytes], object]], None]) -> list[object]:
    """What a LineReader makes of the bytes `write` puts into a pipe from another thread."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    reader = LineReader(read_fd)
    got: list[object] = []

    def peer() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as out:
            write(out.write)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, peer)
            with anyio.fail_after(10):
                while True:
                    try:
                        got.append(await reader.receive())
                    except anyio.EndOfStream:
                        return got
    finally:
        await reader.aclose()
        os.close(read_fd)


async def test_an_oversized_message_is_dropped_and_reported_and_reading_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line_streams, "MAX_LINE", 4096)

    def write(out: Callable[[bytes], object]) -> None:
        out(_response(1, "before"))
        for _ in range(10):  # 10,000 bytes without a newline, in pieces, then its end
            out(b"x" * 1000)
            time.sleep(0.005)
        out(b"\n" + _response(2, "after"))

    first, dropped, after = await _read_all(write)
    assert isinstance(first.message, mcp_types.JSONRPCResponse) and first.message.id == 1
    assert isinstance(dropped, ValueError) and "dropped a message" in str(dropped)
    assert isinstance(after.message, mcp_types.JSONRPCResponse) and after.message.id == 2


async def test_a_message_split_across_many_writes_arrives_whole() -> None:
    line = _response(7, "y" * 300_000)  # several pipe buffers

    def write(out: Callable[[bytes], object]) -> None:
        for start in range(0, len(line), 10_000):
            out(line[start:start + 10_000])

    [got] = await _read_all(write)
    assert got.message.id == 7 and len(got.message.result["content"][0]["text"]) == 300_000
