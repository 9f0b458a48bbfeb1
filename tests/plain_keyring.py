"""A keyring backend for the tests: a JSON file named by GATEWAY_TEST_KEYRING_FILE, so that no test
touches the real user's keyring. Selected with PYTHON_KEYRING_BACKEND=plain_keyring.PlainKeyring (with
this directory on PYTHONPATH). GATEWAY_TEST_KEYRING_FAIL=1 makes every operation fail, like a broken
keyring daemon."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError


class PlainKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def _file(self) -> Path:
        if os.environ.get("GATEWAY_TEST_KEYRING_FAIL") == "1":
            raise KeyringError("the test keyring's daemon went away\n(second line of the message)")
        name = os.environ.get("GATEWAY_TEST_KEYRING_FILE")
        if not name:  # never a default place: the tests must not write outside their temp dirs
            raise KeyringError("GATEWAY_TEST_KEYRING_FILE is not set")
        return Path(name)

    def _entries(self) -> dict[str, str]:
        path = self._file()
        return json.loads(path.read_text()) if path.exists() else {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._entries()
        entries[f"{service}/{username}"] = password
        self._file().write_text(json.dumps(entries))

    def delete_password(self, service: str, username: str) -> None:
        entries = self._entries()
        if entries.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError("no such password")
        self._file().write_text(json.dumps(entries))
