"""Who may start what at runtime, and what must never be shown.

Backends from the config file are trusted. A backend registered by a client (an LLM) may only start
an allowlisted executable or reach an allowlisted URL prefix; everything else is refused.
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from gateway.config import GatewaySettings, ServerSpec

REDACTED = "***"


class PolicyError(Exception):
    pass


@dataclass(frozen=True)
class RegistrationPolicy:
    allow_commands: tuple[str, ...] = ()
    allow_urls: tuple[str, ...] = ()
    allow_any: bool = False

    @classmethod
    def from_settings(cls, settings: GatewaySettings, allow_any: bool = False) -> RegistrationPolicy:
        return cls(tuple(settings.allow_commands), tuple(settings.allow_urls),
                   allow_any or settings.allow_any_command)

    def check(self, spec: ServerSpec) -> None:
        if self.allow_any:
            return
        if spec.command:
            resolved = shutil.which(spec.command) or spec.command
            if not any(fnmatch.fnmatchcase(candidate, pattern)
                       for pattern in self.allow_commands for candidate in (spec.command, resolved)):
                raise PolicyError(
                    f"starting '{spec.command}' at runtime is not allowed: it matches no entry of "
                    f"gateway.allow_commands in the config ({list(self.allow_commands) or 'empty'}). "
                    f"An operator can add it there, or start the gateway with --allow-any-command.")
        elif spec.url and not any(spec.url.startswith(prefix) for prefix in self.allow_urls):
            raise PolicyError(
                f"connecting to '{redact_url(spec.url)}' at runtime is not allowed: it matches no prefix "
                f"in gateway.allow_urls in the config ({list(self.allow_urls) or 'empty'}). "
                f"An operator can add the prefix there, or start the gateway with --allow-any-command.")


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
