"""JSON-RPC over non-blocking pipes, one message per line: the streams of the gateway's stdio front
(gateway/stdio_front.py) and of its link to each stdio backend (gateway/backends/stdio_link.py).

mcp's stdio transports pass every message through a memory stream and a task in each direction;
its server side also hops to a worker thread for each readline, write and flush, and its client
side joins its whole read buffer again for every chunk it reads (quadratic in a message's length:
relaying a 1 MB result spent more CPU there than in everything else). These streams are read and
written by the session itself, waiting on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types
import pydantic_core
from mcp import MCPError
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.message import SessionMessage

logger = logging.getLogger("gateway.backends")

READ_CHUNK = 1 << 16  # a bigger read buffer costs an mmap per read; large messages just take more reads
MAX_LINE = 64 << 20  # a longer message is dropped rather than buffered without end
SEND_PATIENCE = 30.0  # seconds a sender waits for a reader that has stopped reading


class LineReader:
    """A session's read stream: one parsed JSON-RPC message per line of a non-blocking pipe.

    The event loop reads the pipe as soon as it is readable, the way an asyncio protocol does, so
    the pipe is never reported twice for the same bytes, and stays registered while messages
    are consumed. It is set aside only when a whole message is waiting that nobody has asked
    for yet, and a reader waiting inside a long message is woken once its line is complete. A
    message longer than `MAX_LINE` is skipped and reported to the session as an error, and so are
    lines that are no JSON-RPC messages, each run of them that has arrived as one `UnreadableLines`.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no newline
        self._skipping = False  # inside a message over MAX_LINE, dropping it up to its newline
        self._eof = False
        self._closed = False
        self._registered = False
        self._waiter: asyncio.Future[None] | None = None
        self._pending: deque[SessionMessage | Exception] = deque()  # read ahead, to be received again
        self._expected: dict[int, Expected] = {}  # requests sent by `request`, by id

    async def receive(self) -> SessionMessage | Exception:
        if self._pending:
            return self._pending.popleft()
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._scanned = 0
                if self._skipping:
                    self._skipping = False
                    return ValueError(f"dropped a message of more than {MAX_LINE:,} bytes")
                if self._expected and await self._answered(line):
                    continue
                if line.strip():
                    message = _parse(line)
                    return self._unreadable(message) if isinstance(message, Exception) else message
                continue
            self._scanned = len(self._buffer)
            if self._scanned > MAX_LINE:
                self._buffer.clear()
                self._scanned = 0
                self._skipping = True
            if self._eof or self._closed:
                self._connection_closed()
                raise anyio.EndOfStream
            await self._more()

    # -- requests answered here, without the session (see `request`) ---------------------------

    def expect(self, request_id: int, on_progress: ProgressFn | None) -> Expected:
        expected = self._expected[request_id] = Expected(asyncio.get_running_loop().create_future(), on_progress)
        if self._eof or self._closed:
            self._connection_closed()
        return expected

    def forget(self, request_id: int) -> None:
        self._expected.pop(request_id, None)

    async def _answered(self, line: bytes) -> bool:
        """Whether `line` was the answer to, or progress of, a request sent by `request`."""
        message = _object(line)
        if message is None:
            return False
        if self._took_answer(message):
            return True
        params = message.get("params")
        if message.get("method") == "notifications/progress" and isinstance(params, dict) \
                and type(token := _as_id(params.get("progressToken"))) is int \
                and (expected := self._expected.get(token)) is not None and expected.on_progress is not None:
            progress, total, text = params.get("progress"), params.get("total"), params.get("message")
            if isinstance(progress, int | float):
                try:
                    await expected.on_progress(progress, total, text)
                except Exception:  # the caller's sink failing must not stop this backend's reading
                    logger.exception("a progress callback raised")
            return True
        return False

    def _took_answer(self, message: dict[str, Any]) -> bool:
        """Whether `message` answered a request sent by `request`, which now has it."""
        request_id = _as_id(message.get("id"))
        if type(request_id) is not int or not ("result" in message or "error" in message):
            return False
        expected = self._expected.pop(request_id, None)
        if expected is None:
            return False
        if not expected.answer.done():
            expected.answer.set_result(message)
        return True

    def _take_answers(self) -> None:
        """Answers to `request` that start the buffer, handed over as they are read: their
        requests resume without waking the session's reader first. Only while that reader waits,
        having taken everything before them, so nothing the backend sent earlier (a progress
        notification, a log message) is overtaken by the answer."""
        buffer = self._buffer
        while self._expected and (end := buffer.find(b"\n")) >= 0:
            message = _object(bytes(buffer[:end]))
            if message is None or not self._took_answer(message):
                return
            del buffer[: end + 1]
            self._scanned = 0

    def _connection_closed(self) -> None:
        closed = MCPError(code=mcp_types.CONNECTION_CLOSED, message="Connection closed")
        for expected in self._expected.values():
            if not expected.answer.done():
                expected.answer.set_exception(closed)
        self._expected.clear()

    async def opening_request(self, lead_limit: int) -> mcp_types.JSONRPCRequest | None:
        """The first request, left to be received again with up to `lead_limit` messages before it
        (the rest before it are dropped, as mcp's runner does); None when the stream ends first."""
        lead: deque[SessionMessage | Exception] = deque()
        try:
            while True:
                message = await self.receive()
                if isinstance(message, SessionMessage) and isinstance(message.message, mcp_types.JSONRPCRequest):
                    lead.append(message)
                    return message.message
                if len(lead) < lead_limit:
                    lead.append(message)
        except anyio.EndOfStream:
            return None
        finally:
            self._pending.extendleft(reversed(lead))

    def _unreadable(self, first: Exception) -> UnreadableLines:
        """`first` and the unreadable lines after it that have arrived already, as one report: a
        peer writing junk costs the session (which spawns a task per report) one report per read,
        not one per line. A message that ends the run is left for the next `receive`, which may
        find it is the answer to a request of `request`'s."""
        count, begin, buffer = 1, 0, self._buffer
        while (end := buffer.find(b"\n", begin)) >= 0:
            line = bytes(buffer[begin:end])
            if line[:1] != b"{" and (line := line.strip())[:1] != b"{":
                count += bool(line)  # a blank line is no junk
                begin = end + 1
                continue
            if not isinstance(_parse(line), Exception):
                break
            count += 1
            begin = end + 1
        del buffer[:begin]
        self._scanned = 0
        return UnreadableLines(count, first)

    async def _more(self) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        if not self._registered:
            loop.add_reader(self._fd, self._on_readable)
            self._registered = True
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        complete = b"\n" in chunk
        if not chunk:
            self._eof = True
            self._unregister()
        else:
            self._buffer += chunk
            waiting = self._waiter is not None and not self._waiter.done()
            if complete and waiting and self._expected and not (self._skipping or self._pending):
                self._take_answers()
                complete = b"\n" in self._buffer  # the reader is woken only for a whole line left
        # Whoever waits is woken when a line is complete (or too long to keep); while nobody
        # waits, reading pauses there, so a busy session is not handed more than it asked for.
        if self._eof or complete or len(self._buffer) > MAX_LINE:
            if self._waiter is None:
                self._unregister()
            elif not self._waiter.done():
                self._waiter.set_result(None)

    def _unregister(self) -> None:
        if self._registered:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._registered = False

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._closed = True
        self._connection_closed()
        self._unregister()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # the reader then finds the stream closed

    async def __aenter__(self) -> LineReader:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


