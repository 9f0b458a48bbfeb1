"""Who may start what at runtime, and what must never be shown.

Backends from the config file are trusted. A client (an LLM) registers a server only from the
operator's catalog, filling in typed parameters, or by a URL that `gateway.allow_urls` allows.
Free-form commands need `--allow-any-command`: an allowlisted interpreter or package runner runs
whatever its arguments name, so no list of flags can make a client-chosen command line safe.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
from pydantic import ValidationError

from gateway.config import GatewayConfig, ServerSpec
from gateway.server_catalog import ParamProblem, ServerTemplate
from gateway.urls import Target, UrlProblem, UrlRule, check_url, is_loopback, parse_rule, parse_url

REDACTED = "***"
RESOLVE_TIMEOUT = 2.0


class PolicyError(Exception):
    pass


@dataclass(frozen=True)
class RegistrationPolicy:
    catalog: Mapping[str, ServerTemplate]
    url_rules: tuple[UrlRule, ...] = ()
    allow_any: bool = False
    base_dir: Path = Path(".")
    listening: tuple[str, int] | None = None  # the gateway's own HTTP address, never a backend

    @classmethod
    def from_config(cls, config: GatewayConfig, allow_any: bool = False,
                    listening: tuple[str, int] | None = None) -> RegistrationPolicy:
        settings = config.gateway
        return cls(settings.catalog, tuple(parse_rule(e) for e in settings.allow_urls),
                   allow_any or settings.allow_any_command, config.base_dir(), listening)

    def from_template(self, template: str, params: dict[str, Any], env: dict[str, str]) -> ServerSpec:
        """The server the catalog's template describes for these values; PolicyError if they do not fit."""
        entry = self.catalog.get(template)
        if entry is None:
            raise PolicyError(f"unknown template '{template}'; the catalog has "
                              f"{', '.join(sorted(self.catalog)) or 'no templates (gateway.catalog is empty)'}")
        try:
            return ServerSpec.model_validate(entry.render(params, env, self.base_dir))
        except ParamProblem as exc:
            raise PolicyError(f"template '{template}': {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise PolicyError(f"template '{template}' gave an invalid server: {problems}") from None

    def check_free_form(self, spec: ServerSpec) -> ServerSpec:
        """A client's own server definition: a URL the allowlist allows, or anything with allow_any."""
        if self.allow_any:
            return spec
        if spec.command:
            raise PolicyError(
                "starting a command given by a client is not allowed: register from a template of the "
                f"catalog instead ({', '.join(sorted(self.catalog)) or 'gateway.catalog is empty'}). An "
                "operator can add a template to gateway.catalog, or start the gateway with --allow-any-command.")
        try:
            target = check_url(spec.url or "", list(self.url_rules), "gateway.allow_urls")
        except UrlProblem as exc:
            raise PolicyError(f"connecting to this URL at runtime is not allowed: {exc}") from None
        return spec.model_copy(update={"url": target.url})

    async def check_not_self(self, spec: ServerSpec) -> None:
        """Refuses a URL that leads back to the gateway itself, which would call itself in a loop."""
        if self.listening is None or not spec.url:
            return
        try:
            target = parse_url(spec.url)
        except UrlProblem as exc:
            raise PolicyError(f"cannot connect to this URL: {exc}") from None
        if await self._is_self(target):
            raise PolicyError(f"{target.origin()} is this gateway's own address; a gateway cannot be its "
                              f"own backend")

    async def _is_self(self, target: Target) -> bool:
        host, port = self.listening  # type: ignore[misc]
        if target.port != port:
            return False
        addresses = {target.host}
        if not _is_address(target.host):
            with anyio.move_on_after(RESOLVE_TIMEOUT):
                try:
                    addresses |= {str(info[4][0]) for info in await anyio.getaddrinfo(target.host, port)}
                except OSError:
                    pass
        if host in ("0.0.0.0", "::", ""):
            return any(_is_local(address) for address in addresses)
        return host in addresses or (is_loopback(host) and any(is_loopback(a) for a in addresses))

    def describe(self) -> str:
        """The catalog, for register_server's description."""
        return "\n".join(f"- {name}: {template.summary()}" for name, template in sorted(self.catalog.items()))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_local(address: str) -> bool:
    """Whether an address belongs to this machine: only then can a socket be bound to it."""
    if is_loopback(address):
        return True
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


def redact_url(url: str) -> str:
    """Drops credentials and query values, which is where URLs carry secrets."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username or parts.password:
        netloc = f"{REDACTED}@{netloc}"
    query = "&".join(f"{pair.split('=', 1)[0]}={REDACTED}" for pair in parts.query.split("&") if pair)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


MIN_SECRET = 8  # shorter values (ports, flags, short names) would blank out ordinary words
MAX_SECRETS = 4096
MAX_SECRET_BYTES = 1024 * 1024


class TooManySecrets(Exception):
    pass


class Redactor:
    """Replaces every known secret value in text that leaves the gateway (answers and logs).

    What is secret is decided where values come from (`ServerSpec.secret_values`,
    `GatewayConfig.secret_values`): values from `${VAR}`, header values, tokens, URL credentials and
    env values whose names say they are secret. Values belong to an owner (a runtime-registered
    server; None for the config), so a server's removal takes its values with it, and the total is
    bounded: clients cannot grow it without end."""

    def __init__(self) -> None:
        self._owned: dict[str | None, set[str]] = {}
        self._ordered: list[str] = []  # longest first, so a secret inside another goes whole

    @property
    def secrets(self) -> list[str]:
        return self._ordered

    def add(self, values: Iterable[str], owner: str | None = None) -> None:
        """Raises TooManySecrets, adding nothing, when the values would pass the bound."""
        new = {v for v in values if len(v) >= MIN_SECRET} - self._owned.get(owner, set())
        if not new:
            return
        merged = set(self._ordered) | new
        if owner is not None and (len(merged) > MAX_SECRETS or sum(map(len, merged)) > MAX_SECRET_BYTES):
            raise TooManySecrets(f"the gateway already holds {len(self._ordered)} secret values; no more can "
                                 f"be added at runtime (remove servers first)")
        self._owned.setdefault(owner, set()).update(new)
        self._ordered = sorted(merged, key=len, reverse=True)

    def discard(self, owner: str) -> None:
        if self._owned.pop(owner, None) is not None:
            self._ordered = sorted(set().union(*self._owned.values()), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, data: Any) -> Any:
        """`data` (any JSON value) with every string in it redacted."""
        if isinstance(data, str):
            return self(data)
        if isinstance(data, list):
            return [self.value(item) for item in data]
        if isinstance(data, dict):
            return {key: self.value(item) for key, item in data.items()}
        return data


class RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
