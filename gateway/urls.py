"""Which URLs a client may make the gateway reach: origins plus a path prefix, compared after parsing.

URLs are parsed with httpx2, the library the MCP client connects with, so the origin checked is
the origin reached. What a parser could read two ways (credentials in the authority, backslashes,
encoded slashes or dot segments, numeric hosts other than a plain IPv4 or IPv6 address) is refused
rather than normalised, and the URL handed on is the parsed one.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import httpx2

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$")
_NUMERIC_PART = re.compile(r"0x[0-9a-f]*|[0-9]+")  # inet_aton reads hosts of such parts as addresses: 127.1
_AMBIGUOUS_PATH = re.compile(r"%2f|%5c|%2e", re.I)
ANY_PORT = 0


class UrlProblem(ValueError):
    """A URL that is refused; the text says why and what to write instead."""


@dataclass(frozen=True)
class Target:
    """A parsed URL: what it reaches, and the text to connect to."""

    scheme: str
    host: str  # lowercase ASCII (IDNA), IPv6 without brackets
    port: int
    path: str
    url: str

    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class UrlRule:
    """One allowlist entry: an origin (`:*` for any port) and a path prefix matched by segments."""

    scheme: str
    host: str
    port: int
    path: str

    def allows(self, target: Target) -> bool:
        if (target.scheme, target.host) != (self.scheme, self.host):
            return False
        if self.port != ANY_PORT and target.port != self.port:
            return False
        prefix = self.path.rstrip("/")
        return target.path == prefix or target.path.startswith(prefix + "/")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "*" if self.port == ANY_PORT else str(self.port)
        return f"{self.scheme}://{host}:{port}{self.path}"


def parse_url(text: str) -> Target:
    """Parses an http(s) URL a client gave, or raises UrlProblem."""
    if "\\" in text:
        raise UrlProblem("a backslash in a URL is read differently by different parsers; use '/'")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise UrlProblem("spaces and control characters are not allowed in a URL")
    try:
        url = httpx2.URL(text)
    except (httpx2.InvalidURL, ValueError, TypeError) as exc:
        raise UrlProblem(f"not a valid URL ({exc})") from None
    if url.scheme not in _DEFAULT_PORTS:
        raise UrlProblem(f"scheme {url.scheme!r} is not allowed; use http or https")
    if url.userinfo:
        raise UrlProblem("credentials in a URL are not accepted; send them as bearer_token, api_key or "
                         "headers")
    if url.fragment:
        raise UrlProblem("a URL to connect to has no use for a '#fragment'")
    host = _check_host(url.raw_host.decode("ascii").lower())
    port = url.port or _DEFAULT_PORTS[url.scheme]
    if not 0 < port < 65536:
        raise UrlProblem(f"port {port} is out of range")
    raw_path = url.raw_path.decode("ascii").split("?", 1)[0] or "/"
    if _AMBIGUOUS_PATH.search(raw_path):
        raise UrlProblem("encoded '/', '\\' or '.' in a URL path are not accepted; write the path plainly")
    if any(segment in (".", "..") for segment in raw_path.split("/")):
        raise UrlProblem("'.' and '..' segments are not accepted in a URL path")
    return Target(url.scheme, host, port, raw_path, str(url))


def _check_host(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        # ::ffff:127.0.0.1 reaches 127.0.0.1: one address, one spelling
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return str(mapped or address)
    if all(_NUMERIC_PART.fullmatch(part) for part in host.rstrip(".").split(".")):
        raise UrlProblem(f"host {host!r} looks like an address in a non-standard form; write it as "
                         f"a plain IPv4 address (such as 127.0.0.1) or a name")
    if not _HOSTNAME.fullmatch(host):
        raise UrlProblem(f"host {host!r} is not a valid host name")
    return host.rstrip(".")


def parse_rule(entry: str) -> UrlRule:
    """An allowlist entry such as `https://mcp.example.com/mcp` or `http://127.0.0.1:*`."""
    any_port = re.match(r"^(https?://[^/]+):\*(/.*)?$", entry)
    text = f"{any_port.group(1)}{any_port.group(2) or '/'}" if any_port else entry
    try:
        target = parse_url(text)
    except UrlProblem as exc:
        raise UrlProblem(f"URL allowlist entry {entry!r}: {exc}") from None
    if "?" in target.url:
        raise UrlProblem(f"URL allowlist entry {entry!r}: give an origin and a path, without a query")
    return UrlRule(target.scheme, target.host, ANY_PORT if any_port else target.port, target.path)


def check_url(text: str, rules: list[UrlRule], setting: str) -> Target:
    """The parsed URL when a rule allows it; otherwise UrlProblem naming the setting."""
    target = parse_url(text)
    if not any(rule.allows(target) for rule in rules):
        allowed = ", ".join(map(str, rules)) or "none"
        raise UrlProblem(f"{target.origin()}{target.path} is not allowed by {setting} (allowed: {allowed}); "
                         f"an operator can add its origin and path there")
    return target


def is_loopback(host: str) -> bool:
    """Whether a connection to `host` stays on this machine's loopback (0.0.0.0 and :: do too)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")
    return address.is_loopback or address.is_unspecified
