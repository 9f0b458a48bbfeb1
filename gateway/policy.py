"""Who may start what at runtime, and what must never be shown.

Backends from the config file are trusted. A backend registered by a client (an LLM) may only start
an allowlisted executable or reach an allowlisted URL prefix; it may not turn that executable into a
shell or code runner through its arguments, nor steer it through the environment.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.config import GatewaySettings, ServerSpec

REDACTED = "***"

# Arguments that make a common interpreter or launcher run code given inline.
INLINE_CODE_FLAGS = frozenset({"-c", "-e", "--eval", "-p", "--print", "-r", "--require", "--import",
                               "--call", "--command", "--exec", "--eval-command"})
# Environment variables that change what a process loads or runs.
RISKY_ENV = frozenset({"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH", "PYTHONSTARTUP",
                       "PYTHONHOME", "PYTHONINSPECT", "NODE_OPTIONS", "NODE_PATH", "BASH_ENV", "ENV",
                       "PERL5OPT", "PERL5LIB", "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "GIT_SSH_COMMAND",
                       "SHELLOPTS", "PS4", "PROMPT_COMMAND", "HOME", "TMPDIR", "npm_config_prefix"})
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "csh", "tcsh", "busybox"})


class PolicyError(Exception):
    pass


@dataclass(frozen=True)
class RegistrationPolicy:
    allow_commands: tuple[str, ...] = ()
    allow_urls: tuple[str, ...] = ()
    allow_env: frozenset[str] = frozenset()
    allow_any: bool = False

    @classmethod
    def from_settings(cls, settings: GatewaySettings, allow_any: bool = False) -> RegistrationPolicy:
        return cls(tuple(settings.allow_commands), tuple(settings.allow_urls), frozenset(settings.allow_env),
                   allow_any or settings.allow_any_command)

    def _allowed(self, command: str) -> bool:
        resolved = shutil.which(command) or command
        return any(fnmatch.fnmatchcase(candidate, pattern)
                   for pattern in self.allow_commands for candidate in (command, resolved))

    def check(self, spec: ServerSpec) -> None:
        """Raises PolicyError naming the rule that refused and the setting that would allow it."""
        if self.allow_any:
            return
        if spec.url:
            if not any(spec.url.startswith(prefix) for prefix in self.allow_urls):
                raise PolicyError(
                    f"connecting to '{redact_url(spec.url)}' at runtime is not allowed: it matches no "
                    f"prefix in gateway.allow_urls ({list(self.allow_urls) or 'empty'}). An operator can "
                    f"add the prefix there, or start the gateway with --allow-any-command.")
            return
        assert spec.command is not None
        if not self._allowed(spec.command):
            raise PolicyError(
                f"starting '{spec.command}' at runtime is not allowed: it matches no entry of "
                f"gateway.allow_commands ({list(self.allow_commands) or 'empty'}). An operator can add "
                f"it there, or start the gateway with --allow-any-command.")
        for arg in spec.args:
            flag = arg.split("=", 1)[0]
            if flag in INLINE_CODE_FLAGS or (os.path.basename(arg) in _SHELLS and not self._allowed(arg)):
                raise PolicyError(
                    f"argument '{arg}' is not allowed at runtime: it would make '{spec.command}' run code "
                    f"given inline or start a shell. Only an operator can register such a server, in "
                    f"the config file (or with --allow-any-command).")
        risky = sorted(k for k in spec.env if (k in RISKY_ENV or k.startswith(("LD_", "DYLD_")))
                       and k not in self.allow_env)
        if risky:
            raise PolicyError(
                f"setting {', '.join(risky)} in env is not allowed at runtime: it changes what the "
                f"process loads or runs. An operator can list it in gateway.allow_env.")


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


class Redactor:
    """Replaces every known secret value in text that leaves the gateway (answers and logs).

    What is secret is decided where values come from (`ServerSpec.secret_values`,
    `GatewayConfig.secret_values`): values from `${VAR}`, header values, tokens, URL credentials and
    env values whose names say they are secret."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self._ordered: list[str] = []  # longest first, so a secret inside another goes whole

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if len(v) >= MIN_SECRET} - self.secrets
        if new:
            self.secrets |= new
            self._ordered = sorted(self.secrets, key=len, reverse=True)

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
