"""Who an HTTP request is, as the front's authentication decided: the role and identity of its token."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

ACCESS_KEY = "gateway.access"  # where the auth middleware leaves an Access in the request's scope state
PROFILE_KEY = "gateway.profile"  # where the profile a request's path names (/p/<name>/...) is left


class Role(StrEnum):
    admin = "admin"  # an operator: may read and change everything, over MCP and the console
    client = "client"  # may use MCP; reads nothing of the console


@dataclass(frozen=True, slots=True)
class Access:
    role: Role
    identity: str  # "token:<id>" or "admin:<id>", never the token itself; "anonymous" without auth
    session: Any = None  # the console Session when a browser's cookie authenticated the request
    profile: str | None = None  # the one profile this credential reaches; None: the whole gateway


def path_profile(scope: Any) -> str | None:
    """The profile an HTTP request's path named (/p/<name>/...), as ProfilePaths left it; else None."""
    profile: str | None = scope.get("state", {}).get(PROFILE_KEY)
    return profile


def token_id(token: str) -> str:
    """A short, stable name for a token, for the audit trail: not enough of it to guess it from."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Credentials:
    """The tokens HTTP clients (MCP only) and operators (MCP and the console) present."""

    client_tokens: tuple[str, ...] = ()
    admin_tokens: tuple[str, ...] = ()
    profile_tokens: tuple[tuple[str, str], ...] = ()  # (token, profile): a client token bound to a profile

    @property
    def required(self) -> bool:
        return bool(self.client_tokens or self.admin_tokens or self.profile_tokens)

    def access_for(self, presented: str) -> Access | None:
        given = presented.encode()
        if not given:
            return None
        # compare against every token, so timing does not tell which one nearly matched
        admin = any([hmac.compare_digest(given, t.encode()) for t in self.admin_tokens])
        client = any([hmac.compare_digest(given, t.encode()) for t in self.client_tokens])
        bound = [name for token, name in self.profile_tokens if hmac.compare_digest(given, token.encode())]
        if admin:
            return Access(Role.admin, f"admin:{token_id(presented)}")
        if client:
            return Access(Role.client, f"token:{token_id(presented)}")
        if bound:
            return Access(Role.client, f"token:{token_id(presented)}", profile=bound[0])
        return None
