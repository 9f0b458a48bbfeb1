"""Which backend tools are offered, under what name and with what description.

The config file's settings (`tools`, `enabled_tools`, `disabled_tools` per server) and the
operator's changes at runtime (kept in the state file) are one model: a runtime change wins over
the file, and clearing it brings the file's setting back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any

from gateway.config import ServerSpec, ToolSetting


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's runtime change to one tool; None leaves that part to the config file."""

    enabled: bool | None = None
    name: str | None = None
    description: str | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.enabled, self.name, self.description))

    def shown(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


class ToolRules:
    def __init__(self, specs: Mapping[str, ServerSpec] = {}) -> None:
        self._settings = dict(specs)
        self.overrides: dict[tuple[str, str], Override] = {}

    def _setting(self, server: str, tool: str) -> ToolSetting | None:
        spec = self._settings.get(server)
        return spec.tools.get(tool) if spec else None

    def disabled_by(self, server: str, tool: str) -> str | None:
        """Why the tool is not offered, naming the setting; None when it is."""
        override = self.overrides.get((server, tool))
        if override is not None and override.enabled is not None:
            return None if override.enabled else "an operator disabled it"
        setting = self._setting(server, tool)
        if setting is not None and setting.enabled is not None:
            return None if setting.enabled else f"mcpServers.{server}.tools.{tool}.enabled is false"
        spec = self._settings.get(server)
        if spec is None:
            return None
        if spec.enabled_tools is not None and not any(fnmatchcase(tool, p) for p in spec.enabled_tools):
            return f"it is not in mcpServers.{server}.enabled_tools"
        for pattern in spec.disabled_tools:
            if fnmatchcase(tool, pattern):
                return f"it matches {pattern!r} in mcpServers.{server}.disabled_tools"
        return None

    def name(self, server: str, tool: str) -> str | None:
        """The exported name the operator chose, or None for the usual <server><sep><tool>."""
        return self._chosen(server, tool, "name")

    def exported(self, server: str, tool: str, separator: str) -> str:
        """The name the tool is offered by (a collision may still rename it: see names.build_index)."""
        return self.name(server, tool) or f"{server}{separator}{tool}"

    def description(self, server: str, tool: str) -> str | None:
        return self._chosen(server, tool, "description")

    def _chosen(self, server: str, tool: str, field: str) -> str | None:
        """A runtime override's value for `field`, else the config file's, else None."""
        for source in (self.overrides.get((server, tool)), self._setting(server, tool)):
            value = getattr(source, field, None) if source is not None else None
            if value is not None:
                return str(value)
        return None

    def override(self, server: str, tool: str, changes: Mapping[str, Any]) -> Override:
        """Applies runtime changes ({"enabled", "name", "description"}; None clears one) and returns
        the tool's override now."""
        current = self.overrides.get((server, tool), Override())
        updated = Override(**{**asdict(current), **changes})
        if updated:
            self.overrides[(server, tool)] = updated
        else:
            self.overrides.pop((server, tool), None)
        return updated

    # -- the state file's "tools" section: {server: {tool: {"enabled": ..., ...}}} ---------------

    def saved(self) -> dict[str, dict[str, dict[str, Any]]]:
        section: dict[str, dict[str, dict[str, Any]]] = {}
        for (server, tool), override in sorted(self.overrides.items()):
            section.setdefault(server, {})[tool] = override.shown()
        return section

    def replace(self, server: str, tools: Any) -> list[str]:
        """Another replica's settings for one server's tools (None: it has none) replace this one's."""
        for key in [key for key in self.overrides if key[0] == server]:
            del self.overrides[key]
        return self.restore({server: tools}) if tools else []

    def restore(self, section: Any) -> list[str]:
        """Loads the saved overrides; returns a problem per entry it could not read."""
        problems: list[str] = []
        if not isinstance(section, dict):
            return [] if section is None else ["'tools' is not an object"]
        for server, tools in section.items():
            for tool, values in (tools.items() if isinstance(tools, dict) else ()):
                try:
                    setting = ToolSetting.model_validate(values)
                except ValueError as exc:
                    problems.append(f"tool '{tool}' of server '{server}': {str(exc).splitlines()[-1].strip()}")
                    continue
                self.override(server, tool, setting.model_dump())
        return problems
