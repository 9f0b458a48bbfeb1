"""FastMCP backend with predictable, misbehaving-on-demand tools for the gateway's tests.

python testing_server.py              -> stdio
python testing_server.py http PORT    -> streamable HTTP on 127.0.0.1:PORT/mcp
python testing_server.py sse PORT     -> SSE on 127.0.0.1:PORT/sse

TEST_BACKEND_CRASH_ON_START=1 makes it exit with status 3 before serving, and
TEST_BACKEND_CRASH_ON_START_IF=PATH does so when PATH exists (a backend that starts once, then
fails on its restarts);
TEST_BACKEND_START_DELAY=SECONDS delays serving;
TEST_BACKEND_START_GATE=PATH holds serving, after the imports, until PATH exists (a start that
the test ends when it likes, and that then takes a moment whatever the machine's load);
TEST_BACKEND_CANCEL_LOG=FILE records cancelled slow/hang calls, one line each.
"""

from __future__ import annotations

import asyncio
import io
import os
import struct
import subprocess
import sys
import time
import warnings
import wave
import zlib
from typing import Any

CRASH_ON_START_MESSAGE = "testing backend: refusing to start (TEST_BACKEND_CRASH_ON_START)"

# Decided before the slow imports, so a backend that fails to start fails fast even on a busy machine.
_crash_marker = os.environ.get("TEST_BACKEND_CRASH_ON_START_IF")
if os.environ.get("TEST_BACKEND_CRASH_ON_START") == "1" or (_crash_marker and os.path.exists(_crash_marker)):
    if "API_TOKEN" in os.environ:  # like a backend that logs its configuration, secrets and all
        sys.stderr.write(f"testing backend: API_TOKEN={os.environ['API_TOKEN']}\n")
    sys.stderr.write(CRASH_ON_START_MESSAGE + "\n")
    sys.stderr.flush()
    sys.exit(3)

# Stands in for a backend with a slow start (a big import, a cold npx cache); before the imports,
# so that the delay is the same whatever the machine's load.
time.sleep(float(os.environ.get("TEST_BACKEND_START_DELAY", "0")))

# fastmcp reads its log level at import time; failing tools would otherwise print tracebacks.
os.environ.setdefault("FASTMCP_LOG_LEVEL", "ERROR")

from mcp_types import EmbeddedResource, LoggingLevel, TextContent, TextResourceContents

from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools import ToolResult
from fastmcp.utilities.types import Audio, Image

# ctx.log() on a 2026-07-28 connection warns that the logging capability is deprecated; the
# message is still delivered, and the warning would only add stderr noise to every test.
warnings.filterwarnings("ignore", message="The logging capability is deprecated")

CRASH_MESSAGE = "testing backend: crashing on purpose"
STRUCTURED = {"answer": 42, "items": [1, 2, 3]}

from fastmcp.server.middleware import Middleware  # noqa: E402


class ListingCounter(Middleware):
    """Counts the tools/list requests this backend answers (see the `listings` tool)."""

    count = 0

    async def on_list_tools(self, context: Any, call_next: Any) -> Any:
        ListingCounter.count += 1
        return await call_next(context)


mcp = FastMCP("testing", instructions="Deterministic test backend for mcp-gateway.", middleware=[ListingCounter()])

# Popen objects must stay referenced: a collected Popen would not be reaped and the test could
# not tell "grandchild survived" from "grandchild never ran".
_children: list[subprocess.Popen[bytes]] = []


def _tiny_png() -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data))
        return struct.pack(">I", len(data)) + tag + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one red pixel
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _tiny_wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * 80)  # 10 ms of silence
    return buffer.getvalue()


PNG_BYTES = _tiny_png()
WAV_BYTES = _tiny_wav()


