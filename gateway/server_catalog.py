"""The operator's catalog: server templates a client may register from, with typed parameters.

The command line, environment and working directory of a runtime-registered server are built here
from the operator's template; a client supplies only parameter values, each checked against its
declared type before it is put in its place. Nothing a client sends becomes a flag, a program or
an environment name the operator did not write.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.urls import UrlProblem, UrlRule, check_url, parse_rule

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_VALUE = 4096  # characters of one parameter or env value
# A pattern is the operator's, the value a client's: matched with a bound on time (the `regex`
# library can stop a match, where `re` backtracks as long as a pattern makes it).
MATCH_TIMEOUT = 0.05

# Programs that fetch and run a package named in their arguments: a template may use them only with
# the package pinned to a version, so the catalog says exactly what runs.
_RUNNERS = {"npx", "bunx", "pnpx", "uvx", "pipx", "docker", "podman"}
_PINNED = {
    "npx": re.compile(r"^(@[\w.-]+/)?[\w.-]+@\d[\w.+-]*$"),
    "uvx": re.compile(r"^[\w.-]+(\[[\w,.-]+\])?(==|@)\d[\w.+-]*$"),
    "docker": re.compile(r"^[\w./:-]+(@sha256:[0-9a-f]{64}|:(?!latest$)[\w][\w.-]*)$"),
}
_PINNED |= {"bunx": _PINNED["npx"], "pnpx": _PINNED["npx"], "pipx": _PINNED["uvx"], "podman": _PINNED["docker"]}


def _compiles(pattern: str) -> None:
    import regex  # on first use: 2 MB that a catalog without patterns never needs

    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None


def _matches(pattern: str, value: str) -> bool:
    import regex

    try:
        return regex.fullmatch(pattern, value, timeout=MATCH_TIMEOUT) is not None
    except TimeoutError:
        raise ParamProblem(f"checking a value against the pattern {pattern!r} took too long; give a shorter "
                           f"or simpler value") from None


class ParamProblem(ValueError):
    """A parameter value that does not fit its template; the text names it and says why."""


class TemplateParam(BaseModel):
    """One typed parameter of a server template."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "enum", "integer", "path", "url"]
    description: str | None = None
    pattern: str | None = Field(None, description="string: a regular expression the whole value must match")
    values: list[str] | None = Field(None, description="enum: the values allowed")
    minimum: int | None = None
    maximum: int | None = None
    roots: list[str] | None = Field(None, description="path: directories the path must resolve under")
    origins: list[str] | None = Field(None, description="url: allowed origins with an optional path prefix")
    default: str | int | None = Field(None, description="used when the client gives no value; without one "
                                                        "the parameter is required")

    @model_validator(mode="after")
    def _complete(self) -> TemplateParam:
        needs = {"string": "pattern", "enum": "values", "path": "roots", "url": "origins"}.get(self.type)
        if needs and not getattr(self, needs):
            raise ValueError(f"a parameter of type {self.type!r} needs '{needs}'")
        if self.pattern is not None:
            _compiles(self.pattern)
        for origin in self.origins or ():
            parse_rule(origin)
        return self

    def check(self, name: str, value: Any, base: Path) -> str:
        """The value as it goes into the command line, or ParamProblem."""
        if self.type == "integer":
            if isinstance(value, bool) or not isinstance(value, int | str) or not re.fullmatch(r"-?\d{1,18}", str(value)):
                raise ParamProblem(f"parameter '{name}' must be an integer")
            number = int(value)
            if number < 0 and (self.minimum is None or self.minimum >= 0):  # it would read as an option
                raise ParamProblem(f"parameter '{name}' must not be negative")
            if (self.minimum is not None and number < self.minimum) or (
                    self.maximum is not None and number > self.maximum):
                raise ParamProblem(f"parameter '{name}' must be between {self.minimum} and {self.maximum}")
            return str(number)
        if not isinstance(value, str):
            raise ParamProblem(f"parameter '{name}' must be a string")
        if len(value) > MAX_VALUE or "\0" in value:
            raise ParamProblem(f"parameter '{name}' is longer than {MAX_VALUE} characters or holds a NUL")
        if self.type == "enum":
            if value not in (self.values or ()):
                raise ParamProblem(f"parameter '{name}' must be one of {self.values}")
            return value
        if self.type == "string":
            if not _matches(self.pattern or "", value):
                raise ParamProblem(f"parameter '{name}' must match the pattern {self.pattern!r}")
            if value.startswith("-"):  # whatever the pattern says: it would read as an option
                raise ParamProblem(f"parameter '{name}' may not start with '-'")
            return value
        if self.type == "url":
            try:
                return check_url(value, [parse_rule(o) for o in self.origins or ()], f"parameter '{name}'").url
            except UrlProblem as exc:
                raise ParamProblem(f"parameter '{name}': {exc}") from None
        return self._path(name, value, base)

    def _path(self, name: str, value: str, base: Path) -> str:
        roots = [(base / root).resolve() for root in self.roots or ()]
        # Symlinks are followed before the check, so a link inside a root cannot point outside it.
        try:
            resolved = (roots[0] / value).resolve() if roots else Path(value).resolve()
        except (RuntimeError, OSError) as exc:  # a symlink loop, a name too long
            raise ParamProblem(f"parameter '{name}': {value!r} cannot be resolved ({exc})") from None
        if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
            raise ParamProblem(f"parameter '{name}': {value!r} resolves to {resolved}, which is not under "
                               f"{', '.join(map(str, roots))}")
        return str(resolved)


