"""Runtime registrations: from a client's request to a running backend and an entry in the state file.

An entry is what the client asked for: `{"template": ..., "params": ..., "env": ...}` from the
operator's catalog, or `{"server": {...}}` (a URL the allowlist allows, or anything with
`--allow-any-command`). The policy turns it into a server definition each time, at registration and
at every restore, so a catalog change applies to saved entries too.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError

from gateway.backends.backend import Backend
from gateway.backends.errors import (BackendError, BadRegistration, NameTaken, RegistrationError, RegistrationRefused,
                                     StoreDown)
from gateway.backends.pool import BackendPool
from gateway.config import ServerSpec
from gateway.names import check_server_name
from gateway.store import Entries, Store
from gateway.policy import PolicyError, Redactor, RegistrationPolicy, TooManySecrets
from gateway.sandbox import sandboxed

logger = logging.getLogger("gateway.registration")


FREE_FORM_FIELDS = ("url", "transport", "headers", "bearer_token", "api_key", "description", "timeout", "command",
                    "args", "cwd")


def registration_entry(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The state file's entry for register_server's fields: a template with its params and env, or a
    server definition. None values count as not given."""
    given = {key: fields[key] for key in FREE_FORM_FIELDS if fields.get(key) is not None}
    env = fields.get("env")
    if fields.get("template") is not None:
        if given:
            raise BadRegistration(f"cannot register '{name}': with a template give only params and env, not "
                                  f"{', '.join(sorted(given))}")
        return {"template": fields["template"], "params": fields.get("params") or {}, "env": env or {}}
    if fields.get("params") is not None:
        raise BadRegistration(f"cannot register '{name}': params fill a template; name one with 'template'")
    return {"server": given | ({"env": env} if env else {})}


