"""The gateway as an OAuth 2.1 resource server: access tokens (JWTs) from an external issuer,
verified against its key set served over real HTTP, beside the static tokens; refusals that say
why; the protected resource metadata."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp.client.transports import StreamableHttpTransport

from conftest import (GATEWAY, GatewayClient, backend_spec, gateway_env, http_gateway, processes_marked, text_of,
                      wait_until, write_config)
from gateway.access import Role
from gateway.config import ConfigError, OAuthSettings, parse_config
from gateway.oauth import OAuthVerifier, Refused, metadata_url
from oauth_issuer import Issuer, serving

STATIC, OPERATOR = "static-client-tok-31c", "static-admin-tok-8e0"
ADMIN_SCOPE = "gateway:admin"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    with serving(issuer):
        yield issuer


def settings(issuer: Issuer, **overrides: Any) -> OAuthSettings:
    return OAuthSettings(**{"issuer": issuer.issuer, "audience": issuer.audience, "jwks_uri": issuer.url,
                            "profile_claim": "profile", "admin_scope": ADMIN_SCOPE,
                            "required_scopes": ["mcp:tools"], **overrides})


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the verifier, in process ---------------------------------------------------------------------

async def test_a_valid_token_gives_its_role_subject_and_profile_never_the_token(issuer: Issuer) -> None:
    async with OAuthVerifier(settings(issuer)) as verifier:
        token = issuer.mint()
        access = await verifier.verify(token)
        assert (access.role, access.identity, access.profile) == (Role.client, "jwt:alice", None)
        operator = await verifier.verify(issuer.mint(scope=f"mcp:tools {ADMIN_SCOPE}", sub="ops", profile="narrow"))
        assert (operator.role, operator.identity, operator.profile) == (Role.admin, "jwt:ops", "narrow")
        listed = await verifier.verify(issuer.mint(scope=None, scp=["mcp:tools", ADMIN_SCOPE],
                                                   aud=["x", issuer.audience]))
        assert listed.role is Role.admin  # `scp` as a list, and one audience among several
        assert token not in repr(access) and token.split(".")[2] not in repr(access)


def refusal_cases(issuer: Issuer) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    return {
        "expired": (issuer.mint(exp=now - 3600), "the token has expired"),
        "wrong audience": (issuer.mint(aud="https://other.test/mcp"),
                           f"the token is for audience 'https://other.test/mcp', not '{issuer.audience}'"),
        "wrong issuer": (issuer.mint(iss="https://evil.test"),
                         f"the token was issued by 'https://evil.test', not '{issuer.issuer}'"),
        "tampered": (issuer.tampered(sub="mallory"), "the token's signature does not verify against the issuer's keys"),
        "unsigned": (issuer.unsigned(), "the token is unsigned (alg 'none')"),
        "shared secret": (issuer.shared_secret(), "the token is signed with 'HS256'; only asymmetric signatures"),
    }


async def test_each_refusal_says_why(issuer: Issuer) -> None:
    now = int(time.time())
    cases = {**refusal_cases(issuer),
             "not a JWT": ("just-a-string", "the token is not a JWT"),
             "no expiry": (issuer.mint(exp=None), "the token has no expiry time ('exp')"),
             "not yet valid": (issuer.mint(nbf=now + 3600), "the token is not valid before"),
             "issued in the future": (issuer.mint(iat=now + 3600), "the token was issued in the future"),
             "profile not a string": (issuer.mint(profile=["a"]), "the token's claim 'profile' should name a profile"),
             "unknown key": (issuer.mint(key=type(issuer.key).generate_key(2048, {"kid": "elsewhere"}, private=True)),
                             "the token was signed with key 'elsewhere', which is not among the issuer's keys")}
    async with OAuthVerifier(settings(issuer)) as verifier:
        for case, (token, reason) in cases.items():
            refused = await verifier.verify(token)
            assert isinstance(refused, Refused) and refused.status == 401, case
            assert refused.error == "invalid_token" and refused.reason.startswith(reason), (case, refused.reason)
        lacking = await verifier.verify(issuer.mint(scope="read"))
        assert lacking == Refused(403, "insufficient_scope", "the token lacks the scope 'mcp:tools'", "mcp:tools")
        # a little clock skew is forgiven
        assert not isinstance(await verifier.verify(issuer.mint(exp=now - 5, nbf=now + 5)), Refused)


async def test_keys_are_kept_and_fetched_again_for_a_new_key_or_when_old() -> None:
    issuer, clock = Issuer(), Clock()
    with serving(issuer):
        async with OAuthVerifier(settings(issuer), monotonic=clock) as verifier:
            assert not isinstance(await verifier.verify(issuer.mint()), Refused)
            assert not isinstance(await verifier.verify(issuer.mint()), Refused)
            assert issuer.requests == 1  # kept

            rotated = type(issuer.key).generate_key(2048, {"kid": "key-2"}, private=True)
            issuer.published = [issuer.key, rotated]
            clock.now += 31
            assert not isinstance(await verifier.verify(issuer.mint(key=rotated)), Refused)
            assert issuer.requests == 2  # a token naming a new key fetched the set again

            made_up = issuer.mint(key=type(issuer.key).generate_key(2048, {"kid": "made-up"}, private=True))
            for _ in range(3):
                assert "not among the issuer's keys" in (await verifier.verify(made_up)).reason
            assert issuer.requests == 2  # at most once per 30 s, whatever tokens name
            clock.now += 31
            await verifier.verify(made_up)
            assert issuer.requests == 3

            issuer.published = [rotated]
            clock.now += 601  # past the TTL: the set is fetched again, and key-1 is gone from it
            assert "not among" in (await verifier.verify(issuer.mint())).reason
            assert issuer.requests == 4


async def test_keys_that_cannot_be_fetched_give_a_clear_503() -> None:
    issuer, clock = Issuer(), Clock()
    with serving(issuer) as url:
        issuer.status = 500
        async with OAuthVerifier(settings(issuer), monotonic=clock) as verifier:
            refused = await verifier.verify(issuer.mint())
            assert refused == Refused(503, "temporarily_unavailable",
                                      f"the issuer's keys at {url} could not be fetched: HTTP 500")
            issuer.status = 200
            clock.now += 6  # a failed fetch is tried again after a few seconds
            assert not isinstance(await verifier.verify(issuer.mint()), Refused)
            issuer.status = 500
            clock.now += 601
            # keys fetched before stay in use while the issuer is down
            assert not isinstance(await verifier.verify(issuer.mint()), Refused)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        uri = f"http://127.0.0.1:{closed.getsockname()[1]}/jwks.json"
        async with OAuthVerifier(settings(issuer, jwks_uri=uri)) as verifier:
            refused = await verifier.verify(issuer.mint())
    assert refused.status == 503 and refused.reason.startswith(f"the issuer's keys at {uri} could not be fetched: ")


async def test_the_resource_and_its_metadata(issuer: Issuer) -> None:
    async with OAuthVerifier(settings(issuer, scopes_supported=["mcp:tools", ADMIN_SCOPE])) as verifier:
        assert verifier.resource("http://h:1", "/mcp") == "http://h:1/mcp"
        assert verifier.resource("http://h:1", "/mcp", "narrow") == "http://h:1/p/narrow/mcp"
        assert verifier.metadata("http://h:1/mcp") == {
            "resource": "http://h:1/mcp", "authorization_servers": [issuer.issuer],
            "bearer_methods_supported": ["header"], "resource_name": "MCP gateway",
            "scopes_supported": ["mcp:tools", ADMIN_SCOPE]}
    async with OAuthVerifier(settings(issuer, resource="https://gw.test/mcp")) as verifier:
        assert verifier.resource("http://127.0.0.1:1", "/mcp") == "https://gw.test/mcp"
        assert verifier.resource("http://127.0.0.1:1", "/mcp", "narrow") == "https://gw.test/p/narrow/mcp"
    assert metadata_url("https://gw.test/p/narrow/mcp") == \
        "https://gw.test/.well-known/oauth-protected-resource/p/narrow/mcp"


def test_the_config_section_is_checked() -> None:
    oauth = {"issuer": "https://a.test", "audience": ["x"], "jwks_uri": "https://a.test/jwks"}
    parsed = parse_config({"mcpServers": {}, "gateway": {"auth": {"oauth": oauth}}})
    assert parsed.gateway.auth.oauth.audiences == ("x",)
    assert parse_config({"mcpServers": {}}).gateway.auth.oauth is None
    for bad, problem in (({"jwks_uri": "file:///etc/keys"}, r"is not an http\(s\) URL"),
                         ({"audience": []}, "name at least one audience"),
                         ({"issuer_url": "x"}, "unknown key")):
        with pytest.raises(ConfigError, match=problem):
            parse_config({"mcpServers": {}, "gateway": {"auth": {"oauth": {**oauth, **bad}}}})


# --- end to end, through a gateway process ----------------------------------------------------------

@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[str]:
    mark = uuid.uuid4().hex
    oauth = {"issuer": issuer.issuer, "audience": issuer.audience, "jwks_uri": issuer.url,
             "profile_claim": "profile", "admin_scope": ADMIN_SCOPE, "scopes_supported": ["mcp:tools", ADMIN_SCOPE],
             "required_scopes": ["mcp:tools"]}
    config = write_config(tmp_path_factory.mktemp("oauth") / "config.json", {"t": backend_spec(mark)},
                          auth_tokens=[STATIC], admin_tokens=[OPERATOR], auth={"oauth": oauth},
                          profiles={"narrow": {"tools": ["t__echo"]}})
    with http_gateway(config, mark) as (url, _proc):
        yield url
    wait_until(lambda: not processes_marked(mark), timeout=8, message="module processes to exit")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mcp_client(url: str, token: str) -> GatewayClient:
    return GatewayClient(StreamableHttpTransport(url, headers=bearer(token)), timeout=60)


async def test_a_valid_access_token_lists_and_calls_tools(gateway_url: str, issuer: Issuer) -> None:
    async with mcp_client(gateway_url, issuer.mint()) as client:
        assert "t__echo" in {tool.name for tool in await client.list_tools()}
        assert text_of(await client.call_tool("t__echo", {"text": "via oauth"})) == "via oauth"
    async with httpx2.AsyncClient(base_url=gateway_url.removesuffix("/mcp"), timeout=30) as http:
        calls = (await http.get("/calls", headers={"X-API-Key": OPERATOR})).json()["calls"]
    # the audit trail names the token's subject: who called, not what they presented
    assert any(c["caller"] == "jwt:alice" and c["tool"] == "echo" for c in calls)


async def test_bad_tokens_get_401_saying_why_and_where_the_metadata_is(gateway_url: str, issuer: Issuer) -> None:
    metadata = gateway_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    async with httpx2.AsyncClient(timeout=30) as http:
        bare = await http.post(gateway_url, json={})
        assert bare.status_code == 401
        assert bare.headers["www-authenticate"] == f'Bearer resource_metadata="{metadata}"'
        for case, (token, reason) in refusal_cases(issuer).items():
            answer = await http.post(gateway_url, json={}, headers=bearer(token))
            assert answer.status_code == 401, case
            challenge = answer.headers["www-authenticate"]
            assert challenge.startswith(f'Bearer resource_metadata="{metadata}", error="invalid_token", '
                                        f'error_description="{reason}'), (case, challenge)
            assert answer.json()["error"] == "unauthorized" and answer.json()["message"].startswith(reason), case
            assert token not in answer.text
        lacking = await http.post(gateway_url, json={}, headers=bearer(issuer.mint(scope="read")))
        assert lacking.status_code == 403 and "the token lacks the scope 'mcp:tools'" in lacking.json()["message"]
        assert 'error="insufficient_scope"' in lacking.headers["www-authenticate"]
        assert 'scope="mcp:tools"' in lacking.headers["www-authenticate"]


async def test_the_metadata_is_served_without_auth(gateway_url: str, issuer: Issuer) -> None:
    base = gateway_url.removesuffix("/mcp")
    async with httpx2.AsyncClient(timeout=30) as http:
        for path, resource in (("", gateway_url), ("/mcp", gateway_url), ("/p/narrow/mcp", f"{base}/p/narrow/mcp")):
            answer = await http.get(f"{base}/.well-known/oauth-protected-resource{path}")
            assert answer.status_code == 200, path
            assert answer.json() == {"resource": resource, "authorization_servers": [issuer.issuer],
                                     "bearer_methods_supported": ["header"], "resource_name": "MCP gateway",
                                     "scopes_supported": ["mcp:tools", ADMIN_SCOPE]}, path


async def test_only_a_token_with_the_admin_scope_reaches_the_api(gateway_url: str, issuer: Issuer) -> None:
    base = gateway_url.removesuffix("/mcp")
    async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
        operator = await http.get("/servers", headers=bearer(issuer.mint(scope=f"mcp:tools {ADMIN_SCOPE}")))
        assert operator.status_code == 200 and operator.json()["servers"][0]["name"] == "t"
        client = await http.get("/servers", headers=bearer(issuer.mint()))
        assert client.status_code == 403 and f"it lacks the scope '{ADMIN_SCOPE}'" in client.json()["message"]
        assert 'error="insufficient_scope"' in client.headers["www-authenticate"]


async def test_a_token_bound_to_a_profile_is_sent_to_its_path(gateway_url: str, issuer: Issuer) -> None:
    token = issuer.mint(profile="narrow")
    profiled = gateway_url.replace("/mcp", "/p/narrow/mcp")
    async with httpx2.AsyncClient(timeout=30) as http:
        refused = await http.post(gateway_url, json={}, headers=bearer(token))
        assert refused.status_code == 403 and "/p/narrow/mcp" in refused.json()["message"]
        bare = await http.post(profiled, json={})  # the profile's own resource metadata is named
        metadata = gateway_url.replace("/mcp", "/.well-known/oauth-protected-resource/p/narrow/mcp")
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == f'Bearer resource_metadata="{metadata}"'
    async with mcp_client(profiled, token) as client:
        assert text_of(await client.call_tool("t__echo", {"text": "narrow"})) == "narrow"


async def test_static_tokens_still_work_beside_oauth(gateway_url: str) -> None:
    async with mcp_client(gateway_url, STATIC) as client:
        assert text_of(await client.call_tool("t__echo", {"text": "static"})) == "static"
    base = gateway_url.removesuffix("/mcp")
    async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
        assert (await http.get("/servers", headers={"X-API-Key": OPERATOR})).status_code == 200
        wrong = await http.post("/mcp", json={}, headers=bearer("not-a-token"))
        assert wrong.status_code == 401
        assert wrong.json()["message"] == "a wrong token: it is none of the gateway's tokens, and not a JWT either"


def test_oauth_counts_as_authentication_off_loopback(tmp_path: Path, issuer: Issuer) -> None:
    oauth = {"issuer": issuer.issuer, "audience": issuer.audience, "jwks_uri": issuer.url}
    config = write_config(tmp_path / "config.json", {}, auth={"oauth": oauth})
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        # past the authentication check, the gateway stops at the port in use, before serving
        done = subprocess.run([GATEWAY, "-c", str(config), "--transport", "http", "--host", "0.0.0.0",
                               "--port", str(taken.getsockname()[1])], capture_output=True, text=True, timeout=60,
                              env=gateway_env(uuid.uuid4().hex))
    assert done.returncode == 1 and "refusing to serve" not in done.stderr
    assert "cannot serve on 0.0.0.0" in done.stderr