class ServerTemplate(BaseModel):
    """A server a client may register by name, filling in only the declared parameters."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    command: str | None = Field(None, description="executable of a stdio server")
    args: list[str] = Field(default_factory=list, description="arguments; '{param}' is replaced by a value")
    env: dict[str, str] = Field(default_factory=dict, description="environment; '{param}' is replaced by a value")
    client_env: dict[str, str] = Field(default_factory=dict, description=(
        "environment names a client may set, each with a regular expression its value must match"))
    cwd: str | None = Field(None, description="fixed working directory (default: an empty one of its own)")
    url: str | None = Field(None, description="URL of a remote server; may be '{param}' of a url parameter")
    transport: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0)
    params: dict[str, TemplateParam] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ServerTemplate:
        if bool(self.command) == bool(self.url):
            raise ValueError("give exactly one of 'command' or 'url'")
        used = {m for text in (*self.args, *self.env.values(), self.url or "") for m in _PLACEHOLDER.findall(text)}
        if unknown := sorted(used - set(self.params)):
            raise ValueError(f"placeholders {unknown} name no parameter in 'params'")
        if unused := sorted(set(self.params) - used):
            raise ValueError(f"parameters {unused} are used by no placeholder")
        url_param = _PLACEHOLDER.fullmatch(self.url or "")
        if self.url and _PLACEHOLDER.search(self.url) and not (url_param and self.params[url_param.group(1)].type == "url"):
            raise ValueError("'url' is either fixed or exactly one '{param}' of a parameter of type url")
        for name, pattern in self.client_env.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"client_env name {name!r} is not an environment variable name")
            _compiles(pattern)
        if self.command:
            self._pinned()
        return self

    def _pinned(self) -> None:
        runner = os.path.basename(self.command or "")
        if runner not in _RUNNERS:
            return
        for arg in self.args:
            if _PLACEHOLDER.search(arg):
                break
            if _PINNED[runner].fullmatch(arg):
                return
        raise ValueError(f"'{runner}' fetches and runs a package: pin it in the arguments as "
                         f"{'package==1.2.3' if runner in ('uvx', 'pipx') else 'image:1.2.3' if runner in ('docker', 'podman') else 'package@1.2.3'}"
                         f", before any '{{param}}'")

    def render(self, params: dict[str, Any], env: dict[str, str], base: Path) -> dict[str, Any]:
        """The ServerSpec fields for these values; ParamProblem names what does not fit."""
        if unknown := sorted(set(params) - set(self.params)):
            raise ParamProblem(f"unknown parameters {unknown}; this template takes {sorted(self.params) or 'none'}")
        values: dict[str, str] = {}
        for name, param in self.params.items():
            if name in params:
                values[name] = param.check(name, params[name], base)
            elif param.default is not None:
                values[name] = str(param.default)
            else:
                raise ParamProblem(f"parameter '{name}' is required ({param.description or param.type})")
        for name, value in env.items():
            pattern = self.client_env.get(name)
            if pattern is None:
                raise ParamProblem(f"env {name!r} cannot be set; this template accepts "
                                   f"{sorted(self.client_env) or 'no env'}")
            if not isinstance(value, str) or len(value) > MAX_VALUE or not _matches(pattern, value):
                raise ParamProblem(f"env {name!r} must match the pattern {pattern!r}")

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

        spec: dict[str, Any] = {"description": self.description, "timeout": self.timeout}
        if self.command:
            spec |= {"command": self.command, "args": [fill(a) for a in self.args],
                     "env": {k: fill(v) for k, v in self.env.items()} | env, "cwd": self.cwd}
        else:
            spec |= {"url": fill(self.url or ""), "transport": self.transport, "headers": self.headers}
        return spec

    def summary(self) -> str:
        """One line for register_server's description."""
        params = "; ".join(f"{n} ({p.type}{', optional' if p.default is not None else ''}"
                           f"{': ' + p.description if p.description else ''})"
                           for n, p in self.params.items()) or "no params"
        env = f"; env: {', '.join(sorted(self.client_env))}" if self.client_env else ""
        return f"{self.description or 'no description'} [params: {params}{env}]"


def url_rules(entries: list[str]) -> list[UrlRule]:
    return [parse_rule(entry) for entry in entries]
