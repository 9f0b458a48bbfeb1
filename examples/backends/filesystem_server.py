"""Read-only filesystem backend for mcp-gateway examples, confined to one root directory.

Run over stdio: ``python filesystem_server.py [--root DIR]`` (or set ``FS_ROOT``).
"""

from __future__ import annotations

import argparse
import codecs
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

DEFAULT_ROOT = Path(__file__).parent / "data" / "files"
# Content search skips files larger than this: they are rarely what a text search is after and
# reading them would stall the call.
SEARCH_MAX_FILE_BYTES = 1_000_000
MAX_MATCHES_PER_FILE = 20
SNIPPET_CHARS = 200


class SandboxedFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def resolve(self, path: str) -> Path:
        # resolve() follows symlinks, so a link pointing outside the root is caught here too.
        target = (self.root / path).resolve()
        if target != self.root and not target.is_relative_to(self.root):
            raise ToolError(
                f"path '{path}' is outside the root directory: use a path relative to the root, "
                "such as '.' or 'notes/todo.txt'"
            )
        return target

    def relative(self, target: Path) -> str:
        return target.relative_to(self.root).as_posix() or "."

    def _inside(self, entry: Path) -> bool:
        resolved = entry.resolve()
        return resolved == self.root or resolved.is_relative_to(self.root)

    def existing_dir(self, path: str) -> Path:
        target = self.resolve(path)
        if not target.exists():
            raise ToolError(f"directory '{path}' not found; call list_files to see what exists")
        if not target.is_dir():
            raise ToolError(f"'{path}' is a file, not a directory; use read_file to read it")
        return target

    def walk(self, start: Path, recursive: bool) -> list[Path]:
        entries: list[Path] = []
        pending = [start]
        while pending:
            current = pending.pop()
            for entry in sorted(current.iterdir()):
                # Links leading out of the root are hidden rather than listed as dead ends.
                if not self._inside(entry):
                    continue
                entries.append(entry)
                # Symlinked directories are not descended into: they could form cycles.
                if recursive and entry.is_dir() and not entry.is_symlink():
                    pending.append(entry)
        return sorted(entries, key=self.relative)

    def describe(self, entry: Path) -> dict[str, Any]:
        is_dir = entry.is_dir()
        return {
            "name": entry.name,
            "path": self.relative(entry),
            "type": "dir" if is_dir else "file",
            "size": None if is_dir else entry.stat().st_size,
        }

    def read_text(self, path: str, max_bytes: int) -> str:
        target = self.resolve(path)
        if not target.exists():
            raise ToolError(f"file '{path}' not found; call list_files or search_files to find it")
        if target.is_dir():
            raise ToolError(f"'{path}' is a directory; use list_files to see its contents")
        size = target.stat().st_size
        with target.open("rb") as handle:
            data = handle.read(max_bytes)
        if b"\x00" in data[:8192]:
            raise ToolError(f"'{path}' looks like a binary file; only text files can be read")
        # A non-final decode drops a multi-byte character cut in half by max_bytes.
        text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=False)
        if size > len(data):
            text += f"\n[truncated: showed the first {len(data)} of {size} bytes]"
        return text

    def search(self, query: str, start: Path, max_results: int) -> list[dict[str, Any]]:
        needle = query.casefold()
        results: list[dict[str, Any]] = []
        for entry in self.walk(start, recursive=True):
            if len(results) >= max_results:
                break
            name_match = needle in entry.name.casefold()
            lines = self._matching_lines(entry, needle) if entry.is_file() else []
            if name_match or lines:
                results.append(
                    {
                        "path": self.relative(entry),
                        "type": "dir" if entry.is_dir() else "file",
                        "name_match": name_match,
                        "matches": lines,
                    }
                )
        return results

    @staticmethod
    def _matching_lines(entry: Path, needle: str) -> list[dict[str, Any]]:
        if entry.stat().st_size > SEARCH_MAX_FILE_BYTES:
            return []
        data = entry.read_bytes()
        if b"\x00" in data[:8192]:
            return []
        matches: list[dict[str, Any]] = []
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if needle in line.casefold():
                matches.append({"line": number, "text": line.strip()[:SNIPPET_CHARS]})
                if len(matches) >= MAX_MATCHES_PER_FILE:
                    break
        return matches


def build_server(root: Path) -> FastMCP:
    files = SandboxedFiles(root)
    mcp = FastMCP(
        "filesystem",
        instructions=(
            "Read-only access to a directory of documents. All paths are relative to that "
            "directory; use list_files to browse, search_files to find text, read_file to read."
        ),
    )
    read_only = {"readOnlyHint": True, "idempotentHint": True}

    @mcp.tool(annotations=read_only)
    def list_files(
        path: Annotated[
            str, Field(description="Directory relative to the root; '.' is the root.")
        ] = ".",
        recursive: Annotated[
            bool, Field(description="Also list everything below subdirectories.")
        ] = False,
    ) -> list[dict[str, Any]]:
        """List the entries of a directory. Each entry has name, path (relative to the root, usable
        with read_file), type ('file' or 'dir') and size in bytes (null for directories)."""
        start = files.existing_dir(path)
        return [files.describe(entry) for entry in files.walk(start, recursive)]

    @mcp.tool(annotations=read_only)
    def read_file(
        path: Annotated[
            str, Field(description="File path relative to the root, e.g. 'notes/todo.txt'.")
        ],
        max_bytes: Annotated[
            int, Field(ge=1, le=10_000_000, description="Read at most this many bytes of the file.")
        ] = 100_000,
    ) -> str:
        """Read a UTF-8 text file. Files longer than max_bytes are cut off and end with a
        '[truncated: ...]' note; binary files are refused."""
        return files.read_text(path, max_bytes)

    @mcp.tool(annotations=read_only)
    def search_files(
        query: Annotated[
            str, Field(min_length=1, description="Text to look for (case-insensitive).")
        ],
        path: Annotated[
            str, Field(description="Directory to search in, relative to the root.")
        ] = ".",
        max_results: Annotated[
            int, Field(ge=1, le=1000, description="Maximum number of matching files/directories.")
        ] = 50,
    ) -> list[dict[str, Any]]:
        """Search file and directory names and the contents of text files below a directory.
        Returns one entry per match: path, type, name_match (the name contains the query) and
        matches (line numbers with the matching line's text, up to 20 per file)."""
        start = files.existing_dir(path)
        return files.search(query, start, max_results)

    return mcp


def resolve_root(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Read-only filesystem MCP backend (stdio).")
    parser.add_argument(
        "--root",
        type=Path,
        default=os.environ.get("FS_ROOT") or DEFAULT_ROOT,
        help="Directory the tools may read (default: $FS_ROOT or data/files)",
    )
    root = Path(parser.parse_args(argv).root).expanduser().resolve()
    if not root.is_dir():
        parser.error(f"root directory {root} does not exist")
    return root


def main(argv: list[str] | None = None) -> None:
    build_server(resolve_root(argv)).run(show_banner=False)


if __name__ == "__main__":
    main()
