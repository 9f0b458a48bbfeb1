"""A stand-in OAuth authorization server for the tests: RSA keys made here, their key set (JWKS)
served over real HTTP on 127.0.0.1, access tokens minted on demand."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from joserfc.util import json_b64encode

ISSUER = "https://auth.example.test"
AUDIENCE = "https://gateway.example.test/mcp"


class Issuer:
    """Signs tokens with `key`; publishes the keys in `published` (change it to rotate keys) with
    HTTP `status`, and counts the requests for them."""

    def __init__(self, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.issuer, self.audience = issuer, audience
        self.key = RSAKey.generate_key(2048, {"kid": "key-1"}, private=True)
        self.published: list[RSAKey] = [self.key]
        self.status = 200
        self.requests = 0
        self.url = ""  # the JWKS URL, once served

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self.published]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid claims for now, with `overrides` (None removes a claim)."""
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": "alice", "iat": now, "exp": now + 300,
                  "scope": "mcp:tools", **overrides}
        return {name: value for name, value in claims.items() if value is not None}

    def mint(self, key: RSAKey | None = None, alg: str = "RS256", **overrides: Any) -> str:
        key = key or self.key
        return jwt.encode({"alg": alg, "kid": key.kid}, self.claims(**overrides), key)

    def unsigned(self, **overrides: Any) -> str:
        """A token with `alg: none` and no signature at all."""
        header = json_b64encode({"alg": "none", "typ": "JWT"}).decode()
        return f"{header}.{json_b64encode(self.claims(**overrides)).decode()}."

    def tampered(self, **overrides: Any) -> str:
        """A token the issuer signed, its claims then changed (by `overrides`): the signature is the
        original's."""
        header, _claims, signature = self.mint().split(".")
        return f"{header}.{json_b64encode(self.claims(**overrides)).decode()}.{signature}"

    def shared_secret(self, **overrides: Any) -> str:
        """A token signed with HS256, as anyone knowing a shared secret could make one."""
        secret = OctKey.generate_key(256, {"kid": self.key.kid})
        return jwt.encode({"alg": "HS256", "kid": self.key.kid}, self.claims(**overrides), secret)


@contextmanager
def serving(issuer: Issuer) -> Iterator[str]:
    """Serves the issuer's JWKS at http://127.0.0.1:<free port>/jwks.json while the block runs;
    the port is closed and the thread joined on the way out."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            issuer.requests += 1
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(issuer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="jwks-server", daemon=True)
    thread.start()
    try:
        issuer.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        yield issuer.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
