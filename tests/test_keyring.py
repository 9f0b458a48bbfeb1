"""`${keyring:SERVICE/NAME}`: secrets from the operating system's keyring, and `gateway secret`.

Every test uses the file-backed keyring in tests/plain_keyring.py, kept under the test's temp dir and
removed after it: the real user's keyring is never touched.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import GATEWAY, PYTHON, ROOT, backend_spec, gateway_env, processes_marked, stdio_client, write_config
from gateway.config import ConfigError, parse_config

TESTS = Path(__file__).resolve().parent
SECRET = "kr-s3cret-7d41-planted"


@pytest.fixture
def keyring_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment that points keyring at a JSON file in a directory of the test's own."""
    home = tmp_path / "keyring"
    home.mkdir()
    yield {"PYTHON_KEYRING_BACKEND": "plain_keyring.PlainKeyring",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
           "GATEWAY_TEST_KEYRING_FILE": str(home / "entries.json"),
           # keyring's own config and data dirs, should anything look there
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data")}
    shutil.rmtree(home)


def stored(env: dict[str, str]) -> dict[str, str]:
    path = Path(env["GATEWAY_TEST_KEYRING_FILE"])
    return json.loads(path.read_text()) if path.exists() else {}


def gateway(*args: str, env: dict[str, str], mark: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([GATEWAY, *args], env=gateway_env(mark) | env, input=stdin, capture_output=True,
                          text=True, timeout=60, **({} if stdin is not None else {"stdin": subprocess.DEVNULL}))


def one_line_error(done: subprocess.CompletedProcess, code: int) -> str:
    assert done.returncode == code, done.stderr
    assert done.stdout == "" and done.stderr.startswith("gateway: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    return done.stderr.removeprefix("gateway: ").rstrip("\n")


async def test_a_stored_secret_reaches_its_backend_and_is_shown_nowhere(tmp_path: Path, mark: str,
                                                                        keyring_env: dict[str, str]) -> None:
    done = gateway("secret", "set", "svc/api", env=keyring_env, mark=mark, stdin=f"{SECRET}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("stored 'svc/api' in the keyring (plain keyring PlainKeyring); the config reads it "
                           "as ${keyring:svc/api}\n")
    assert stored(keyring_env) == {"svc/api": SECRET}
    config = write_config(tmp_path / "config.json", {
        "t": backend_spec(mark, env={"API_TOKEN": "${keyring:svc/api}", "PLAIN": "Bearer ${keyring:svc/api}"}),
        # a backend that prints its API_TOKEN to stderr as it fails: the gateway shows that tail
        "leaky": backend_spec(mark, env={"API_TOKEN": "${keyring:svc/api}", "TEST_BACKEND_CRASH_ON_START": "1"}),
    })
    log = tmp_path / "stderr.log"
    with log.open("w") as errors:
        client = stdio_client(config, mark, "auto", "--log-level", "DEBUG")
        client.transport.env = {"GATEWAY_TEST_MARK": mark, **keyring_env}
        client.transport.log_file = errors
        async with client:
            assert (await client.call_tool("t__env", {"name": "API_TOKEN"})).data == SECRET
            assert (await client.call_tool("t__env", {"name": "PLAIN"})).data == f"Bearer {SECRET}"
            listed = await client.call_tool("list_servers", {})
            servers = {s["name"]: s for s in listed.structured_content["servers"]}
            assert servers["leaky"]["status"] == "failed" and "API_TOKEN=***" in servers["leaky"]["last_error"]
            assert SECRET not in json.dumps(listed.structured_content)
            running = processes_marked(mark)
            assert len(running) >= 2  # the gateway and its backend
            for proc in running:
                assert SECRET not in "\0".join(proc.cmdline())
    assert SECRET not in log.read_text()


def test_keyring_values_are_secrets_and_mix_with_text(monkeypatch: pytest.MonkeyPatch,
                                                      keyring_env: dict[str, str]) -> None:
    import keyring.core
    from plain_keyring import PlainKeyring

    monkeypatch.setenv("GATEWAY_TEST_KEYRING_FILE", keyring_env["GATEWAY_TEST_KEYRING_FILE"])
    monkeypatch.setattr(keyring.core, "_keyring_backend", PlainKeyring())
    PlainKeyring().set_password("github", "token", SECRET)
    PlainKeyring().set_password("team.x@corp", "ci/deploy-key", "k2")
    config = parse_config({"mcpServers": {"gh": {
        "command": "x", "args": ["--token=${keyring:github/token}"],
        "env": {"PLAIN": "Bearer ${keyring:github/token}", "NESTED": "${keyring:team.x@corp/ci/deploy-key}",
                "VAR": "${KEEP}", "OLD": "${keyring:-fallback}"}}}}, source="test.json", env={"KEEP": "${keyring:x/y}"})
    spec = config.mcpServers["gh"]
    assert spec.args == [f"--token={SECRET}"] and spec.env["PLAIN"] == f"Bearer {SECRET}"
    assert spec.env["NESTED"] == "k2"
    assert spec.env["VAR"] == "${keyring:x/y}"  # a value from the environment is not expanded again
    assert spec.env["OLD"] == "fallback"  # the variable `keyring` with a default, as before
    assert {SECRET, "k2"} <= config.secret_values()  # whatever the env names say
    with pytest.raises(ConfigError) as err:
        parse_config({"mcpServers": {"db": {"command": "x", "env": {"PASSWORD": "${keyring:db/nobody}"}}}},
                     source="test.json", env={})
    assert str(err.value) == ("test.json: server 'db', field 'env.PASSWORD': no secret 'db/nobody' in the keyring "
                              "(store it with: gateway secret set db/nobody)")
    for bad in ("nosep", "/name", "svc/", "sp ace/x", "a:b/c"):
        with pytest.raises(ConfigError) as err:
            parse_config({"mcpServers": {"db": {"command": "x", "args": [f"${{keyring:{bad}}}"]}}},
                         source="test.json", env={})
        assert str(err.value).startswith(f"test.json: server 'db', field 'args[0]': ${{keyring:{bad}}} is not "
                                         "${keyring:SERVICE/NAME} (")


@pytest.mark.parametrize(("extra", "expected"), [
    ({}, "server 'github', field 'env.GITHUB_TOKEN': no secret 'github/token' in the keyring "
         "(store it with: gateway secret set github/token)"),
    ({"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
     "server 'github', field 'env.GITHUB_TOKEN': cannot read 'github/token': no keyring backend is available ("),
    ({"GATEWAY_TEST_KEYRING_FAIL": "1"},
     "server 'github', field 'env.GITHUB_TOKEN': cannot read 'github/token': the keyring failed (KeyringError: "
     "the test keyring's daemon went away (second line of the message))"),
    ({"PYTHON_KEYRING_BACKEND": "no_such_module.Keyring"},
     "server 'github', field 'env.GITHUB_TOKEN': cannot read 'github/token': cannot load the keyring backend "
     "(ModuleNotFoundError: "),
])
def test_the_gateway_stops_with_one_line_when_the_keyring_cannot_give_the_secret(
        tmp_path: Path, mark: str, keyring_env: dict[str, str], extra: dict[str, str], expected: str) -> None:
    config = write_config(tmp_path / "config.json", {
        "github": backend_spec(mark, env={"GITHUB_TOKEN": "${keyring:github/token}"})})
    done = gateway("--auto-register", str(config), env=keyring_env | extra, mark=mark)
    assert one_line_error(done, 2).startswith(f"{config}: {expected}")


def test_secret_delete_removes_the_entry(mark: str, keyring_env: dict[str, str]) -> None:
    for name, value in (("svc/a", "first"), ("svc/b", "second"), ("svc/a", "replaced")):
        assert gateway("secret", "set", name, env=keyring_env, mark=mark, stdin=f"{value}\r\n").returncode == 0
    assert stored(keyring_env) == {"svc/a": "replaced", "svc/b": "second"}
    done = gateway("secret", "delete", "svc/a", env=keyring_env, mark=mark)
    assert done.returncode == 0 and done.stdout == "deleted 'svc/a' from the keyring (plain keyring PlainKeyring)\n"
    assert stored(keyring_env) == {"svc/b": "second"}
    done = gateway("secret", "delete", "svc/a", env=keyring_env, mark=mark)
    assert one_line_error(done, 1) == "no secret 'svc/a' in the keyring; nothing was deleted"


@pytest.mark.parametrize(("args", "stdin", "extra", "code", "expected"), [
    (["set", "nosep"], "v\n", {}, 2, "'nosep' is not SERVICE/NAME ("),
    (["set", "svc/x"], "\n", {}, 2, "the value is empty; nothing was stored"),
    (["set", "svc/x"], "", {}, 2, "the value is empty; nothing was stored"),
    (["set", "svc/x"], "v\n", {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}, 1,
     "no keyring backend is available ("),
    (["set", "svc/x"], "v\n", {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}, 1,
     "the keyring is disabled"),
    (["set", "svc/x"], "v\n", {"GATEWAY_TEST_KEYRING_FAIL": "1"}, 1,
     "cannot store 'svc/x': the keyring failed (KeyringError: the test keyring's daemon went away ("),
    (["delete", "svc/x"], None, {"GATEWAY_TEST_KEYRING_FAIL": "1"}, 1, "cannot delete 'svc/x': the keyring failed ("),
])
def test_secret_commands_fail_with_one_line(mark: str, keyring_env: dict[str, str], args: list[str],
                                            stdin: str | None, extra: dict[str, str], code: int,
                                            expected: str) -> None:
    done = gateway("secret", *args, env=keyring_env | extra, mark=mark, stdin=stdin)
    assert one_line_error(done, code).startswith(expected)
    assert stored(keyring_env) == {}


def _read_until(fd: int, wanted: bytes | None, deadline: float) -> bytes:
    """What the terminal shows until `wanted` (None: until the command closes it), within the deadline."""
    seen = b""
    while wanted is None or wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {wanted!r}; the terminal showed {seen!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side closed
                chunk = b""
            if not chunk:
                assert wanted is None, f"the command ended before {wanted!r}; the terminal showed {seen!r}"
                return seen
            seen += chunk
    return seen


@pytest.mark.parametrize("again", ["typed-s3cret", "typo-s3cret"])
def test_on_a_terminal_the_value_is_asked_twice_and_never_shown(mark: str, keyring_env: dict[str, str],
                                                                 again: str) -> None:
    master, slave = os.openpty()
    # a session of its own: no controlling terminal, so getpass reads the pty given as stdin
    proc = subprocess.Popen([GATEWAY, "secret", "set", "svc/typed"], stdin=slave, stdout=slave, stderr=slave,
                            env=gateway_env(mark) | keyring_env, start_new_session=True)
    os.close(slave)
    deadline = time.monotonic() + 30
    try:
        screen = _read_until(master, b"Secret for svc/typed: ", deadline)
        os.write(master, b"typed-s3cret\n")
        screen += _read_until(master, b"Again: ", deadline)
        os.write(master, f"{again}\n".encode())
        screen += _read_until(master, None, deadline)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert b"s3cret" not in screen
    if again == "typed-s3cret":
        assert code == 0 and b"stored 'svc/typed' in the keyring" in screen
        assert stored(keyring_env) == {"svc/typed": "typed-s3cret"}
    else:
        assert code == 2 and b"gateway: the two values differ; nothing was stored" in screen
        assert stored(keyring_env) == {}


def test_keyring_is_imported_only_for_configs_that_use_it() -> None:
    script = ("import sys\n"
              "from gateway.config import parse_config\n"
              "import gateway.cli, gateway.server\n"
              "parse_config({'mcpServers': {'a': {'command': 'x', 'env': {'T': '${T}', 'U': '${keyring:-x}'}}}},"
              " env={'T': 'v'})\n"
              "assert 'keyring' not in sys.modules, 'keyring was imported'\n")
    done = subprocess.run([PYTHON, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
