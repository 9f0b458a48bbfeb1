"""The gateway's pipe streams (gateway/line_streams.py) against what a misbehaving peer writes."""

import json
import os
import time
from collections.abc import Callable

import anyio
import mcp_types
import pytest
from mcp import MCPError

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


async def test_requests_are_answered_off_the_line_and_everything_else_reaches_the_session() -> None:
    """`line_streams.request` against a peer on real pipes: its answer, its error, its progress, a
    timeout (the peer is told to cancel), and the peer going away, while a message of the peer's
    own still reaches whoever reads the stream (the session)."""
    to_peer_r, to_peer_w = os.pipe()
    from_peer_r, from_peer_w = os.pipe()
    for fd in (to_peer_r, to_peer_w, from_peer_r, from_peer_w):
        os.set_blocking(fd, False)
    reader, writer = LineReader(from_peer_r), line_streams.LineWriter(to_peer_w)
    peer_in = LineReader(to_peer_r)
    session_got: list[object] = []
    peer_got: list[dict] = []
    progress: list[tuple] = []

    def say(message: dict) -> None:
        os.write(from_peer_w, json.dumps(message).encode() + b"\n")

    async def peer() -> None:
        async for item in peer_in:
            message = item.message.model_dump(by_alias=True, exclude_unset=True)
            peer_got.append(message)
            what = (message.get("params") or {}).get("name")
            if what == "echo":  # echoing the id as a string, as some peers do
                say({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}})
                say({"jsonrpc": "2.0", "id": str(message["id"]), "result": {"content": [], "echo": message["params"]}})
            elif what == "junk":  # a line that is no JSON-RPC, then the answer, in one write
                os.write(from_peer_w, b"not json-rpc\n" + json.dumps(
                    {"jsonrpc": "2.0", "id": message["id"], "result": {"content": []}}).encode() + b"\n")
            elif what == "logged":  # a log message and the answer in one write
                os.write(from_peer_w, json.dumps({"jsonrpc": "2.0", "method": "notifications/message", "params": {
                    "level": "info", "data": "first"}}).encode() + b"\n" + json.dumps(
                    {"jsonrpc": "2.0", "id": message["id"], "result": {"content": []}}).encode() + b"\n")
            elif what == "fail":
                say({"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32602, "message": "no such tool"}})
            elif what == "progress":
                token = message["params"]["_meta"]["progressToken"]
                say({"jsonrpc": "2.0", "method": "notifications/progress",
                     "params": {"progressToken": token, "progress": 1, "total": 2, "message": "half"}})
                say({"jsonrpc": "2.0", "id": message["id"], "result": {"content": []}})

    async def session() -> None:
        async for item in reader:
            session_got.append(item)

    async def on_progress(done: float, total: float | None, text: str | None) -> None:
        progress.append((done, total, text))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer)
            tg.start_soon(session)
            with anyio.fail_after(10):
                echoed = await line_streams.request(reader, writer, 1, "tools/call", {"name": "echo"}, 5, None)
                assert echoed == {"content": [], "echo": {"name": "echo"}}
                # what the peer sent before an answer reaches the session before the request resumes
                assert len(session_got) == 1
                await line_streams.request(reader, writer, 7, "tools/call", {"name": "logged"}, 5, None)
                assert [item.message.params["data"] for item in session_got] == ["x", "first"]
                assert await line_streams.request(reader, writer, 6, "tools/call", {"name": "junk"}, 5, None) \
                    == {"content": []}
                with pytest.raises(MCPError, match="no such tool") as failed:
                    await line_streams.request(reader, writer, 2, "tools/call", {"name": "fail"}, 5, None)
                assert failed.value.error.code == -32602
                await line_streams.request(reader, writer, 3, "tools/call", {"name": "progress"}, 5, on_progress)
                assert progress == [(1, 2, "half")]
                with pytest.raises(MCPError, match="timed out") as late:
                    await line_streams.request(reader, writer, 4, "tools/call", {"name": "silent"}, 0.2, None)
                assert late.value.error.code == mcp_types.REQUEST_TIMEOUT
                while not any(m.get("method") == "notifications/cancelled" for m in peer_got):
                    await anyio.sleep(0.01)
                cancelled = next(m for m in peer_got if m.get("method") == "notifications/cancelled")
                assert cancelled["params"]["requestId"] == 4
                # only the peer's own messages went to the session; every answer was taken off the line
                assert [getattr(item.message, "method", None) for item in session_got
                        if not isinstance(item, Exception)] == ["notifications/message"] * 2
                assert [type(item) for item in session_got if isinstance(item, Exception)] == [
                    line_streams.UnreadableLines]

                closed = anyio.Event()

                async def unanswered() -> None:
                    with pytest.raises(MCPError, match="Connection closed"):
                        await line_streams.request(reader, writer, 5, "tools/call", {"name": "silent"}, 30, None)
                    closed.set()

                tg.start_soon(unanswered)
                while not any(m.get("id") == 5 for m in peer_got):
                    await anyio.sleep(0.01)
                os.close(from_peer_w)  # the peer goes away with a request of ours unanswered
                from_peer_w = -1
                await closed.wait()
            tg.cancel_scope.cancel()
    finally:
        await writer.aclose()
        for fd in (to_peer_r, to_peer_w, from_peer_r, from_peer_w):
            if fd >= 0:
                os.close(fd)


async def test_the_opening_request_is_read_ahead_and_received_again_in_order() -> None:
    """The stdio front peeks at a client's first request to choose its protocol era; the session
    then receives everything from the start, except what came before the request beyond the
    limit (as mcp's own runner drops it)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    notes = [{"jsonrpc": "2.0", "method": f"notifications/n{i}"} for i in range(3)]
    opening = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    later = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    os.write(write_fd, b"".join(json.dumps(m).encode() + b"\n" for m in (*notes, opening, later)))
    os.close(write_fd)
    reader = LineReader(read_fd)
    try:
        with anyio.fail_after(5):
            first = await reader.opening_request(lead_limit=2)
            assert first is not None and first.method == "initialize"
            got = [await reader.receive() for _ in range(4)]
            with pytest.raises(anyio.EndOfStream):
                await reader.receive()
        assert [getattr(item.message, "method") for item in got] == [
            "notifications/n0", "notifications/n1", "initialize", "ping"]
        empty_r, empty_w = os.pipe()
        os.set_blocking(empty_r, False)
        os.close(empty_w)
        nothing = LineReader(empty_r)
        with anyio.fail_after(5):
            assert await nothing.opening_request(lead_limit=2) is None
        await nothing.aclose()
        os.close(empty_r)
    finally:
        await reader.aclose()
        os.close(read_fd)
