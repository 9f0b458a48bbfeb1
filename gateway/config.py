"""The config file: Claude-Desktop `mcpServers` entries plus an optional `gateway` section.

Strings may use `${VAR}` and `${VAR:-default}`, expanded from the environment, and
`${keyring:SERVICE/NAME}`, read from the operating system's keyring, before validation, so that
secrets live outside the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from gateway.names import VALID_NAME, check_server_name
from gateway.server_catalog import ServerTemplate
from gateway.urls import UrlProblem, parse_rule

TransportKind = Literal["stdio", "streamable-http", "sse"]
_TRANSPORT_ALIASES = {"stdio": "stdio", "http": "streamable-http", "streamable-http": "streamable-http",
                      "streamable_http": "streamable-http", "sse": "sse"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# ${keyring:SERVICE/NAME}, matched loosely so that a malformed one is an error, not left as it is
# (${keyring:-default} stays what it was: the variable `keyring`, with a default)
_KEYRING_REF = re.compile(r"\$\{keyring:(?!-)([^}]*)\}")
# either, in one pass: a value from one is never expanded again. Groups: keyring ref, VAR, default
_REFERENCE = re.compile(f"{_KEYRING_REF.pattern}|{_VAR.pattern}")
_KEYRING_SERVICE = re.compile(r"[A-Za-z0-9._@-]+")
_KEYRING_NAME = re.compile(r"[A-Za-z0-9._@/-]+")
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASS|PWD|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|SIGNATURE", re.I)


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says its value is a secret."""
    return _SECRET_NAME.search(name) is not None


class ConfigError(Exception):
    """A config problem, phrased for the person who wrote the file."""


class ToolSetting(BaseModel):
    """The operator's say over one backend tool: whether it is offered, and under what name and text."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    name: str | None = Field(None, description="exported name, instead of <server>__<tool>")
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None and not VALID_NAME.match(value):
            raise ValueError(f"tool name {value!r} may only hold letters, digits, '_' and '-' (1 to 64 of them)")
        return value


class ServerSpec(BaseModel):
    """One backend, in the Claude-Desktop `mcpServers` shape."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    command: str | None = Field(None, description="executable of a stdio backend")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = Field(None, description="URL of a streamable-HTTP or SSE backend")
    transport: str | None = Field(None, description="stdio | streamable-http (alias http) | sse")
    type: str | None = Field(None, description="alias of transport, as Claude Code writes it")
    headers: dict[str, str] = Field(default_factory=dict)
    bearer_token: str | None = Field(None, description="sent as 'Authorization: Bearer <token>'")
    api_key: str | None = Field(None, description="sent as 'X-API-Key: <key>'")
    timeout: float | None = Field(None, gt=0, le=3600, description="per-call timeout in seconds")
    protocol: Literal["auto", "2025-11-25", "2026-07-28"] = Field(
        "auto", description="protocol era to speak with it: auto (the newest both know), or one pinned")
    description: str | None = None
    enabled: bool = True
    disabled: bool = False
    tools: dict[str, ToolSetting] = Field(default_factory=dict, description="per-tool settings, by the tool's own name")
    enabled_tools: list[str] | None = Field(None, description="only these tools (names or globs) are offered")
    disabled_tools: list[str] = Field(default_factory=list, description="these tools (names or globs) are not offered")

    @field_validator("transport", "type")
    @classmethod
    def _known_transport(cls, value: str | None) -> str | None:
        if value is not None and value not in _TRANSPORT_ALIASES:
            raise ValueError(f"unknown transport {value!r}; use stdio, streamable-http (or http) or sse")
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> ServerSpec:
        if bool(self.command) == bool(self.url):
            raise ValueError("give exactly one of 'command' (stdio backend) or 'url' (remote backend)")
        declared = self.transport or self.type
        if declared is not None:
            kind = _TRANSPORT_ALIASES[declared]
            if (kind == "stdio") != bool(self.command):
                raise ValueError(f"transport {declared!r} does not fit "
                                 f"{'a command' if self.command else 'a url'}")
        if self.command and (self.headers or self.bearer_token or self.api_key):
            raise ValueError("'headers', 'bearer_token' and 'api_key' only apply to url backends")
        return self

    def http_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers

    def secret_values(self) -> set[str]:
        """Values that must never be shown: header values, tokens, URL credentials and query values,
        and env values whose names say they are secret (API_TOKEN, DB_PASSWORD, ...)."""
        values = {v for k, v in self.env.items() if looks_secret(k)} | set(self.http_headers().values())
        values |= {v.split(" ", 1)[1] for v in self.http_headers().values() if v.startswith("Bearer ")}
        if self.url:
            parts = urlsplit(self.url)
            values |= {p for p in (parts.username, parts.password) if p}
            values |= {v for _, v in parse_qsl(parts.query)}
        return {v for v in values if v}

    @property
    def kind(self) -> TransportKind:
        if self.command:
            return "stdio"
        declared = self.transport or self.type
        if declared:
            return _TRANSPORT_ALIASES[declared]  # type: ignore[return-value]
        assert self.url is not None
        return "sse" if self.url.rstrip("/").endswith("/sse") else "streamable-http"

    @property
    def active(self) -> bool:
        return self.enabled and not self.disabled


