"""An optional sandbox for servers registered at runtime: bubblewrap, from Debian's `bubblewrap` package.

The server sees the machine read-only, its own directory writable, a private /tmp, and only its own
processes (a /proc of its own, so not the gateway's environment). Reads are not confined: whatever
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
    flags = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
             "--bind", work, work, "--chdir", spec.cwd or work,
             "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session"]
    return spec.model_copy(update={"command": shutil.which(BWRAP) or BWRAP,
                                   "args": [*flags, "--", spec.command, *spec.args],
                                   "env": {"HOME": work, **spec.env}, "cwd": work})


def shown_command(spec: ServerSpec) -> tuple[str, bool]:
    """The program a spec runs, and whether it runs sandboxed."""
    command = spec.command or ""
    if Path(command).name == BWRAP and "--" in spec.args:
        return spec.args[spec.args.index("--") + 1], True
    return command, False
