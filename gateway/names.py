"""The one naming scheme for re-exported components: `<server><sep><name>`.

Every client accepts `^[a-zA-Z0-9_-]{1,64}$`, so names are sanitised and, when too long, shortened
with a stable hash suffix. The mapping is kept as a dict (exported -> original), which is what makes
it reversible; nothing ever parses an exported name back apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable

MAX_NAME = 64
MAX_SERVER_NAME = 40
VALID_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}\Z")  # \Z: "$" would let a trailing newline in
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*\Z")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def check_server_name(name: str, separator: str) -> str | None:
    """Returns what is wrong with a server name, or None when it is usable."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_SERVER_NAME:
        return f"is {len(name)} characters long; the limit is {MAX_SERVER_NAME}"
    if not _SERVER_NAME.match(name):
        return ("may only hold letters, digits, '_' and '-', and must start with a letter or digit "
                "(for example 'weather' or 'my-db')")
    if separator in name:
        return f"must not contain the name separator {separator!r}"
    if name == "pipeline":
        return "is reserved for the gateway's pipeline tools (pipeline__<name>)"
    return None


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def export_name(server: str, name: str, separator: str) -> str:
    """`server__name`, made valid for every client; deterministic for the same input."""
    full = f"{server}{separator}{name}"
    clean = _INVALID_CHARS.sub("_", full)
    if clean == full and len(clean) <= MAX_NAME:
        return clean
    # Anything altered carries a hash of the original, so two different originals never meet.
    suffix = "-" + _digest(full)
    return clean[: MAX_NAME - len(suffix)] + suffix


def build_index(entries: Iterable[tuple[str, str]], separator: str, reserved: Iterable[str] = (),
                chosen: Callable[[str, str], str | None] = lambda _server, _name: None
                ) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Maps exported name -> (server, original name); returns the collisions it had to resolve.
    Names an operator `chosen` are placed first, so a usual name never takes one away."""
    taken = set(reserved)
    index: dict[str, tuple[str, str]] = {}
    collisions: list[str] = []
    ordered = sorted(((chosen(server, name), server, name) for server, name in entries),
                     key=lambda entry: (entry[0] is None, entry[1], entry[2]))
    for wanted, server, name in ordered:
        exported = wanted or export_name(server, name, separator)
        if exported in taken or exported in index:
            other = index.get(exported)
            owner = f"'{other[1]}' of server '{other[0]}'" if other else "a gateway tool"
            renamed = export_name(server, f"{name}-{_digest(server + '/' + name)}", separator)
            collisions.append(f"'{name}' of server '{server}' would be exported as '{exported}', "
                              f"already used by {owner}; exported as '{renamed}' instead")
            exported = renamed
        index[exported] = (server, name)
    return index, collisions


_URI = re.compile(r"^([^:/]+://)(.*)$", re.DOTALL)
_NAMESPACED_URI = re.compile(r"^([^:/]+://)([A-Za-z0-9][A-Za-z0-9_-]*)/(.*)$|^([A-Za-z0-9][A-Za-z0-9_-]*)\+(.*)$",
                             re.DOTALL)


def namespace_uri(server: str, uri: str) -> str:
    """`scheme://path` -> `scheme://server/path`, the scheme FastMCP's own namespacing uses."""
    match = _URI.match(uri)
    return f"{match.group(1)}{server}/{match.group(2)}" if match else f"{server}+{uri}"


def split_uri(uri: str) -> tuple[str, str] | None:
    """The inverse of `namespace_uri`: (server, the backend's own URI), or None."""
    match = _NAMESPACED_URI.match(uri)
    if match is None:
        return None
    if match.group(1) is not None:
        return match.group(2), match.group(1) + match.group(3)
    return match.group(4), match.group(5)