class PipelineLimits(BaseModel):
    """Bounds on what one pipeline run may render and return, so that no client can exhaust the
    gateway's CPU or memory with a template."""

    model_config = ConfigDict(extra="forbid")

    max_foreach_items: int = Field(1000, gt=0, description="items one foreach step may iterate over")
    max_render_bytes: int = Field(1024 * 1024, gt=0, description=(
        "largest value one template may produce (a render may make 4 times this on the way); also the "
        "largest custom pipeline definition, or pipeline inputs, a client may send"))
    max_output_bytes: int = Field(4 * 1024 * 1024, gt=0, description="largest pipeline answer; a run stops "
                                                                     "once its results pass it")


class AuditSettings(BaseModel):
    """The audit trail of every backend request: kept in memory, and appended to a file when set."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    file: str | None = Field(None, description="JSON-lines file the trail is appended to (relative: next to "
                                               "the config file)")
    max_bytes: int = Field(10 * 1024 * 1024, gt=0, description="the file is rotated past this size")
    backups: int = Field(5, ge=0, description="rotated files kept")
    keep: int = Field(1000, gt=0, description="calls kept in memory for GET /calls and the console")
    arguments: bool = Field(False, description="record argument values (redacted), not only their names")


Exposure = Literal["all", "search", "auto"]


class ToolBudget(BaseModel):
    """Past either bound, `tool_exposure: auto` offers search instead of the whole tool list."""

    model_config = ConfigDict(extra="forbid")

    tools: int = Field(40, gt=0, description="tools listed at most")
    tokens: int = Field(10_000, gt=0, description="tokens (estimated as bytes / 4) of the tools/list answer")


class ProfileSpec(BaseModel):
    """A named view of the gateway: which servers, tools and pipelines its clients see."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    servers: list[str] | None = Field(None, description="these servers only; omitted: every server")
    tools: list[str] = Field(default_factory=lambda: ["*"], description=(
        "exported tool names (globs, e.g. 'github__*') offered"))
    exclude: list[str] = Field(default_factory=list, description="exported tool names (globs) never offered")
    pipelines: list[str] | None = Field(None, description=(
        "these pipelines only (those whose steps all stay in the profile); omitted: every such pipeline"))
    tool_exposure: Exposure | None = Field(None, description="instead of gateway.tool_exposure")
    tokens: list[str] = Field(default_factory=list, description="client tokens that reach this profile only")


