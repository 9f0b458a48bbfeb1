"""What one backend offers: its tools (with their argument checks), resources, templates, prompts."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import mcp_types
from mcp import ClientSession, MCPError

from gateway.backends.errors import InvalidParams, UnknownTool
from gateway.sizes import size_of

logger = logging.getLogger("gateway.backends")

MAX_PAGES = 100  # a backend that pages forever gets its first pages listed
# What the gateway keeps of one backend's listing of one kind: a backend's tool list is held in
# memory and rebuilt into exported tools on every change, so its size is bounded whatever it sends.
MAX_ITEMS = 5000
MAX_LISTING_BYTES = 32 << 20


@dataclass
class ToolEntry:
    tool: mcp_types.Tool

    @cached_property
    def validator(self) -> Any | None:
        """A jsonschema validator, or None when the schema is unusable. Built on the tool's first
        call: checking every listed schema, and importing jsonschema, would slow the start.

        It resolves only references within the schema (an empty registry): by default
        python-jsonschema fetches a `$ref` to a URL, which would have the gateway reach any address
        a backend names, blocking its event loop while it waits."""
        schema = self.tool.input_schema
        if not schema:
            return None
        import jsonschema
        from referencing import Registry

        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            return cls(schema, registry=Registry())
        except jsonschema.SchemaError:
            return None


@dataclass
class Catalog:
    server: str
    tools: dict[str, ToolEntry] = field(default_factory=dict)
    resources: list[mcp_types.Resource] = field(default_factory=list)
    templates: list[mcp_types.ResourceTemplate] = field(default_factory=list)
    prompts: list[mcp_types.Prompt] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # tool names listed more than once

    def tool(self, name: str) -> ToolEntry:
        entry = self.tools.get(name)
        if entry is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise UnknownTool(f"server '{self.server}' has no tool '{name}'. Its tools: {known}")
        return entry

    def check_arguments(self, name: str, args: dict[str, Any]) -> None:
        entry = self.tool(name)
        validator = entry.validator
        if validator is None:
            return
        try:
            if validator.is_valid(args):
                return
            error = next(iter(sorted(validator.iter_errors(args), key=lambda e: e.path)), None)
        except Exception as exc:
            from referencing.exceptions import Unresolvable

            if isinstance(exc, Unresolvable):  # the schema refers to another document: the backend checks it
                return
            raise
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)[:200]
            message = error.message if len(error.message) <= 500 else error.message[:500] + " ..."
            raise InvalidParams(
                f"params for '{name}' of server '{self.server}' do not match its input schema"
                f"{f' at {where!r}' if where else ''}: {message}. "
                f"Expected: {describe_params(entry.tool.input_schema)}")


def describe_params(schema: dict[str, Any] | None) -> str:
    """A one-line summary of what a tool accepts, for error messages read by an LLM."""
    properties = (schema or {}).get("properties") or {}
    if not properties:
        return "no parameters"
    required = set((schema or {}).get("required") or [])
    parts = []
    for name, prop in properties.items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        kind = "|".join(kind) if isinstance(kind, list) else kind or "any"
        parts.append(f"{name} ({kind}{', required' if name in required else ''})")
    return ", ".join(parts)


async def list_catalog(server: str, session: ClientSession) -> Catalog:
    """Lists everything the backend advertises. Tools are the point of a backend: one that
    advertises resources or prompts but fails to list them still serves its tools."""
    caps = session.server_capabilities
    found = Catalog(server)
    for tool in await _all_pages(session.list_tools, "tools", server):
        if tool.name in found.tools:
            found.duplicates.append(tool.name)
        else:
            found.tools[tool.name] = ToolEntry(tool)
    if found.duplicates:
        logger.warning("server '%s' lists these tools more than once, the first of each is used: %s",
                       server, ", ".join(sorted(set(found.duplicates))))
    if caps is not None and caps.resources is not None:
        found.resources = await _optional(server, _all_pages(session.list_resources, "resources", server), "resources")
        found.templates = await _optional(server, _all_pages(session.list_resource_templates, "resource_templates", server),
                                          "resource templates")
    if caps is not None and caps.prompts is not None:
        found.prompts = await _optional(server, _all_pages(session.list_prompts, "prompts", server), "prompts")
    return found


async def _all_pages(list_page: Callable[..., Awaitable[Any]], field_name: str, server: str = "") -> list[Any]:
    items: list[Any] = []
    size = 0
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await list_page(params=mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        for item in getattr(page, field_name):
            size += _item_size(item)
            if len(items) >= MAX_ITEMS or size > MAX_LISTING_BYTES:
                logger.warning("server '%s' lists more %s than the gateway keeps (%d, %d MiB); the rest is "
                               "left out", server, field_name.replace("_", " "), MAX_ITEMS, MAX_LISTING_BYTES >> 20)
                return items
            items.append(item)
        cursor = page.next_cursor
        if cursor is None:
            break
    return items


def _item_size(item: Any) -> int:
    """About the bytes of a listed item: its texts and its schemas, which is where the bulk is."""
    size = 200
    for field_name in ("name", "title", "description", "uri", "uri_template"):
        value = getattr(item, field_name, None)
        size += len(value) if isinstance(value, str) else 0
    for field_name in ("input_schema", "output_schema"):
        value = getattr(item, field_name, None)
        size += size_of(value) if value else 0
    return size


async def _optional(server: str, listing: Awaitable[list[Any]], what: str) -> list[Any]:
    try:
        return await listing
    except MCPError as exc:
        logger.warning("server '%s' advertises %s but listing them failed: %s", server, what, exc)
        return []
