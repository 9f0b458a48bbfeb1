"""Finds backend tools by what they do.

Three signals, each scaled to 0..1 and added: words (BM25, bm25s, over each tool's name,
description, parameter names and descriptions, and its server's name and description), meaning
(WordLlama word embeddings of the tool's name and first sentences, so that "make my own copy of a
repo" finds a fork tool), and which server the query speaks of (BM25 over the servers' names and
descriptions, so that "in our GitLab project" favours GitLab's tools). A query that names a tool
finds it first. The weights were chosen on half of benchmarks/catalog/queries.json and checked on
the other half (see the README's figures).

The index follows the pool: it is dropped when a backend's tools or the operator's tool settings
change and rebuilt at the next search. bm25s, WordLlama and numpy are imported only then, so a
gateway that never searches never loads them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types

from gateway.backends.backend import Backend
from gateway.backends.pool import BackendPool

_WORD_JOINS = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[_\-./:]+")
_WORD = re.compile(r"[^\W_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_TOKEN = r"(?u)\b\w+\b"  # bm25s's own pattern skips one-letter words, and with them names like 'k' or 'x'
_NAME_WEIGHT = 3  # names say most about what a tool does, in the fewest words
_MEANING_WEIGHT = 0.5  # of the words' and the meaning's scores, the meaning's share
_SERVER_WEIGHT = 0.2  # added for the server the query speaks of


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


def document(found: Found, server_description: str | None) -> str:
    """What BM25 matches a query's words against."""
    tool = found.tool
    parts = [words(tool.name)] * _NAME_WEIGHT + [tool.title or "", found.description]
    for name, prop in ((tool.input_schema or {}).get("properties") or {}).items():
        parts.append(words(str(name)))
        if isinstance(prop, dict) and isinstance(prop.get("description"), str):
            parts.append(prop["description"])
    parts += [words(found.server), server_description or ""]
    return " ".join(parts)


def summary(found: Found) -> str:
    """What the embedding compares a query's meaning with: the name and the first two sentences
    (what a tool does; the rest of a description is mostly how to call it)."""
    return f"{words(found.tool.name)}. {' '.join(_SENTENCE_END.split(found.description.strip())[:2])}"


class _Words:
    """BM25 over a set of documents."""

    def __init__(self, documents: list[str]) -> None:
        import bm25s
        import Stemmer

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index it builds
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self._count = len(documents)
        tokens = bm25s.tokenize(documents, token_pattern=_TOKEN, stopwords="en", stemmer=self._stemmer,
                                show_progress=False)
        self._retriever: Any = None
        if tokens.vocab:  # documents of stop words alone give none, which bm25s cannot index
            self._retriever = bm25s.BM25()
            self._retriever.index(tokens, show_progress=False)

    def scores(self, query: str) -> Any:
        """Each document's score, scaled so that the best is 1 (all 0 when no word matches)."""
        tokens = self._bm25s.tokenize([words(query)], token_pattern=_TOKEN, stopwords="en", stemmer=self._stemmer,
                                      return_ids=False, show_progress=False)[0]
        if self._retriever is None or not tokens:
            import numpy

            return numpy.zeros(self._count)
        scores = self._retriever.get_scores(tokens)
        best = scores.max()
        return scores / best if best > 0 else scores


def _embedder() -> Any:
    import wordllama
    from wordllama import WordLlama

    # The weights and tokenizer ship inside the wheel; pointing the cache at the package makes
    # WordLlama find both there, and it never downloads anything.
    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


class Catalog:
    """Tools and their ranking, built at once."""

    def __init__(self, found: list[Found], server_descriptions: Mapping[str, str | None]) -> None:
        import numpy

        self.entries = found
        self._names = [plain(f.tool.name) for f in found]
        self._ready = bool(found)
        if not found:
            return
        self._numpy = numpy
        self._words = _Words([document(f, server_descriptions.get(f.server)) for f in found])
        servers = sorted({f.server for f in found})
        self._servers = _Words([f"{' '.join([words(s)] * _NAME_WEIGHT)} {server_descriptions.get(s) or ''}"
                                for s in servers])
        self._server_of = numpy.array([servers.index(f.server) for f in found])
        self._embed = _embedder().embed
        self._meanings = self._embed([summary(f) for f in found], norm=True)

    def scores(self, query: str) -> Any:
        # a query of no known word has no direction: its meaning scores are 0, not NaN
        meaning = self._numpy.nan_to_num(self._meanings @ self._embed([query], norm=True)[0])
        low, high = meaning.min(), meaning.max()
        meaning = (meaning - low) / (high - low) if high > low else meaning * 0
        return ((1 - _MEANING_WEIGHT) * self._words.scores(query) + _MEANING_WEIGHT * meaning
                + _SERVER_WEIGHT * self._servers.scores(query)[self._server_of])

    def search(self, query: str, limit: int, offered: Callable[[Found], bool] = lambda _found: True) -> list[Found]:
        """The best `limit` matches among the tools `offered` accepts, best first."""
        if not self._ready:
            return []
        scores = self.scores(query)
        # A query that names a tool (as 'list_projects' or 'list projects') finds it first, whatever
        # its description shares with its siblings'; the longest name named wins.
        said = f" {plain(query)} "
        named = [i for i, name in enumerate(self._names) if f" {name} " in said]
        ranked = sorted(named, key=lambda i: -len(self._names[i]))
        ranked += [int(i) for i in self._numpy.argsort(-scores) if i not in named]
        chosen = []
        for i in ranked:
            if offered(self.entries[i]):
                chosen.append(self.entries[i])
                if len(chosen) == limit:
                    break
        return chosen


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
            backends = {b.name: b for b in self._pool.backends()}
            self._catalog = Catalog(list(self._entries(backends)),
                                    {name: b.spec.description for name, b in backends.items()})
        return self._catalog

    def _entries(self, backends: dict[str, Backend]) -> Iterator[Found]:
        pool, rules = self._pool, self._pool.tool_rules
        for exported, (server, name) in pool.tool_index.items():
            backend = backends.get(server)
            if backend is None or rules.disabled_by(server, name) or name not in backend.catalog.tools:
                continue
            tool = backend.catalog.tools[name].tool
            yield Found(exported, server, tool, rules.description(server, name) or tool.description or "")

    def search(self, query: str, limit: int, offered: Callable[[Found], bool]) -> list[Found]:
        return self.catalog().search(query, limit, offered)