class Registrar:
    def __init__(self, pool: BackendPool, policy: RegistrationPolicy, redact: Redactor, state: Store,
                 config_names: Iterable[str] = ()) -> None:
        self.pool = pool
        # The config file's servers, disabled ones included, are the operator's: a client can
        # neither remove them nor take their names.
        self.config_names = frozenset(config_names)
        self.policy = policy
        self.redact = redact
        self.state = state
        self.entries: Entries = {}  # registered and in the pool
        self.kept: Entries = {}  # saved entries that could not be restored: kept in the file, not run
        self._underway: set[str] = set()  # names being registered
        self._removing: set[str] = set()  # names being removed
        # Each runtime stdio server starts in an empty directory of its own, which the gateway owns.
        self.work_root = state.work_root

    async def _spec(self, name: str, entry: dict[str, Any]) -> ServerSpec:
        params, env = entry.get("params") or {}, entry.get("env") or {}
        if not isinstance(params, dict) or not isinstance(env, dict):  # a state file edited by hand, say
            raise PolicyError("'params' and 'env' must be JSON objects")
        if "template" in entry:
            # In a worker thread: paths are resolved on the filesystem and values matched against
            # patterns, neither of which may hold up the event loop.
            spec = await anyio.to_thread.run_sync(self.policy.from_template, str(entry["template"]), params, env)
        else:
            try:
                spec = ServerSpec.model_validate(entry.get("server"))
            except ValidationError as exc:
                problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                raise PolicyError(problems) from None
            if entry.get("by") != "operator":  # an operator's server is trusted like the config file's
                spec = self.policy.check_free_form(spec)
        await self.policy.check_not_self(spec)
        if spec.command and self.pool.settings.sandbox == "bwrap":
            return sandboxed(spec, self._fresh_work_dir(name))
        if spec.command and spec.cwd is None:
            return spec.model_copy(update={"cwd": str(self._fresh_work_dir(name))})
        return spec

    def _fresh_work_dir(self, name: str) -> Path:
        directory = self.work_root / name
        shutil.rmtree(directory, ignore_errors=True)
        self.work_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
        return directory

    def _forget(self, name: str) -> None:
        self.entries.pop(name, None)
        self.redact.discard(name)
        shutil.rmtree(self.work_root / name, ignore_errors=True)

    async def _save(self) -> None:
        await self.state.save()

    async def register(self, name: str, entry: dict[str, Any]) -> Backend:
        """Starts the server and saves the entry; a RegistrationError (redacted) leaves nothing behind."""
        # The name becomes a directory name: checked before anything else uses it.
        problem = check_server_name(name, self.pool.settings.separator)
        if problem:
            raise BadRegistration(self.redact(f"cannot register: server name '{name}' {problem}"))
        if name in self.config_names:
            raise NameTaken(f"cannot register '{name}': that is the name of a server in the config file; "
                                    f"choose another name")
        if name in self.pool or name in self._underway or name in self._removing:
            raise NameTaken(f"cannot register '{name}': a server named '{name}' already exists; remove "
                                    f"it first or choose another name")
        if self.state.degraded:
            raise StoreDown(f"cannot register '{name}': {self.state.degraded}")
        limit = self.pool.settings.max_runtime_servers
        if len(self.entries) + len(self._underway) >= limit:
            raise RegistrationRefused(f"cannot register '{name}': {limit} servers registered at runtime is the most "
                                    f"this gateway runs (gateway.max_runtime_servers); remove one first")
        # Claimed until done: a second registration of the name must not touch the first's
        # directory or secret values when it fails.
        self._underway.add(name)
        try:
            return await self._register(name, entry)
        finally:
            self._underway.discard(name)

    async def _register(self, name: str, entry: dict[str, Any]) -> Backend:
        try:
            spec = await self._spec(name, entry)
            # Added before connecting, so that a failing server's error text is redacted too.
            self.redact.add(spec.secret_values(), owner=name)
        except (PolicyError, TooManySecrets) as exc:
            raise RegistrationRefused(self.redact(f"cannot register '{name}': {exc}")) from None
        except OSError as exc:  # its working directory
            raise RegistrationError(f"cannot register '{name}': cannot create its working directory under "
                                    f"{self.work_root} ({exc.strerror or exc})") from None
        try:
            backend = await self.pool.add(name, spec, must_connect=True, runtime=True)
        except BackendError as exc:
            message = self.redact(f"cannot register '{name}': {exc}")
            self._forget(name)
            raise RegistrationError(message) from None
        self.entries[name] = entry
        replaced = self.kept.pop(name, None)
        try:
            await self._save()
        except OSError as exc:
            await self.pool.remove(name)
            self._forget(name)
            if replaced is not None:
                self.kept[name] = replaced
            raise RegistrationError(f"cannot register '{name}': {self.state.where} could not be "
                                    f"written ({exc.strerror or exc}), so the server was stopped again") from None
        return backend

    async def remove(self, name: str) -> str | None:
        """Stops and forgets a server registered at runtime; returns a warning when the state file
        could not be written."""
        if name in self.config_names:
            raise RegistrationRefused(f"cannot remove '{name}': it is a server of the config file, which only an "
                                    f"operator can change")
        if name in self._removing:
            raise NameTaken(f"'{name}' is being removed already")
        if self.state.degraded:
            raise StoreDown(f"cannot remove '{name}': {self.state.degraded}")
        # Claimed while it stops and until the store has it: a registration of the same name must
        # wait until its directory and secret values are gone, or it would lose its own; and
        # another replica's news must not bring it back meanwhile.
        self._removing.add(name)
        try:
            await self.pool.remove(name)
            self._forget(name)
            try:
                await self._save()
            except OSError as exc:
                return (f"{self.state.where} could not be written ({exc.strerror or exc}); "
                        f"'{name}' will be registered again at the next start")
        finally:
            self._removing.discard(name)
        return None

    async def apply(self, changes: dict[str, Any]) -> None:
        """Another replica registered, replaced or removed these servers (an entry, or None): this
        replica starts or stops its own copy. A change of its own in flight wins."""
        for name, entry in changes.items():
            if name in self._underway or name in self._removing or name in self.config_names:
                continue
            if name in self.entries:
                if entry == self.entries[name]:
                    continue
                await self.pool.remove(name)
                self._forget(name)
            self.kept.pop(name, None)
            if entry is None:
                continue
            try:
                spec = await self._spec(name, entry)
                self.redact.add(spec.secret_values(), owner=name)
            except Exception as exc:  # as at restore: kept for the operator to see, not run
                self.kept[name] = entry
                logger.error("%s: '%s' is not started here: %s", self.state.where, name, self.redact(str(exc)[:300]))
                continue
            self.entries[name] = entry
            self.pool.start_soon({}, runtime={name: spec})

    async def restore(self) -> dict[str, ServerSpec]:
        """The saved servers that may still start. The others stay in the file and are reported."""
        specs: dict[str, ServerSpec] = {}
        problems: list[str] = []
        limit = self.pool.settings.max_runtime_servers
        saved = self.state.load()
        self.state.keep("servers", lambda: self.kept | self.entries)
        for name, entry in saved.items():
            try:
                if problem := check_server_name(name, self.pool.settings.separator):
                    raise PolicyError(f"server name {problem}")
                if name in self.config_names:
                    raise PolicyError("a server of that name is now in the config file, which wins")
                if len(self.entries) >= limit:
                    raise PolicyError(f"gateway.max_runtime_servers ({limit}) servers are restored already")
                spec = await self._spec(name, entry)
                self.redact.add(spec.secret_values(), owner=name)
            except Exception as exc:  # whatever is wrong with one entry, it stays in the file, not run
                self.kept[name] = entry
                problems.append(f"'{name}': {str(exc)[:300]}")
                continue
            self.entries[name] = entry
            specs[name] = spec
        if problems:
            report = self.redact("not restored, kept in the file: " + "; ".join(problems))
            self.state.problem = "; ".join(filter(None, [self.state.problem, report]))
            logger.error("%s: %s", self.state.where, report)
        return specs