class OAuthSettings(BaseModel):
    """OAuth 2.1 access tokens (JWTs) from an external authorization server, which the gateway
    verifies itself against the issuer's published keys (the MCP authorization spec's resource server)."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(description="the authorization server's issuer identifier; a token's 'iss' must equal it")
    audience: str | list[str] = Field(description=(
        "the audience (or audiences) this gateway answers to; a token's 'aud' must hold one of them"))
    jwks_uri: str = Field(description="http(s) URL of the issuer's JSON Web Key Set, the keys tokens are signed with")
    profile_claim: str | None = Field(None, description=(
        "a claim whose string value names the one profile a token reaches; tokens without it reach the "
        "whole gateway"))
    admin_scope: str | None = Field(None, description=(
        "a token holding this scope is an operator's: the console, its API, and everything clients may do"))
    resource: str | None = Field(None, description=(
        "the canonical URL of this MCP server, as clients know it (default: derived from each request, "
        "<scheme>://<host><mcp path>); set it behind a reverse proxy"))
    scopes_supported: list[str] = Field(default_factory=list, description=(
        "scopes listed in the protected resource metadata, for clients to request"))
    required_scopes: list[str] = Field(default_factory=list, description="scopes every token must hold")

    @field_validator("jwks_uri", "resource")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("audience")
    @classmethod
    def _some_audience(cls, value: str | list[str]) -> str | list[str]:
        if not value or (isinstance(value, list) and not all(value)):
            raise ValueError("name at least one audience, none of them empty")
        return value

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.audience,) if isinstance(self.audience, str) else tuple(self.audience)


class AuthSettings(BaseModel):
    """How HTTP clients may authenticate besides the static tokens (auth_tokens, admin_tokens)."""

    model_config = ConfigDict(extra="forbid")

    oauth: OAuthSettings | None = Field(None, description=(
        "accept OAuth 2.1 access tokens (JWTs) from this authorization server, beside the static tokens"))


class GatewaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_timeout: float = Field(10.0, gt=0, description="default per-call timeout, seconds")
    connect_timeout: float = Field(30.0, gt=0, description="start + handshake + listing, seconds")
    separator: str = Field("__", pattern=r"^[_-]{1,4}$",
                           description="between server and tool in re-exported names: '_' and '-' only, so "
                                       "that no server or tool name can hold it by accident")
    export_tools: bool = Field(True, description="re-export backend tools, resources and prompts")
    catalog: dict[str, ServerTemplate] = Field(default_factory=dict, description=(
        "server templates register_server may start, by name"))
    allow_urls: list[str] = Field(default_factory=list, description=(
        "origins with an optional path prefix that register_server may connect to"))
    allow_any_command: bool = Field(False, description="let register_server start anything (unsafe)")
    max_runtime_servers: int = Field(20, ge=0, description="servers clients may register at runtime, at most")
    sandbox: Literal["none", "bwrap"] = Field("none", description=(
        "run stdio servers registered at runtime under bubblewrap: writes only to their own directory"))
    allow_commands: list[str] | None = Field(None, exclude=True, description="removed: use catalog")
    allow_env: list[str] | None = Field(None, exclude=True, description="removed: use catalog")
    auth_tokens: list[str] = Field(default_factory=list, description="tokens HTTP clients must present")
    admin_tokens: list[str] = Field(default_factory=list, description=(
        "operator tokens: only they may use the console and change the gateway over HTTP"))
    auth: AuthSettings = Field(default_factory=AuthSettings, description=(
        "other ways HTTP clients may authenticate: OAuth 2.1 access tokens"))
    audit: AuditSettings = Field(default_factory=lambda: AuditSettings())
    metrics: bool = Field(True, description="serve Prometheus metrics at /metrics")
    allowed_hosts: list[str] | None = Field(None, description="extra Host headers accepted over HTTP")
    allowed_origins: list[str] | None = Field(None, description="extra Origins accepted over HTTP")
    state_file: str | None = Field(None, description="where runtime registrations are kept")
    max_result_bytes: int = Field(16 * 1024 * 1024, gt=0, description="largest backend result relayed")
    pipelines: PipelineLimits = Field(default_factory=PipelineLimits)
    session_idle_timeout: float = Field(600.0, gt=0, description=(
        "seconds after which an idle handshake-era HTTP session is closed"))
    store: str = Field("file", description=(
        "where runtime registrations and settings live: 'file' (the state file), or a Redis URL "
        "(redis://host:6379/0) that replicas share"))
    store_prefix: str = Field("mcp-gateway", pattern=r"^[A-Za-z0-9_.:-]{1,100}$", description=(
        "what the gateway's Redis keys start with; one per gateway (set of replicas)"))
    tool_exposure: Exposure = Field("all", description=(
        "all: list every tool; search: list the control tools and search_tools; auto: all while the "
        "catalog is within tool_budget, else search"))
    tool_budget: ToolBudget = Field(default_factory=ToolBudget)
    profiles: dict[str, ProfileSpec] = Field(default_factory=dict, description=(
        "named views, served at /p/<name>/mcp over HTTP and with --profile over stdio"))


    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value != "file" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value[:80]!r} is neither 'file' nor a Redis URL (redis://host:6379/0, rediss://, "
                             f"unix://)")
        return value

    @field_validator("allow_urls")
    @classmethod
    def _url_rules(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            try:
                parse_rule(entry)
            except UrlProblem as exc:
                raise ValueError(str(exc)) from None
        return entries

    @model_validator(mode="after")
    def _removed(self) -> GatewaySettings:
        if self.allow_commands is not None or self.allow_env is not None:
            raise ValueError("'allow_commands' and 'allow_env' were removed: an allowlisted interpreter or "
                             "package runner runs any code its arguments name. Describe each server a client "
                             "may start as a template in gateway.catalog (see the README's Security section)")
        return self


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mcpServers: dict[str, ServerSpec] = Field(default_factory=dict)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    # values that came from ${VAR}: treated as secrets wherever they would be shown
    _expanded: set[str] = PrivateAttr(default_factory=set)
    # the config file's directory, where relative paths and the state file live
    _base_dir: Path | None = PrivateAttr(default=None)

    def secret_values(self) -> set[str]:
        values = set(self._expanded) | set(self.gateway.auth_tokens) | set(self.gateway.admin_tokens)
        values |= {token for profile in self.gateway.profiles.values() for token in profile.tokens}
        if (password := urlsplit(self.gateway.store).password) is not None:
            values.add(password)
        for spec in self.mcpServers.values():
            values |= spec.secret_values()
        return values

    def base_dir(self) -> Path:
        """The config file's directory: relative paths in the config mean "next to the file"."""
        return self._base_dir or Path.cwd()

    def audit_path(self) -> Path | None:
        return self.base_dir() / self.gateway.audit.file if self.gateway.audit.file else None

    def state_path(self) -> Path:
        return self.base_dir() / (self.gateway.state_file or "gateway-state.json")

    @model_validator(mode="after")
    def _names(self) -> GatewayConfig:
        for name in self.mcpServers:
            problem = check_server_name(name, self.gateway.separator)
            if problem:
                raise ValueError(f"server name {name!r}: {problem}")
        plain = set(self.gateway.auth_tokens) | set(self.gateway.admin_tokens)
        bound: dict[str, str] = {}
        for name, profile in self.gateway.profiles.items():
            if not VALID_NAME.match(name):
                raise ValueError(f"profile name {name!r} may only hold letters, digits, '_' and '-'")
            unknown = sorted(set(profile.servers or ()) - set(self.mcpServers))
            if unknown:
                raise ValueError(f"profile {name!r} names servers that are not in mcpServers: {', '.join(unknown)}")
            for token in profile.tokens:
                if token in plain or bound.setdefault(token, name) != name:
                    raise ValueError(f"profile {name!r}: one of its tokens is also another profile's or a "
                                     f"gateway token; a token reaches one profile or the whole gateway")
        return self


