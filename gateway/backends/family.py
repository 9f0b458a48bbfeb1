"""A backend process's family: the process, its children and theirs, including those that left
its session or lost their parent (daemons). Stopping a backend stops its whole family.

On Linux a member is found by any of: being the backend process, being in its session (it is
started in a session of its own), carrying its token in the environment it was started with
(`MCP_GATEWAY_BACKEND`, inherited by every descendant that does not clear its environment), or
descending from a member. Elsewhere the family is the process group.

Every running family is kept here, for the whole process: the gateway's record of what it started
(see `gateway.backends.leftovers`) and the reaping of orphans are process-wide too.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio

from gateway.backends import proc

logger = logging.getLogger("gateway.backends")

MARKER = "MCP_GATEWAY_BACKEND"
POLL = 0.02  # seconds between looks at processes we are waiting for
REAP_INTERVAL = 1.0  # seconds between reapings of adopted orphans that have exited


@dataclass(eq=False)
class Family:
    leader: int
    start: int  # the leader's start time (0 without /proc)
    token: str
    process: subprocess.Popen[bytes] | None = None  # None for one read back from a run record

    def members(self, table: list[proc.Proc]) -> dict[int, proc.Proc]:
        """The family's live processes in `table` (a snapshot of /proc)."""
        entry = f"{MARKER}={self.token}".encode()
        # the session is named by the leader's pid: trusted unless another process has that pid now
        reused = any(p.pid == self.leader and p.start != self.start for p in table)
        session = None if reused else self.leader
        adopters = _adopters(table)
        roots = {}
        for p in table:
            # a process older than the leader cannot descend from it, which also rules out most
            # strangers that got a pid the family once had
            if p.finished or p.start < self.start:
                continue
            if (p.pid == self.leader and p.start == self.start) or p.sid == session \
                    or (p.ppid in adopters and proc.environ_has(p.pid, entry)):
                roots[p.pid] = p
        return with_descendants(table, roots)


def _adopters(table: list[proc.Proc]) -> set[int]:
    """Where an orphaned descendant of ours ends up: the gateway (as subreaper) or the nearest
    subreaper above it, init at the latest. Only such a process's children can be members that
    nothing but their token tells (reading an environment costs a tenth of a millisecond)."""
    parents = {p.pid: p.ppid for p in table}
    adopters, pid = {1}, os.getpid()
    while pid > 1 and pid not in adopters:
        adopters.add(pid)
        pid = parents.get(pid, 0)
    return adopters


def with_descendants(table: list[proc.Proc], roots: dict[int, proc.Proc]) -> dict[int, proc.Proc]:
    """`roots` and the live descendants of each, never the gateway itself."""
    me = os.getpid()
    children: defaultdict[int, list[proc.Proc]] = defaultdict(list)
    for p in table:
        if not p.finished and p.pid != me:
            children[p.ppid].append(p)
    found = {pid: p for pid, p in roots.items() if pid != me}
    pending = list(found)
    while pending:
        for child in children[pending.pop()]:
            if child.pid not in found:
                found[child.pid] = child
                pending.append(child.pid)
    return found


_running: dict[int, Family] = {}
_observers: list[Callable[[list[Family]], None]] = []


def running() -> list[Family]:
    return list(_running.values())


def observe(observer: Callable[[list[Family]], None]) -> None:
    """`observer` is told the running families whenever one starts or ends."""
    _observers.append(observer)


def _changed() -> None:
    for observer in _observers:
        observer(running())


def new_token() -> str:
    return secrets.token_hex(8)


def adopt(process: subprocess.Popen[bytes], token: str) -> Family:
    """Registers a backend process just started with `token` in its environment."""
    leader = proc.read(process.pid) if proc.AVAILABLE else None
    family = _running[process.pid] = Family(process.pid, leader.start if leader else 0, token, process)
    _changed()
    return family


def _release(process: subprocess.Popen[bytes]) -> None:
    if _running.pop(process.pid, None) is not None:
        _changed()


