"""Pipeline files: YAML or JSON under a directory, reloaded when they change."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import yaml

from gateway.pipelines.spec import Pipeline, PipelineError, compile_pipeline

logger = logging.getLogger("gateway.pipelines")

SUFFIXES = (".yaml", ".yml", ".json")


def parse_document(text: str, source: str) -> Any:
    """YAML or JSON text -> data (JSON is read as YAML too, which is a superset)."""
    try:
        if source.endswith(".json"):
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PipelineError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None


def load_pipeline(path: Path) -> Pipeline:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    return compile_pipeline(parse_document(text, path.name), path.name)


class PipelineRegistry:
    """The pipelines of one directory. `refresh()` re-reads only files whose stat changed."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.pipelines: dict[str, Pipeline] = {}
        self.errors: dict[str, str] = {}  # file name -> why it is not loaded
        self._seen: dict[Path, tuple[int, int]] = {}
        self._loaded: dict[Path, Pipeline | PipelineError] = {}
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _files(self) -> dict[Path, tuple[int, int]]:
        if self.directory is None or not self.directory.is_dir():
            return {}
        found = {}
        for path in sorted(self.directory.iterdir()):
            if path.suffix in SUFFIXES and path.is_file():
                try:
                    stat = path.stat()
                except OSError:
                    continue
                found[path] = (stat.st_mtime_ns, stat.st_size)
        return found

    def refresh(self) -> bool:
        """Reloads what changed on disk; returns whether anything did."""
        files = self._files()
        if files == self._seen:
            return False
        for path in set(self._loaded) - set(files):
            del self._loaded[path]
        for path, stamp in files.items():
            if self._seen.get(path) != stamp:
                try:
                    self._loaded[path] = load_pipeline(path)
                except PipelineError as exc:
                    self._loaded[path] = exc
                    logger.error("pipeline file not loaded: %s", exc)
        self._seen = files
        pipelines: dict[str, Pipeline] = {}
        errors: dict[str, str] = {}
        for path, loaded in self._loaded.items():
            if isinstance(loaded, PipelineError):
                errors[path.name] = str(loaded)
            elif loaded.name in pipelines:
                errors[path.name] = (f"{path.name}: pipeline name '{loaded.name}' is already used by "
                                     f"{pipelines[loaded.name].source}")
                logger.error("pipeline file not loaded: %s", errors[path.name])
            else:
                pipelines[loaded.name] = loaded
        self.pipelines, self.errors = pipelines, errors
        for listener in self._listeners:
            listener()
        return True

    def error_for(self, name: str) -> str | None:
        """The load error of the file that would hold pipeline `name`, if it is broken."""
        for file_name, message in self.errors.items():
            if Path(file_name).stem == name:
                return message
        return None

    async def watch(self, interval: float = 0.5) -> None:
        """Polls the directory for changes until cancelled."""
        while True:
            await anyio.sleep(interval)
            self.refresh()  # a few stat calls; cheaper than a thread hop