def expand_env(value: Any, env: Mapping[str, str], where: str = "", found: set[str] | None = None,
               keyring_values: dict[str, str] | None = None) -> Any:
    """Expands `${VAR}` / `${VAR:-default}` and `${keyring:SERVICE/NAME}` in every string inside `value`.

    Values taken from the environment or the keyring are added to `found`; keyring values are kept in
    `keyring_values` (by reference) so that each entry is read once.
    """
    found = set() if found is None else found
    keyring_values = {} if keyring_values is None else keyring_values
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            reference, name, default = match.groups()
            if reference is not None:
                if reference not in keyring_values:
                    keyring_values[reference] = keyring_secret(reference, where or "value")
                found.add(keyring_values[reference])
                return keyring_values[reference]
            if name in env:
                found.add(env[name])
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{where or 'value'}: environment variable {name} is not set "
                              f"(set it, or write ${{{name}:-default}})")
        return _REFERENCE.sub(substitute, value)
    if isinstance(value, list):
        return [expand_env(v, env, f"{where}[{i}]", found, keyring_values) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{where}.{k}" if where else str(k), found, keyring_values)
                for k, v in value.items()}
    return value


_ENTRY_RULE = "SERVICE/NAME: letters, digits and ._-@, split at the first '/'; NAME may also hold '/'"
_NO_BACKEND = ("no keyring backend is available (run a Secret Service such as gnome-keyring or KeePassXC, "
               "or install another backend such as keyrings.alt; or pass the secret as ${VAR} instead)")


def keyring_entry(reference: str) -> tuple[str, str] | None:
    """SERVICE/NAME as (service, name), split at the first '/'; None when it is not of that form."""
    service, _, name = reference.partition("/")
    if _KEYRING_SERVICE.fullmatch(service) and _KEYRING_NAME.fullmatch(name):
        return service, name
    return None


def keyring_problem(exc: Exception) -> str:
    """One line on why a keyring operation failed."""
    from keyring.errors import KeyringLocked, NoKeyringError

    if isinstance(exc, NoKeyringError):
        return _NO_BACKEND
    if isinstance(exc, KeyringLocked):
        return "the keyring is locked (unlock it and try again)"
    return f"the keyring failed ({type(exc).__name__}: {' '.join(str(exc).split()) or 'no details'})"