async def stop_family(process: subprocess.Popen[bytes], grace: float = 0.5, patience: float = 1.0) -> None:
    """Closes the backend's input, which a server obeys by exiting, and waits up to `grace` seconds
    for it to exit; then what is left of its family (children never see that end) gets SIGTERM,
    and after `patience` more seconds SIGKILL. Returns once all of it has exited."""
    family = _running.get(process.pid)
    if family is None or not proc.AVAILABLE:
        assert process.stdin is not None
        process.stdin.close()
        await _stop_group(process, grace, patience)
        _release(process)
        return
    # the family as it stands while the backend holds it together: its exit orphans its children
    seen = family.members(proc.processes())
    assert process.stdin is not None
    process.stdin.close()
    try:
        with anyio.move_on_after(grace):
            while process.poll() is None:
                await anyio.sleep(POLL)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = _left(family, seen)
            if not left:
                return
            _send(left, sig)
            with anyio.move_on_after(patience):
                while _still_running([process], left):
                    await anyio.sleep(POLL)
        if left := _left(family, seen):
            logger.warning("backend process %d: %s survived SIGKILL", process.pid, sorted(left))
    finally:
        process.poll()
        _release(process)
        reap_orphans()


def _left(family: Family, seen: dict[int, proc.Proc]) -> dict[int, proc.Proc]:
    """What of the family is still running: found again, or seen before and still there."""
    left = family.members(proc.processes())
    left.update((pid, p) for pid, p in seen.items() if pid not in left and proc.running(pid, p.start))
    return left


def _send(targets: dict[int, proc.Proc], sig: int) -> None:
    for pid, p in targets.items():
        if proc.running(pid, p.start):  # checked just before, so that a reused pid is spared
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def _still_running(processes: list[subprocess.Popen[bytes] | None], targets: dict[int, proc.Proc]) -> bool:
    for process in processes:
        if process is not None:
            process.poll()  # reaps a backend process, or it would stay a zombie
    reap_orphans()
    return any(proc.running(pid, p.start) for pid, p in targets.items())


async def _stop_group(process: subprocess.Popen[bytes], grace: float, patience: float) -> None:
    """Without /proc: the same steps for the backend's process group."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            try:
                os.killpg(process.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        with anyio.move_on_after(grace if sig is None else patience):
            while True:
                process.poll()  # reap the leader, or it stays in the group as a zombie
                try:
                    os.killpg(process.pid, 0)
                except (ProcessLookupError, PermissionError):
                    return
                await anyio.sleep(POLL)
    logger.warning("backend process group %d survived SIGKILL", process.pid)


def kill_now(families: Iterable[Family], strays: dict[int, proc.Proc] | None = None,
             patience: float = 1.0) -> dict[int, proc.Proc]:
    """SIGTERMs every process of these families (and `strays`), waits up to `patience` seconds,
    blocking (for use outside the event loop), then SIGKILLs what is left. Returns what it found."""
    families = list(families)
    if not proc.AVAILABLE:
        for family in families:
            try:
                os.killpg(family.leader, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if family.process is not None:
                family.process.wait()
        return {}
    table = proc.processes()
    found = dict(strays or {})
    for family in families:
        found.update(family.members(table))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _send(found, sig)
        deadline = time.monotonic() + patience
        while (left := _still_running([f.process for f in families], found)) and time.monotonic() < deadline:
            time.sleep(POLL)
        if not left:
            break
    for family in families:
        if family.process is not None:
            _release(family.process)
    return found


def reap_orphans() -> None:
    """Reaps exited children that the kernel handed to us as subreaper. A backend process's own
    Popen reaps it, which keeps its exit status."""
    if not proc.is_subreaper():
        return
    seen: set[int] = set()
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in seen:
            return
        seen.add(info.si_pid)
        family = _running.get(info.si_pid)
        if family is not None and family.process is not None:
            family.process.poll()
        else:
            try:
                os.waitpid(info.si_pid, os.WNOHANG)
            except ChildProcessError:
                pass


async def keep_reaping() -> None:
    """As subreaper: reaps adopted orphans as they exit, so that no zombies pile up."""
    while proc.is_subreaper():
        reap_orphans()
        await anyio.sleep(REAP_INTERVAL)
