"""What a gateway run leaves behind when it cannot stop its backends itself (SIGKILL, the OOM
killer): the next start on the same state file stops it.

Each run keeps a record of its running backend processes, `<state file>.pids/<gateway pid>.json`
(mode 0600): the gateway's pid and start time, and each backend's pid, start time and family token
(see `gateway.backends.family`). A clean exit deletes it. A start finds the records of runs that are
gone, stops whatever of their families still runs, and says so in the log. Backend processes end
by themselves when a killed gateway's pipes close; their children are what this is for.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from gateway.backends import family, proc

logger = logging.getLogger("gateway.backends")


class RunRecord:
    """This run's file, rewritten whenever a backend process starts or ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"{os.getpid()}.json"
        me = proc.read(os.getpid())
        self._header = {"boot": proc.boot_id(), "gateway": [os.getpid(), me.start if me else 0]}
        self._failed = False

    def write(self, families: list[family.Family]) -> None:
        if not families:
            self.remove()
            return
        record = {**self._header, "backends": [[f.leader, f.start, f.token] for f in families]}
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            # a fresh file, created exclusively: no link planted at a known name is followed; no
            # fsync: a machine that goes down takes the processes with it
            fd, temporary = tempfile.mkstemp(prefix=f".{os.getpid()}.", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "w") as file:
                    json.dump(record, file)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as exc:
            if not self._failed:  # once: the state file's own errors say the rest
                logger.warning("cannot keep the record of started processes in %s: %s", self.directory, exc)
            self._failed = True

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.directory.rmdir()  # when no other run keeps a record there
        except OSError:
            pass


def record_directory(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".pids")


def stop_leftovers(directory: Path) -> None:
    """Stops what runs that are gone left running, and deletes their records. A record of a run
    that still runs (another gateway on the same state file) is left alone."""
    if not proc.AVAILABLE or not directory.is_dir():
        return
    for path in sorted(directory.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            gateway_pid, gateway_start = record["gateway"]
            families = [family.Family(pid, start, token) for pid, start, token in record["backends"]]
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("ignoring an unreadable record of started processes: %s", path)
            continue
        this_boot = record.get("boot") == proc.boot_id()  # after a reboot nothing of it can be running
        if this_boot and proc.running(gateway_pid, gateway_start):
            continue  # another gateway on the same state file
        if this_boot and (stopped := family.kill_now(families)):
            logger.warning("stopped %d processes left running by gateway %d, which did not exit cleanly "
                           "(record %s): pids %s", len(stopped), gateway_pid, path,
                           ", ".join(map(str, sorted(stopped))))
        path.unlink(missing_ok=True)


def begin(state_file: Path) -> None:
    """At the gateway's start, before any backend: stops what earlier runs left, makes the gateway
    the subreaper of its backends' orphans, and keeps this run's record from now on."""
    directory = record_directory(state_file)
    stop_leftovers(directory)
    proc.become_subreaper()
    if proc.AVAILABLE:
        family.observe(RunRecord(directory).write)


def end() -> None:
    """At the gateway's exit, after its backends were stopped: stops whatever is left, such as an
    orphan the gateway adopted that no backend's family claimed (one that cleared its environment)."""
    strays: dict[int, proc.Proc] = {}
    if proc.is_subreaper():
        table = proc.processes()
        me = os.getpid()
        strays = family.with_descendants(table, {p.pid: p for p in table if p.ppid == me and not p.finished})
    family.kill_now(family.running(), strays)
    family.reap_orphans()