def open_keyring() -> Any:
    """The keyring backend in use, or ConfigError (one line) when there is none. Imports keyring only
    now, for the configs and commands that use it: the import probes the system's backends."""
    try:
        import keyring
        from keyring.backends import fail, null
    except ImportError:
        raise ConfigError("the keyring package is not installed (pip install keyring)") from None
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # PYTHON_KEYRING_BACKEND or keyringrc.cfg naming what cannot be loaded
        detail = " ".join(str(exc).split())
        raise ConfigError(f"cannot load the keyring backend ({type(exc).__name__}: {detail}); check "
                          f"PYTHON_KEYRING_BACKEND and keyring's keyringrc.cfg") from None
    if isinstance(backend, fail.Keyring):  # what keyring chooses when no backend is usable
        raise ConfigError(_NO_BACKEND)
    if isinstance(backend, null.Keyring):
        raise ConfigError("the keyring is disabled (keyring.backends.null is configured): it holds nothing")
    return backend


def keyring_secret(reference: str, where: str) -> str:
    """The keyring's value for SERVICE/NAME, or ConfigError saying where it was wanted and why it is not there."""
    entry = keyring_entry(reference)
    if entry is None:
        raise ConfigError(f"{where}: ${{keyring:{reference}}} is not ${{keyring:SERVICE/NAME}} ({_ENTRY_RULE})")
    try:
        value = open_keyring().get_password(*entry)
    except ConfigError as exc:
        raise ConfigError(f"{where}: cannot read {reference!r}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"{where}: cannot read {reference!r}: {keyring_problem(exc)}") from None
    if value is None:
        raise ConfigError(f"{where}: no secret {reference!r} in the keyring "
                          f"(store it with: gateway secret set {reference})")
    return value


def _describe(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if len(loc) >= 2 and loc[0] == "mcpServers":
        field = ".".join(loc[2:])
        return f"server {loc[1]!r}" + (f", field {field!r}" if field else "") + f": {message}"
    return (f"field {'.'.join(loc)!r}: " if loc else "") + message


def parse_config(raw: Any, source: str = "config", env: Mapping[str, str] | None = None,
                 base_dir: Path | None = None) -> GatewayConfig:
    """Validates already-decoded JSON. Raises ConfigError with one readable message."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a JSON object with 'mcpServers'")
    found: set[str] = set()
    try:
        expanded = expand_env(raw, os.environ if env is None else env, found=found)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {_where_to_server(str(exc))}") from None
    try:
        config = GatewayConfig.model_validate(expanded)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None
    config._expanded = {v for v in found if v}
    if base_dir is not None:
        config._base_dir = base_dir
        for spec in config.mcpServers.values():
            _anchor(spec, base_dir)
        for template in config.gateway.catalog.values():
            _anchor(template, base_dir, default_cwd=False)
            # A template's server starts in a directory of its own, so its relative file arguments
            # (a script beside the config, say) are made absolute here.
            template.args = [str((base_dir / arg).absolute()) if _relative_file(arg, base_dir) else arg
                             for arg in template.args]
    return config


def _where_to_server(message: str) -> str:
    # "mcpServers.db.env.TOKEN: ..." reads better as "server 'db', field 'env.TOKEN': ..."
    match = re.match(r"^mcpServers\.([^.\[]+)[.]?(.*?): (.*)$", message)
    if match:
        server, field, rest = match.groups()
        return f"server {server!r}" + (f", field {field!r}" if field else "") + f": {rest}"
    return message


def _anchor(spec: ServerSpec | ServerTemplate, base_dir: Path, default_cwd: bool = True) -> None:
    """Relative paths in a config file mean "next to the file", wherever the gateway runs."""
    if spec.cwd is not None and not Path(spec.cwd).is_absolute():
        spec.cwd = str((base_dir / spec.cwd).resolve())
    if spec.command and "/" in spec.command and not Path(spec.command).is_absolute():
        spec.command = str((base_dir / spec.command).absolute())
    if spec.command and spec.cwd is None and default_cwd:
        spec.cwd = str(base_dir)


def _relative_file(arg: str, base_dir: Path) -> bool:
    return ("/" in arg and not arg.startswith(("-", "/")) and "{" not in arg
            and (base_dir / arg).exists())


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    return parse_config(raw, source=str(path), base_dir=path.resolve().parent)
