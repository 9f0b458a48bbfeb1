"""The gateway as an OAuth 2.1 resource server (MCP authorization, 2025-11-25 and later): verifies
access tokens (JWTs) an external authorization server issued, against the issuer's published keys,
and describes this protected resource (RFC 9728) so that clients can find that server."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import anyio
import httpx2
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExceededSizeError, JoseError
from joserfc.jwk import Key, KeySet
from joserfc.jws import JWSRegistry
from joserfc.util import json_b64decode

from gateway.access import Access, Role
from gateway.config import OAuthSettings

logger = logging.getLogger("gateway.oauth")

WELL_KNOWN = "/.well-known/oauth-protected-resource"
# Asymmetric signatures only: a shared-secret (HS*) token could be forged by anyone holding the
# secret, which a resource server must never be; "none" is no signature at all. EdDSA is left out
# as joserfc warns on every use of it (RFC 9864 replaced it by Ed25519/Ed448).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "Ed25519", "Ed448")
LEEWAY = 60.0  # seconds of clock skew allowed between the issuer and this machine
NOT_A_JWT = "the token is not a JWT"
_MAX_SUBJECT = 200  # an identity goes into logs and the audit trail: a subject is cut to this


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a token is not accepted, as the HTTP answer should say it."""

    status: int  # 401 (a bad token), 403 (a good token lacking a scope) or 503 (the keys are unreachable)
    error: str  # the RFC 6750 error code: invalid_token, insufficient_scope; temporarily_unavailable for 503
    reason: str  # for the person holding the token: what is wrong, in words they can act on
    scope: str | None = None  # with insufficient_scope: the scope that was missing


def _invalid(reason: str) -> Refused:
    return Refused(401, "invalid_token", reason)


