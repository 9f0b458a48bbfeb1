"""Finds backend tools by what they do: BM25 ranking (bm25s) over each tool's name, description,
parameter names and descriptions, and its server's name and description.

The index follows the pool: it is marked stale when a backend's tools or the operator's tool
settings change and rebuilt at the next search. bm25s and its numpy are imported only then, so a
gateway that never searches never loads them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mcp_types

from gateway.backends.pool import BackendPool

_WORD_JOINS = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[_\-./:]+")
_WORD = re.compile(r"[^\W_]+")
# Names say most about what a tool does, in the fewest words: they count this many times.
_NAME_WEIGHT = 3


@dataclass(frozen=True, slots=True)
class Found:
    exported: str
    server: str
    tool: mcp_types.Tool
    description: str


def words(text: str) -> str:
    """Splits identifiers into words: 'create_pull_request' and 'createPullRequest' both give
    'create pull request'."""
    return _WORD_JOINS.sub(" ", text)


def plain(text: str) -> str:
    """Lower-case words, one space apart: for telling whether a query names a tool."""
    return " ".join(_WORD.findall(words(text).lower()))


def document(server: str, server_description: str | None, tool: mcp_types.Tool, description: str) -> str:
    parts = [words(tool.name)] * _NAME_WEIGHT + [tool.title or "", description]
    schema = tool.input_schema or {}
    for name, prop in (schema.get("properties") or {}).items():
        parts.append(words(str(name)))
        if isinstance(prop, dict) and isinstance(prop.get("description"), str):
            parts.append(prop["description"])
    parts += [words(server), server_description or ""]
    return " ".join(parts)


class _Ranker:
    """The bm25s index of one set of documents."""

    def __init__(self, documents: list[str]) -> None:
        import bm25s
        import Stemmer

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index it builds
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self._retriever = bm25s.BM25()
        tokens = bm25s.tokenize(documents, stopwords="en", stemmer=self._stemmer, show_progress=False)
        self._retriever.index(tokens, show_progress=False)

    def scores(self, query: str) -> Any:
        tokens = self._bm25s.tokenize([words(query)], stopwords="en", stemmer=self._stemmer,
                                      return_ids=False, show_progress=False)[0]
        return self._retriever.get_scores(tokens)


class Catalog:
    """Tools and their ranking, built at once from (found, document) pairs."""

    def __init__(self, entries: list[tuple[Found, str]]) -> None:
        self.entries = [found for found, _ in entries]
        self._names = [plain(found.tool.name) for found in self.entries]
        self._ranker = _Ranker([document for _, document in entries]) if entries else None

    def search(self, query: str, limit: int, offered: Callable[[Found], bool] = lambda _found: True) -> list[Found]:
        """The best `limit` matches among the tools `offered` accepts, best first; none for a query
        that shares no word with any tool."""
        if self._ranker is None:
            return []
        scores = self._ranker.scores(query)
        # A query that names a tool (as 'list_projects' or 'list projects') finds it first, whatever
        # its description shares with its siblings'; the longest name named wins.
        said = f" {plain(query)} "

        def rank(i: int) -> tuple[int, float]:
            named = self._names[i]
            return (-len(named) if f" {named} " in said else 0, -scores[i])

        ranked = sorted((i for i in scores.nonzero()[0] if offered(self.entries[i])), key=rank)
        return [self.entries[i] for i in ranked[:limit]]


class ToolIndex:
    """The catalog of the pool's offered tools, rebuilt at the first search after they change."""

    def __init__(self, pool: BackendPool) -> None:
        self._pool = pool
        self._catalog: Catalog | None = None
        pool.subscribe(self._mark_stale)

    def _mark_stale(self) -> None:
        self._catalog = None

    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(list(self._entries()))
        return self._catalog

    def _entries(self) -> Iterator[tuple[Found, str]]:
        pool, rules = self._pool, self._pool.tool_rules
        backends = {b.name: b for b in pool.backends()}
        for exported, (server, name) in pool.tool_index.items():
            backend = backends.get(server)
            if backend is None or rules.disabled_by(server, name) or name not in backend.catalog.tools:
                continue
            tool = backend.catalog.tools[name].tool
            description = rules.description(server, name) or tool.description or ""
            yield Found(exported, server, tool, description), document(server, backend.spec.description, tool,
                                                                       description)

    def search(self, query: str, limit: int, offered: Callable[[Found], bool]) -> list[Found]:
        return self.catalog().search(query, limit, offered)