class LineWriter:
    """A session's write stream onto a non-blocking pipe, one message per line, without a writer task.

    The first message sent during a turn of the event loop is written at once; the rest sent during
    that turn go out in a single write at its end, so under load the reader is woken about once per
    batch rather than once per message. A reader that stops reading holds senders back once
    `HIGH_WATER` bytes are waiting.
    """

    HIGH_WATER = 1 << 20

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._flushing = False  # a flush is scheduled, or waiting for the pipe to take more
        self._waiting = False  # registered with the loop until the pipe takes more
        self._drained: anyio.Event | None = None  # made when a sender waits for the pipe to take more
        self._broken = False
        self._closed = False

    async def send(self, item: SessionMessage) -> None:
        await self.send_line((item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode())

    async def send_line(self, line: bytes, patience: float = SEND_PATIENCE) -> None:
        """One message, already a line of JSON; TimeoutError when a reader that stopped reading
        has not made room for it within `patience` seconds (a transport bounds its own sends, see
        mcp's dispatcher)."""
        self.send_now(line)
        if len(self._buffer) > self.HIGH_WATER:
            with anyio.fail_after(patience):
                while len(self._buffer) > self.HIGH_WATER and not (self._broken or self._closed):
                    self._drained = self._drained or anyio.Event()
                    await self._drained.wait()

    def send_now(self, line: bytes) -> None:
        """One message, already a line of JSON, without waiting for a slow reader (for last words
        such as a cancellation)."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._broken:
            raise anyio.BrokenResourceError
        self._buffer += line
        if not self._flushing:
            self._flushing = True
            self._write()  # the first message of a turn goes at once, the rest of the turn's at its end
            asyncio.get_running_loop().call_soon(self._flush)

    def _write(self) -> None:
        if not self._buffer:
            return
        try:
            del self._buffer[: os.write(self._fd, self._buffer)]
        except BlockingIOError:
            pass
        except OSError:  # the reader is gone; the read side ends the session
            self._broken = True
            self._buffer.clear()

    def _flush(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        if self._waiting:
            loop.remove_writer(self._fd)
            self._waiting = False
        self._write()
        if self._buffer:
            loop.add_writer(self._fd, self._flush)
            self._waiting = True
            return
        self._flushing = False
        self._wake_senders()

    def _wake_senders(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._waiting:
            asyncio.get_running_loop().remove_writer(self._fd)
            self._waiting = False
        if self._buffer and not self._broken:  # last words, such as a cancellation: best effort
            try:
                os.write(self._fd, self._buffer)
            except OSError:
                pass
        self._buffer.clear()
        self._wake_senders()

    async def __aenter__(self) -> LineWriter:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(slots=True)
class Expected:
    """A request sent by `request`: its answer to come, and where its progress goes."""

    answer: asyncio.Future[dict[str, Any]]
    on_progress: ProgressFn | None


async def request(reader: LineReader, writer: LineWriter, request_id: int, method: str, params: dict[str, Any],
                  timeout: float, on_progress: ProgressFn | None) -> dict[str, Any]:
    """Sends a request and waits for its result, as mcp's session would (the same errors: the
    peer's error, a timeout, the connection closing), without passing through it: the answer is
    taken off the line as it is read, so the session never models, routes or validates it (the
    gateway validates a result once, for its own client). `request_id` comes from the session's
    own counter. A request given up (timed out or cancelled) is cancelled at the peer."""
    if on_progress is not None:
        params = {**params, "_meta": {**(params.get("_meta") or {}), "progressToken": request_id}}
    expected = reader.expect(request_id, on_progress)
    # The answer's wait is bounded by a timer that fails it, not by a cancel scope, which costs
    # several times as much on every request.
    timer = asyncio.get_running_loop().call_later(timeout, _expire, expected.answer)
    try:
        await writer.send_line(pydantic_core.to_json({"jsonrpc": "2.0", "id": request_id, "method": method,
                                                      "params": params}) + b"\n", patience=timeout)
        message = await expected.answer
    except TimeoutError:
        _give_up(writer, request_id, f"timed out after {timeout}s")
        raise MCPError(code=mcp_types.REQUEST_TIMEOUT, message=f"Request {method!r} timed out") from None
    except anyio.get_cancelled_exc_class():
        _give_up(writer, request_id, "caller cancelled")
        raise
    finally:
        timer.cancel()
        reader.forget(request_id)
    error = message.get("error")
    if error is not None:
        if not (isinstance(error, dict) and type(error.get("code")) is int and isinstance(error.get("message"), str)):
            raise MCPError(code=mcp_types.INTERNAL_ERROR, message=f"malformed error answer: {str(error)[:200]}")
        raise MCPError(code=error["code"], message=error["message"], data=error.get("data"))
    result = message.get("result")
    if not isinstance(result, dict):
        raise MCPError(code=mcp_types.INTERNAL_ERROR, message=f"malformed result: {str(result)[:200]}")
    return result


def _expire(answer: asyncio.Future[dict[str, Any]]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())


def _object(line: bytes) -> dict[str, Any] | None:
    try:
        message = pydantic_core.from_json(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _as_id(value: Any) -> Any:
    """A peer may echo the id 7 as "7"; mcp's session takes both as the same id, and so do we."""
    return coerce_request_id(value) if isinstance(value, str) else value


def _give_up(writer: LineWriter, request_id: int, reason: str) -> None:
    try:
        writer.send_now(pydantic_core.to_json({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                               "params": {"requestId": request_id, "reason": reason}}) + b"\n")
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass  # the connection is gone, and the request with it


class UnreadableLines(ValueError):
    """`count` lines from the peer that are no JSON-RPC messages, reported together; the first
    of them gave `first`."""

    def __init__(self, count: int, first: Exception) -> None:
        super().__init__(str(first) if count == 1 else f"{count} unreadable lines, the first: {first}")
        self.count, self.first = count, first


def _parse(line: bytes) -> SessionMessage | Exception:
    if line.lstrip()[:1] != b"{":  # every JSON-RPC message is an object: no need to ask the parser
        return ValueError(f"not a JSON-RPC message: {line[:100]!r}")
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:  # handed to the session, which reports it, as mcp's stdio client does
        return exc