def metadata_url(resource: str) -> str:
    """Where the metadata of a resource is served: its origin, the well-known path, then its path
    (RFC 9728, section 3.1)."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{parts.path.rstrip('/')}"


class IssuerKeys:
    """The issuer's key set, fetched when first needed and kept: fetched again after `ttl`, or
    when a token names a key the set lacks (the issuer rotated its keys), but never more often
    than every `min_interval` seconds, so that tokens naming made-up keys cannot make the gateway
    hammer the issuer (while no key could be fetched yet, every `retry_interval` seconds). Every
    fetch is bounded by `timeout`."""

    def __init__(self, uri: str, client: httpx2.AsyncClient, *, ttl: float = 600.0, min_interval: float = 30.0,
                 retry_interval: float = 5.0, timeout: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.uri = uri
        self.client = client
        self.ttl, self.min_interval, self.retry_interval, self.timeout = ttl, min_interval, retry_interval, timeout
        self.monotonic = monotonic
        self._keys: KeySet | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._problem: str | None = None  # why the last fetch failed; None once one succeeds
        self._lock = anyio.Lock()

    async def candidates(self, kid: str | None, alg: str) -> list[Key] | Refused:
        """The keys that may have signed a token with this header."""
        if self._wants_fetch(kid):
            async with self._lock:
                if self._wants_fetch(kid):  # unless a request that held the lock fetched them meanwhile
                    await self._fetch()
        if self._keys is None:
            return self._unreachable()
        keys = [key for key in self._keys if (kid is None or key.kid == kid) and _may_verify(key, alg)]
        if keys:
            return keys
        if self._problem is not None:
            return self._unreachable()  # the key may well be among those that could not be fetched
        if kid is None:
            return _invalid(f"none of the issuer's keys at {self.uri} can verify an {alg} signature")
        return _invalid(f"the token was signed with key {_quoted(kid)}, which is not among the issuer's keys "
                        f"at {self.uri}")

    def _unreachable(self) -> Refused:
        return Refused(503, "temporarily_unavailable",
                       f"the issuer's keys at {self.uri} could not be fetched: {self._problem}")

    def _wants_fetch(self, kid: str | None) -> bool:
        now = self.monotonic()
        since = now - self._attempted_at
        if self._keys is None:
            return since >= self.retry_interval
        stale = now - self._fetched_at >= self.ttl
        unknown = kid is not None and all(key.kid != kid for key in self._keys)
        return (stale or unknown) and since >= self.min_interval

    async def _fetch(self) -> None:
        self._attempted_at = self.monotonic()
        problem: str | None = f"no answer within {self.timeout:g} s"
        with anyio.move_on_after(self.timeout):
            problem = await self._get()
        if problem is None:
            return
        self._problem = problem
        # keys fetched before stay in use: an issuer briefly down should not lock every client out
        logger.warning("the issuer's keys at %s could not be fetched: %s", self.uri, problem)

    async def _get(self) -> str | None:
        """Fetches the key set; None when done, else what went wrong."""
        try:
            response = await self.client.get(self.uri, headers={"Accept": "application/json"})
        except httpx2.HTTPError as exc:
            return str(exc) or type(exc).__name__
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        try:
            keys = KeySet.import_key_set(response.json())
        except (ValueError, TypeError, KeyError, AttributeError, JoseError) as exc:
            return f"not a JSON Web Key Set ({exc or type(exc).__name__})"
        self._keys, self._fetched_at, self._problem = keys, self.monotonic(), None
        return None


def _may_verify(key: Key, alg: str) -> bool:
    return key.get("use") in (None, "sig") and key.get("alg") in (None, alg)


class OAuthVerifier:
    """Turns a presented access token into an Access, or says why not. Owns the HTTP client that
    fetches the issuer's keys: `async with` it, or `aclose()` it."""

    def __init__(self, settings: OAuthSettings, *, clock: Callable[[], float] = time.time,
                 **key_options: Any) -> None:
        self.settings = settings
        self.client = httpx2.AsyncClient(follow_redirects=False)
        self.keys = IssuerKeys(settings.jwks_uri, self.client, **key_options)
        self.clock = clock
        self._registry = JWSRegistry(algorithms=ALGORITHMS, strict_check_header=False)

    async def __aenter__(self) -> OAuthVerifier:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def verify(self, token: str) -> Access | Refused:
        header = _header(token)
        if header is None:
            return _invalid(NOT_A_JWT)
        alg = header.get("alg")
        if alg == "none":
            return _invalid("the token is unsigned (alg 'none'); only tokens signed by the issuer are accepted")
        if alg not in ALGORITHMS:
            return _invalid(f"the token is signed with {_quoted(alg)}; only asymmetric signatures "
                            f"({', '.join(ALGORITHMS)}) are accepted")
        kid = header.get("kid")
        keys = await self.keys.candidates(kid if isinstance(kid, str) else None, alg)
        if isinstance(keys, Refused):
            return keys
        claims = self._verified_claims(token, keys)
        if isinstance(claims, Refused):
            return claims
        return self._access(claims)

    def _verified_claims(self, token: str, keys: list[Key]) -> dict[str, Any] | Refused:
        for key in keys:
            try:
                return jwt.decode(token, key, registry=self._registry).claims
            except BadSignatureError:
                continue
            except ExceededSizeError:
                return _invalid("the token is too large")
            except JoseError as exc:  # e.g. an EC key for an RS256 token; another key may fit
                logger.debug("key %s does not verify the token: %s", key.kid, exc)
                continue
        return _invalid("the token's signature does not verify against the issuer's keys")

    def _access(self, claims: dict[str, Any]) -> Access | Refused:
        settings = self.settings
        issuer = claims.get("iss")
        if issuer != settings.issuer:
            return _invalid(f"the token was issued by {_quoted(issuer)}, not '{settings.issuer}'"
                            if issuer is not None else
                            f"the token names no issuer ('iss'); tokens from '{settings.issuer}' are accepted")
        audiences = claims.get("aud")
        given = [audiences] if isinstance(audiences, str) else audiences if isinstance(audiences, list) else []
        if not set(settings.audiences) & {a for a in given if isinstance(a, str)}:
            wanted = " or ".join(f"'{a}'" for a in settings.audiences)
            return _invalid(f"the token is for audience {', '.join(_quoted(a) for a in given)}, not {wanted}"
                            if given else f"the token names no audience ('aud'); {wanted} is accepted")
        problem = self._time_problem(claims)
        if problem:
            return _invalid(problem)
        scopes = _scopes(claims)
        for scope in settings.required_scopes:
            if scope not in scopes:
                return Refused(403, "insufficient_scope", f"the token lacks the scope '{scope}'", scope)
        subject = claims.get("sub") or claims.get("client_id")
        if not isinstance(subject, str):
            return _invalid("the token names no subject ('sub')")
        profile = claims.get(settings.profile_claim) if settings.profile_claim else None
        if profile is not None and not isinstance(profile, str):
            return _invalid(f"the token's claim '{settings.profile_claim}' should name a profile, as a string")
        admin = settings.admin_scope is not None and settings.admin_scope in scopes
        return Access(Role.admin if admin else Role.client, f"jwt:{subject[:_MAX_SUBJECT]}", profile=profile)

    def _time_problem(self, claims: dict[str, Any]) -> str | None:
        now = self.clock()
        expires, not_before, issued = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if expires is None:
            return "the token has no expiry time ('exp'); tokens without one are refused"
        for name, value in (("exp", expires), ("nbf", not_before), ("iat", issued)):
            if value is not None and not _is_time(value):
                return f"the token's '{name}' is not a time (seconds since 1970)"
        if now > expires + LEEWAY:
            return f"the token has expired (at {_utc(expires)}); get a new one"
        if not_before is not None and now + LEEWAY < not_before:
            return f"the token is not valid before {_utc(not_before)}; is this machine's clock right?"
        if issued is not None and now + LEEWAY < issued:
            return f"the token was issued in the future ({_utc(issued)}); is this machine's clock right?"
        return None

    def resource(self, origin: str, mcp_path: str, profile: str | None = None) -> str:
        """The canonical URL of the MCP endpoint a request reached: the configured one, or the
        request's origin and path; a profile's endpoint lies under /p/<name>/."""
        configured = self.settings.resource
        profiled = f"/p/{profile}{mcp_path}" if profile else mcp_path
        if configured is None:
            return origin + profiled
        if profile and configured.endswith(mcp_path):
            return configured.removesuffix(mcp_path) + profiled
        return configured

    def metadata(self, resource: str) -> dict[str, Any]:
        """The protected resource metadata document (RFC 9728) for this resource."""
        settings = self.settings
        document: dict[str, Any] = {
            "resource": resource,
            "authorization_servers": [settings.issuer],
            "bearer_methods_supported": ["header"],
            "resource_name": "MCP gateway",
        }
        supported = list(dict.fromkeys([*settings.scopes_supported, *settings.required_scopes]))
        if supported:
            document["scopes_supported"] = supported
        return document


def verifier_for(settings: OAuthSettings | None) -> AbstractAsyncContextManager[OAuthVerifier | None]:
    """The verifier for these settings (None when OAuth is off), closed on leaving the block."""
    return OAuthVerifier(settings) if settings is not None else nullcontext()


def _header(token: str) -> dict[str, Any] | None:
    """The JOSE header of a compact JWS, or None when the token is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json_b64decode(parts[0].encode())
    except (ValueError, TypeError):
        return None
    return header if isinstance(header, dict) else None


def _scopes(claims: dict[str, Any]) -> set[str]:
    """The token's scopes: `scope` is a space-separated string (RFC 9068); some issuers send `scp`,
    a list (or string) instead."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return found


def _is_time(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _utc(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g} s after 1970"


def _quoted(value: Any, limit: int = 80) -> str:
    """A value from a token, quoted for a message; cut short, as a header may hold anything."""
    shown = f"'{value}'" if isinstance(value, str) else json.dumps(value)
    return shown if len(shown) <= limit else shown[:limit] + "...'"