def _record_cancel(line: str) -> None:
    path = os.environ.get("TEST_BACKEND_CANCEL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


@mcp.tool
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@mcp.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool
async def slow(seconds: float, ctx: Context) -> str:
    """Sleep for the given number of seconds, then answer."""
    # tells a watching test the call has reached the backend
    await ctx.report_progress(0, seconds, "started")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _record_cancel(f"slow {seconds} cancelled")
        raise
    return f"slept {seconds}"


_in_flight: dict[str, int] = {}


@mcp.tool
async def crowd(key: str, seconds: float) -> int:
    """Sleep for the given number of seconds; answer the most calls with this key seen in flight at once."""
    _in_flight[key] = _in_flight.get(key, 0) + 1
    peak = _in_flight[key]
    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            peak = max(peak, _in_flight[key])
            await asyncio.sleep(min(left, 0.02))
        return max(peak, _in_flight[key])
    finally:
        _in_flight[key] -= 1


@mcp.tool
async def hang() -> str:
    """Never answer (until cancelled)."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        _record_cancel("hang cancelled")
        raise
    return "unreachable"


_flaky_calls: dict[str, int] = {}


@mcp.tool
def flaky(key: str, failures: int) -> str:
    """Fail the first `failures` calls made with this key, then succeed."""
    _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if _flaky_calls[key] <= failures:
        raise ToolError(f"flaky failure {_flaky_calls[key]} of {failures} for {key!r}")
    return f"ok after {_flaky_calls[key]} calls"


@mcp.tool
def flood(kb: int) -> str:
    """Write `kb` kilobytes to stderr, then answer."""
    line = "testing backend: flooding stderr " + "x" * 990 + "\n"
    for _ in range(kb):
        sys.stderr.write(line)
    sys.stderr.flush()
    return f"wrote {kb} KB to stderr"


def _wire() -> int:
    """The MCP channel's descriptor. mcp's stdio server moves the channel off fd 1 and points fd 1
    at stderr, so that stray prints cannot corrupt it; these tools mean to."""
    from mcp.server import stdio

    claim = stdio._claims.get(1)
    return claim.private_fd if claim is not None and claim.private_fd is not None else 1


@mcp.tool
def garbage() -> str:
    """Write a line that is not JSON-RPC to stdout (the MCP channel), then answer."""
    os.write(_wire(), b"this is not json-rpc\n")
    return "wrote garbage"


@mcp.tool
def big(kb: int) -> str:
    """Return `kb` kilobytes of text."""
    return "y" * (kb * 1024)


@mcp.tool
def big_structured(kb: int) -> ToolResult:
    """Return a one-word text with `kb` kilobytes of structured content beside it."""
    return ToolResult(content=[TextContent(type="text", text="summary")], structured_content={"data": "y" * (kb * 1024)})


@mcp.tool
async def churn(times: int) -> int:
    """Send `times` tools/list_changed notifications at once, as a misbehaving server might."""
    import mcp_types

    from fastmcp.server.dependencies import get_context

    ctx = get_context()
    for _ in range(times):
        await ctx.send_notification(mcp_types.ToolListChangedNotification())
    return times


@mcp.tool
def listings() -> int:
    """How many tools/list requests this backend has answered."""
    return ListingCounter.count


@mcp.tool
async def add_tool(name: str, ctx: Context) -> str:
    """Add a tool named `name` and tell the client the tool list changed."""
    import mcp_types

    def added() -> str:
        return f"I am {name}"

    mcp.tool(added, name=name)
    await ctx.send_notification(mcp_types.ToolListChangedNotification())
    return f"added {name}"


@mcp.tool
def crash() -> str:
    """Kill the backend process abruptly, without answering."""
    sys.stderr.write(CRASH_MESSAGE + "\n")
    sys.stderr.flush()
    os._exit(1)


@mcp.tool
def fail(message: str) -> str:
    """Fail with the given message as a tool error."""
    raise ToolError(message)


@mcp.tool
async def progress(ctx: Context, steps: int = 3) -> str:
    """Report progress `steps` times, logging each step."""
    for i in range(steps):
        await ctx.info(f"progress step {i}")
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await asyncio.sleep(0.01)
    return f"done {steps} steps"


@mcp.tool
async def log(ctx: Context, message: str, level: LoggingLevel = "info") -> str:
    """Send a log message to the client at the given level."""
    await ctx.log(message, level=level)
    return f"logged at {level}"


@mcp.tool
async def chatter(ctx: Context, tag: str, times: int = 5, pause: float = 0.02) -> str:
    """Send `times` log messages naming `tag`, `pause` seconds apart, then answer with `tag`."""
    for i in range(times):
        await ctx.info(f"{tag} line {i}")
        await asyncio.sleep(pause)
    return tag


@mcp.tool
def image() -> Image:
    """Return a 1x1 PNG image."""
    return Image(data=PNG_BYTES, format="png")


@mcp.tool
def audio() -> Audio:
    """Return 10 ms of silent WAV audio."""
    return Audio(data=WAV_BYTES, format="wav")


@mcp.tool
def embedded() -> EmbeddedResource:
    """Return an embedded text resource."""
    contents = TextResourceContents(
        uri="test://embedded", mime_type="text/plain", text="embedded text"
    )
    return EmbeddedResource(type="resource", resource=contents)


@mcp.tool
def structured() -> dict[str, Any]:
    """Return a fixed object, so the result carries structured content."""
    return dict(STRUCTURED)


@mcp.tool
def mixed() -> ToolResult:
    """Return text, an image and structured content in one result."""
    return ToolResult(
        content=[
            TextContent(type="text", text="mixed result"),
            Image(data=PNG_BYTES).to_image_content(),
        ],
        structured_content=dict(STRUCTURED),
    )


@mcp.tool
def pid() -> int:
    """Return the backend's process id."""
    return os.getpid()


# Run by an intermediate process that exits at once: the sleeper it leaves is orphaned, in a session
# of its own, the way a daemon leaves whoever started it.
_DAEMONIZE = ("import subprocess, sys\n"
              "print(subprocess.Popen(['sleep', sys.argv[1]], start_new_session=True, stdin=subprocess.DEVNULL,\n"
              "                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")


@mcp.tool
def spawn_child(seconds: float = 60, new_session: bool = False, orphaned: bool = False) -> int:
    """Start a `sleep` grandchild process and return its pid. `new_session`: it calls setsid(), leaving
    the backend's session and process group; `orphaned`: also its parent exits at once, as a daemon's does."""
    if orphaned:
        starter = subprocess.run([sys.executable, "-c", _DAEMONIZE, str(seconds)], capture_output=True, check=True)
        return int(starter.stdout)
    child = subprocess.Popen(["sleep", str(seconds)], start_new_session=new_session)
    _children.append(child)
    return child.pid


@mcp.tool
async def junk(kb: int = 2048, seconds: float = 2.0) -> str:
    """Write `kb` kilobytes of `x` lines (not JSON-RPC) to stdout, the MCP channel, spread over `seconds`."""
    piece = b"x\n" * 2048  # 4 KB: one pipe write, never split by the server's own messages
    pieces = kb // 4
    for i in range(pieces):
        os.write(_wire(), piece)
        if i % 16 == 15:
            await asyncio.sleep(seconds * 16 / pieces)
    return f"wrote {pieces * 4} KB of junk"


@mcp.tool
def env(name: str) -> str | None:
    """Return an environment variable of the backend process, or null when unset."""
    return os.environ.get(name)


@mcp.tool
def workdir() -> dict:
    """Return the backend's working directory, what it holds, its environment's names and its arguments."""
    return {"cwd": os.getcwd(), "entries": sorted(os.listdir(".")), "env": sorted(os.environ), "argv": sys.argv[1:]}


@mcp.tool
def touch(path: str) -> str:
    """Create the file at `path`: 'ok', or why not."""
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return "ok"


@mcp.tool
def read_text(path: str) -> str:
    """The text of the file at `path` (its first 4 KB), or why it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4096).decode(errors="replace")
    except OSError as exc:
        return f"error: {exc.strerror or exc}"


@mcp.resource("test://info")
def info() -> str:
    return "testing backend"


@mcp.resource("test://items/{item_id}")
def item(item_id: str) -> str:
    return f"item {item_id}"


@mcp.resource("test://slow/{seconds}")
async def slow_resource(seconds: str) -> str:
    await asyncio.sleep(float(seconds))
    return f"slept {seconds}"


@mcp.resource("test://big/{kb}")
def big_resource(kb: str) -> str:
    return "y" * (int(kb) * 1024)


@mcp.prompt
def greet(name: str) -> str:
    """Greet someone by name."""
    return f"Hello, {name}!"


def main(argv: list[str]) -> None:
    gate = os.environ.get("TEST_BACKEND_START_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.02)
    mode = argv[0] if argv else "stdio"
    if mode == "stdio" and (len(argv) <= 1 or argv[1] == "--"):  # what follows "--" is only shown by workdir
        mcp.run(show_banner=False)
    elif mode in ("http", "sse") and len(argv) == 2 and argv[1].isdigit():
        mcp.run(transport=mode, host="127.0.0.1", port=int(argv[1]), show_banner=False)
    else:
        raise SystemExit("usage: python testing_server.py [stdio [-- ARGS...] | http PORT | sse PORT]")


if __name__ == "__main__":
    main(sys.argv[1:])
