"""What Linux's /proc tells about processes, and the child subreaper: standard library only.

Elsewhere `AVAILABLE` is False, nothing here is called, and a backend's processes are its process
group, as far as the gateway can tell.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

AVAILABLE = sys.platform == "linux" and os.path.exists("/proc/self/stat")

_PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
_subreaper = False


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    # clock ticks after boot: with the pid, it names one process, even once the pid is reused
    start: int
    finished: bool  # a zombie: it has exited and waits for its parent to reap it


def read(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
        # "pid (command) state ppid pgrp session ... starttime ...": the command may hold anything
        fields = stat[stat.rindex(b")") + 2:].split()
        return Proc(pid, int(fields[1]), int(fields[3]), int(fields[19]), fields[0] in (b"Z", b"X"))
    except (OSError, ValueError, IndexError):
        return None


def processes() -> list[Proc]:
    """Every process now (a few milliseconds for a few hundred)."""
    return [proc for name in os.listdir("/proc") if name.isdigit() and (proc := read(int(name))) is not None]


def running(pid: int, start: int) -> bool:
    """Whether that process (not another that got its pid since) exists and has not exited."""
    proc = read(pid)
    return proc is not None and proc.start == start and not proc.finished


def environ_has(pid: int, entry: bytes) -> bool:
    """Whether `NAME=value` is in the environment the process was started with (readable for
    processes of our own user only, which are the only ones we could stop anyway)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return entry in file.read().split(b"\0")
    except OSError:
        return False


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            return file.read().strip()
    except OSError:
        return ""


def become_subreaper() -> bool:
    """Makes orphaned descendants our children rather than init's (Linux 3.4 and later), so that
    they can be found and stopped, and must be reaped by us. False where that is not possible."""
    global _subreaper
    if AVAILABLE and not _subreaper:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            pass
    return _subreaper


def is_subreaper() -> bool:
    return _subreaper
