"""The leanest bridge we could write: a floor for what any relay process in front of a stdio
backend costs, measured beside the gateway (`cpu_split.py --lean`).

    python benchmarks/lean_relay.py stdio -- COMMAND ARGS...      # stdio in front
    python benchmarks/lean_relay.py http PORT -- COMMAND ARGS...  # streamable HTTP in front, /mcp
    python benchmarks/lean_relay.py asgi PORT -- COMMAND ARGS...  # the same as an ASGI app under uvicorn

It starts one stdio backend and relays JSON-RPC to it and back with nothing else: no checks, no
sessions, no policy, no progress or log routing, no timeouts. Over stdio it copies lines both ways
unparsed. Over HTTP (asyncio with uvloop, httptools' parser, keep-alive) it parses each POST body
to give the request an id of its own, writes the line, and answers with the backend's response as
`application/json`; notifications get 202. `asgi` does the same as an ASGI app served by uvicorn
(uvloop, httptools), the server the gateway runs on: the difference between the two is what
uvicorn and ASGI cost a relay. Only what a benchmark client sends is handled: it is a measuring
stick, not a server.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from itertools import count
from typing import Any

import httptools
import uvloop


async def spawn(command: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, limit=64 << 20)


async def relay_stdio(command: list[str]) -> None:
    backend = await spawn(command)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    assert backend.stdin is not None and backend.stdout is not None

    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while line := await src.readline():
            dst.write(line)

    await asyncio.gather(copy(reader, backend.stdin), copy(backend.stdout, writer))


class Backend:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.waiting: dict[int, asyncio.Future[dict]] = {}
        self.ids = count(1)

    async def read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            future = self.waiting.pop(message.get("id"), None)  # notifications are dropped
            if future is not None and not future.done():
                future.set_result(message)

    async def request(self, message: dict) -> dict:
        own = next(self.ids)
        theirs, message["id"] = message["id"], own
        future = self.waiting[own] = asyncio.get_running_loop().create_future()
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        answer = await future
        answer["id"] = theirs
        return answer


class HttpFront(asyncio.Protocol):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        message = json.loads(body) if body else None
        if not isinstance(message, dict) or "id" not in message:
            self.respond(202, b"")
        else:
            asyncio.get_running_loop().create_task(self.answer(message))

    async def answer(self, message: dict) -> None:
        self.respond(200, json.dumps(await self.backend.request(message), separators=(",", ":")).encode())

    def respond(self, status: int, body: bytes) -> None:
        assert self.transport is not None
        reason = b"OK" if status == 200 else b"Accepted"
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                % (status, reason, len(body)))
        self.transport.write(head + body)


async def relay_http(port: int, command: list[str]) -> None:
    backend = Backend(await spawn(command))
    reading = asyncio.get_running_loop().create_task(backend.read())
    server = await asyncio.get_running_loop().create_server(lambda: HttpFront(backend), "127.0.0.1", port)
    async with server:
        await reading  # the backend's exit ends the relay


async def relay_asgi(port: int, command: list[str]) -> None:
    import uvicorn

    backend = Backend(await spawn(command))
    reading = asyncio.get_running_loop().create_task(backend.read())

    async def app(scope: dict, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        request = json.loads(body) if body else None
        status, answer = (200, json.dumps(await backend.request(request), separators=(",", ":")).encode()) \
            if isinstance(request, dict) and "id" in request else (202, b"")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http="httptools", lifespan="off",
                                           log_level="warning"))
    serving = asyncio.get_running_loop().create_task(server.serve())
    await asyncio.wait([reading, serving], return_when=asyncio.FIRST_COMPLETED)


def main() -> None:
    args = sys.argv[1:]
    split = args.index("--")
    front, command = args[:split], args[split + 1:]
    os.environ.setdefault("FASTMCP_LOG_LEVEL", "ERROR")
    if front == ["stdio"]:
        asyncio.run(relay_stdio(command))
    elif len(front) == 2 and front[0] in ("http", "asgi"):
        uvloop.run((relay_http if front[0] == "http" else relay_asgi)(int(front[1]), command))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
