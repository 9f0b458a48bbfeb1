"""Console logins: a browser trades a token for a session cookie, and carries a CSRF token.

The cookie holds only a random session id (HttpOnly, SameSite=Strict); the session remembers the
role its token had and a CSRF token that every state-changing request must echo in `X-CSRF-Token`.
Sessions live in memory and expire; a restart logs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from gateway.access import Role

COOKIE = "gateway_console"
CSRF_HEADER = "x-csrf-token"
SESSION_KEY = "gateway.session"  # where the auth middleware leaves a browser's Session in the scope state
MAX_SESSIONS = 1000


@dataclass(slots=True)
class Session:
    role: Role
    identity: str
    expires: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self.csrf.encode())


class ConsoleSessions:
    def __init__(self, lifetime: float = 12 * 3600) -> None:
        self.lifetime = lifetime
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, role: Role, identity: str) -> tuple[str, Session]:
        """A new session for a token already checked; returns its cookie value and the session."""
        now = time.monotonic()
        while self._sessions and (len(self._sessions) >= MAX_SESSIONS
                                  or next(iter(self._sessions.values())).expires < now):
            self._sessions.popitem(last=False)  # the oldest first
        session_id = secrets.token_urlsafe(32)
        session = Session(role, identity, now + self.lifetime)
        self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        if session.expires < time.monotonic():
            del self._sessions[session_id or ""]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)
