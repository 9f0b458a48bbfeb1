"""The shared store: replicas keep their runtime state in Redis and hear each other's changes.

Each section is a hash (`<prefix>:<section>`), one field per server, tool group or profile, holding
JSON; a replica writes only the fields it changed and then publishes on `<prefix>:changes`. Every
replica listens there, and on each message (and after every reconnection: a full comparison) reads
the hashes back and hands the fields that differ from what it knew to the gateway, which starts or
stops its own copy of a server, or applies a tool setting. While Redis cannot be reached the store
is degraded: the replica keeps serving with the state it has, and refuses changes it could not
share.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.store import Sections, StoreUnavailable
from gateway.store.file import Entries

logger = logging.getLogger("gateway.store")

SECTIONS = ("servers", "tools", "profiles")
TIMEOUT = 2.0  # seconds for any one exchange with Redis
RETRY = (0.2, 5.0)  # first and longest wait between reconnection attempts


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username + '@' if parts.username else ''}{parts.hostname}{f':{parts.port}' if parts.port else ''}"
    return urlunsplit(parts._replace(netloc=netloc))


class RedisStore:
    def __init__(self, url: str, prefix: str, path: Path) -> None:
        self.url = url
        self.prefix = prefix
        self.path = path
        self.problem: str | None = None
        self.on_remote_change: Callable[[Sections], Awaitable[None]] | None = None
        self.replica = uuid.uuid4().hex  # its own messages are not news to it
        self._client = aioredis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
                                               decode_responses=True)
        self._sections: dict[str, Callable[[], Any]] = {}
        self._known: dict[str, dict[str, str]] = {name: {} for name in SECTIONS}  # as Redis last had them
        self._loaded: dict[str, Any] = {}
        self._degraded: str | None = "not connected yet"
        self._lock = anyio.Lock()
        self.connected = anyio.Event()  # set once Redis answered; a test waits for it

    @property
    def where(self) -> str:
        return f"the shared store at {shown_url(self.url)}"

    @property
    def degraded(self) -> str | None:
        """Why changes are refused now, or None."""
        if self._degraded is None:
            return None
        return (f"{self.where} cannot be reached ({self._degraded}); this replica serves with the state it "
                f"has, and changes are refused until it is back")

    @property
    def work_root(self) -> Path:
        """Per replica (replicas may share a directory), removed when it stops."""
        return self.path.with_name(f".{self.path.stem}-work-{self.replica[:12]}")

    def _key(self, section: str) -> str:
        return f"{self.prefix}:{section}"

    # -- what the gateway asks ----------------------------------------------------------------

    def keep(self, section: str, current: Callable[[], Any]) -> Any:
        self._sections[section] = current
        return self._loaded.get(section)

    def load(self) -> Entries:
        servers = self._loaded.get("servers") or {}
        return {name: entry for name, entry in servers.items() if isinstance(entry, dict)}

    async def start(self) -> None:
        """Reads the stored state once, before the gateway restores it; unreachable, it starts empty
        (degraded) and the state arrives when Redis does."""
        try:
            with anyio.fail_after(TIMEOUT):
                fields = await self._read()
        except (RedisError, OSError, TimeoutError) as exc:
            self._degraded = _reason(exc)
            logger.error("%s", self.degraded)
            return
        self._known = fields
        self._loaded = _decoded(fields)
        self._degraded = None
        self.connected.set()

    async def save(self) -> None:
        if self._degraded is not None:
            raise StoreUnavailable(self.degraded)
        async with self._lock:
            known = {name: dict(fields) for name, fields in self._known.items()}
            pipe = self._client.pipeline(transaction=True)
            changed = False
            for section, current in self._sections.items():
                now = {str(k): json.dumps(v, sort_keys=True) for k, v in (current() or {}).items()}
                had = known.setdefault(section, {})
                updated = {k: v for k, v in now.items() if had.get(k) != v}
                gone = [k for k in had if k not in now]
                if updated:
                    pipe.hset(self._key(section), mapping=updated)
                if gone:
                    pipe.hdel(self._key(section), *gone)
                known[section] = now
                changed = changed or bool(updated or gone)
            if not changed:
                return
            pipe.publish(self._key("changes"), self.replica)
            try:
                with anyio.fail_after(TIMEOUT):
                    await pipe.execute()
            except (RedisError, OSError, TimeoutError) as exc:
                self._lost(exc)
                raise StoreUnavailable(f"{self.where} could not take the change ({_reason(exc)}); it was not "
                                       f"made") from None
            self._known = known

    # -- listening ----------------------------------------------------------------------------

    async def watch(self) -> None:
        """Runs for the gateway's life: hears other replicas' changes; after losing Redis, retries
        with a growing wait, and compares everything again once it is back."""
        wait = RETRY[0]
        while True:
            try:
                await self._listen()
            except (RedisError, OSError, TimeoutError) as exc:
                self._lost(exc)
            await anyio.sleep(wait)
            wait = min(wait * 2, RETRY[1])
            if self._degraded is None:
                wait = RETRY[0]

    async def _listen(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            with anyio.fail_after(TIMEOUT):
                await pubsub.subscribe(self._key("changes"))
            await self._resync()  # whatever changed while this replica was not listening
            if self._degraded is not None:
                logger.warning("%s is reachable again; changes are accepted", self.where)
            self._degraded = None
            self.connected.set()
            while True:
                with anyio.fail_after(TIMEOUT * 2):
                    message = await pubsub.get_message(timeout=TIMEOUT / 2)
                if message is None:
                    with anyio.fail_after(TIMEOUT):
                        await pubsub.ping()  # a Redis that vanished without closing the connection
                elif message.get("data") != self.replica:
                    await self._resync()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(TIMEOUT):
                await pubsub.aclose()

    async def _resync(self) -> None:
        async with self._lock:
            with anyio.fail_after(TIMEOUT):
                fields = await self._read()
            changes: dict[str, dict[str, Any]] = {}
            for section, now in fields.items():
                for key, text in _differences(self._known.get(section, {}), now).items():
                    if (value := _value(text)) is not _UNREADABLE:
                        changes.setdefault(section, {})[key] = value
            self._known = fields
        if changes and self.on_remote_change is not None:
            await self.on_remote_change(changes)

    async def _read(self) -> dict[str, dict[str, str]]:
        pipe = self._client.pipeline(transaction=True)
        for section in SECTIONS:
            pipe.hgetall(self._key(section))
        return dict(zip(SECTIONS, await pipe.execute()))

    def _lost(self, exc: BaseException) -> None:
        if self._degraded is None:
            self._degraded = _reason(exc)
            logger.error("%s", self.degraded)

    async def aclose(self) -> None:
        shutil.rmtree(self.work_root, ignore_errors=True)
        with anyio.CancelScope(shield=True), anyio.move_on_after(TIMEOUT):
            await self._client.aclose()


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


_UNREADABLE = object()


def _value(text: str | None) -> Any:
    """A field's JSON (None for a removed field); an unreadable one (written by hand, say) is left out."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        logger.error("a field of the shared store is not JSON and is ignored: %r", text[:100])
        return _UNREADABLE


def _decoded(fields: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {section: {k: value for k, v in values.items() if (value := _value(v)) is not _UNREADABLE}
            for section, values in fields.items()}


def _differences(before: dict[str, str], now: dict[str, str]) -> dict[str, str | None]:
    """The fields that changed: their new JSON, or None for those removed."""
    changed: dict[str, str | None] = {k: v for k, v in now.items() if before.get(k) != v}
    changed.update({k: None for k in before if k not in now})
    return changed
