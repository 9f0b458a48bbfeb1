"""An optional sandbox for servers registered at runtime: bubblewrap, from Debian's `bubblewrap` package.

The server sees the machine read-only (/tmp included: its TMPDIR is in its own directory), its own
directory writable, and only its own processes (a /proc of its own, so not the gateway's
environment). Reads are not confined: whatever
the gateway's user may read, the server may read. It keeps the network: remote APIs are what most
servers are for.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.config import ServerSpec

BWRAP = "bwrap"


def available() -> bool:
    return shutil.which(BWRAP) is not None


def sandboxed(spec: ServerSpec, workdir: Path) -> ServerSpec:
    """`spec` run under bwrap with `workdir` as its only writable place."""
    assert spec.command is not None
    work = str(workdir)
    (workdir / "tmp").mkdir(mode=0o700, exist_ok=True)
    # /tmp stays the host's, read-only: a private one would hide programs installed under it
    flags = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
             "--bind", work, work, "--chdir", spec.cwd or work,
             # without capabilities, even when the gateway runs as root: root could remount / writable
             "--cap-drop", "ALL", "--unshare-user-try",
             "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session"]
    return spec.model_copy(update={"command": shutil.which(BWRAP) or BWRAP,
                                   "args": [*flags, "--", spec.command, *spec.args],
                                   "env": {"HOME": work, "TMPDIR": f"{work}/tmp", **spec.env}, "cwd": work})


def shown_command(spec: ServerSpec) -> tuple[str, bool]:
    """The program a spec runs, and whether it runs sandboxed."""
    command = spec.command or ""
    if Path(command).name == BWRAP and "--" in spec.args:
        return spec.args[spec.args.index("--") + 1], True
    return command, False
