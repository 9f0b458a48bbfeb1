"""Profiles: named views of the gateway, each with its own servers, tools, pipelines and tool exposure.

A request's view is its profile's (the path it came by, /p/<name>/..., or the token that may only
reach one profile; over stdio, --profile), or the whole gateway. Outside its view a server, tool,
resource, prompt or pipeline is simply unknown to the request. Servers a profile's clients register
at runtime join that profile; the state file keeps them (section "profiles").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from gateway.backends.invocation import Caller
from gateway.config import Exposure, GatewaySettings, ProfileSpec

ExportedName = Callable[[str, str], str]  # (server, tool) -> the tool's exported name


@dataclass(frozen=True)
class View:
    name: str | None  # None: the whole gateway
    servers: frozenset[str] | None  # None: every server
    tools: tuple[str, ...]
    exclude: tuple[str, ...]
    pipelines: frozenset[str] | None
    exposure: Exposure

    @property
    def whole(self) -> bool:
        return self.servers is None and self.tools == ("*",) and not self.exclude and self.pipelines is None

    def offers_server(self, server: str) -> bool:
        return self.servers is None or server in self.servers

    def offers_tool(self, server: str, exported: str) -> bool:
        return (self.offers_server(server) and any(fnmatchcase(exported, p) for p in self.tools)
                and not any(fnmatchcase(exported, p) for p in self.exclude))

    def offers_pipeline(self, name: str, steps: Iterable[tuple[str, str]], exported: ExportedName) -> bool:
        """A pipeline is offered when the profile names it (or names none) and all its steps stay inside."""
        if self.pipelines is not None and name not in self.pipelines:
            return False
        return all(self.offers_tool(server, exported(server, tool)) for server, tool in steps)


class Profiles:
    def __init__(self, settings: GatewaySettings, default: str | None = None) -> None:
        self._specs: dict[str, ProfileSpec] = dict(settings.profiles)
        self._exposure = settings.tool_exposure
        self.default = default  # the profile of requests that come without one (stdio's --profile)
        self.added: dict[str, set[str]] = {}  # servers a profile's clients registered at runtime
        self._views: dict[str | None, View] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return sorted(self._specs)

    def view(self, name: str | None) -> View:
        """The view of a request that came with profile `name` (None: with none)."""
        name = self.default if name is None else name
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = self._build(name)
        return view

    def view_for(self, caller: Caller | None) -> View:
        return self.view(caller.profile if caller is not None else None)

    def _build(self, name: str | None) -> View:
        spec = self._specs.get(name) if name is not None else None
        if spec is None:
            return View(None, None, ("*",), (), None, self._exposure)
        servers = None if spec.servers is None else frozenset(spec.servers) | self.added.get(name, set())
        return View(name, servers, tuple(spec.tools), tuple(spec.exclude),
                    None if spec.pipelines is None else frozenset(spec.pipelines),
                    spec.tool_exposure or self._exposure)

    # -- runtime registrations ----------------------------------------------------------------

    def registered(self, profile: str | None, server: str) -> bool:
        """A client of `profile` registered `server`: it joins that profile. True when that changed it."""
        spec = self._specs.get(profile) if profile is not None else None
        if spec is None or spec.servers is None:
            return False  # the whole gateway, or a profile of every server, sees it anyway
        self.added.setdefault(profile, set()).add(server)  # type: ignore[arg-type]
        self._views.clear()
        return True

    def removed(self, server: str) -> bool:
        changed = False
        for servers in self.added.values():
            if server in servers:
                servers.discard(server)
                changed = True
        if changed:
            self._views.clear()
        return changed

    def replace(self, profile: str, servers: Any) -> None:
        """Another replica's runtime servers of a profile (None: none) replace this one's."""
        self.added.pop(profile, None)
        if profile in self._specs and isinstance(servers, list):
            self.added[profile] = {s for s in servers if isinstance(s, str)}
        self._views.clear()

    def saved(self) -> dict[str, list[str]]:
        return {name: sorted(servers) for name, servers in sorted(self.added.items()) if servers}

    def restore(self, section: Any) -> list[str]:
        if not isinstance(section, dict):
            return [] if section is None else ["'profiles' is not an object"]
        problems = []
        for name, servers in section.items():
            if name not in self._specs:
                problems.append(f"profile '{name}' is no longer configured; its runtime servers are not in any profile")
            elif isinstance(servers, list) and all(isinstance(s, str) for s in servers):
                self.added[name] = set(servers)
            else:
                problems.append(f"profile '{name}': its servers are not a list of names")
        self._views.clear()
        return problems
