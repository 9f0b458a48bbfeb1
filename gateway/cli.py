"""The `gateway` command."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
from enum import Enum
from ipaddress import ip_address
from pathlib import Path

# Read by fastmcp at import time. Failing calls are answered to the client as error results;
# fastmcp's own rich tracebacks for them would only flood the console.
os.environ.setdefault("FASTMCP_LOG_LEVEL", "CRITICAL")

import anyio
import typer

from gateway.backends import leftovers
from gateway.backends.process import Started, kill_unused, start_ahead
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.access import Credentials

app = typer.Typer(add_completion=False, rich_markup_mode=None,
                  help="One MCP server in front of many MCP servers.")


class Transport(str, Enum):
    stdio = "stdio"
    streamable_http = "streamable-http"
    http = "http"
    sse = "sse"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"gateway: {message}", err=True)
    raise typer.Exit(code)


def _check_internals() -> None:
    """Stops here, with one line, when the installed FastMCP/mcp lack a private name the gateway uses."""
    from gateway import _compat

    for problem in _compat.problems():
        _fail(problem, 1)


async def _serve(config: GatewayConfig, pipelines: Path, transport: Transport, host: str, port: int,
                 path: str | None, allow_any_command: bool, credentials: Credentials, admin_port: int | None,
                 started: dict[str, Started], profile: str | None) -> None:
    import fastmcp
    from fastmcp.server.http import HostOriginGuardMiddleware
    from starlette.middleware import Middleware

    from gateway.console.sessions import ConsoleSessions
    from gateway.console.standalone import console_server, generated_admin_token
    from gateway.console.ui import ui_routes
    from gateway import _compat
    from gateway.http import ProfilePaths, TokenAuth, resource_metadata_routes
    from gateway.oauth import verifier_for
    from gateway.server import running_gateway
    from gateway.stdio_front import serve_stdio

    _check_internals()
    listening = None if transport is Transport.stdio else (host, port)
    settings = config.gateway
    sessions = ConsoleSessions()
    async with running_gateway(config, pipelines, allow_any_command=allow_any_command, listening=listening,
                               started=started, profile=profile) as gateway, \
            verifier_for(settings.auth.oauth) as oauth:
        routes = [*gateway.console_routes, *ui_routes(gateway.console, sessions, lambda t: credentials.access_for(t))]
        if transport is Transport.stdio:
            if admin_port is None:
                await serve_stdio(gateway.mcp)
                return
            if not credentials.admin_tokens:
                token_file = config.base_dir() / ".gateway-admin-token"
                credentials = Credentials(admin_tokens=(generated_admin_token(token_file),))
                logging.getLogger("gateway").warning("console at http://127.0.0.1:%d/ui; its operator token is in %s",
                                                     admin_port, token_file)
            server = console_server(routes, credentials, sessions, admin_port, settings.allowed_hosts,
                                    settings.allowed_origins)
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                await serve_stdio(gateway.mcp)
                server.should_exit = True  # then the task group waits for it to close its port
            return
        for route in routes[len(gateway.console_routes):]:
            gateway.mcp.custom_route(route.path, methods=sorted(route.methods or ()))(route.endpoint)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal under
        # the handler it found; a no-op there lets us go on to stop the backends.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        kind = "sse" if transport is Transport.sse else "streamable-http"
        _compat.serve_http_leanly()
        mcp_paths = [path or "/mcp"] if kind == "streamable-http" else [path or "/sse", "/messages/"]
        for route in resource_metadata_routes(oauth, mcp_paths[0]) if oauth else ():
            gateway.mcp.custom_route(route.path, methods=["GET"])(route.endpoint)
        # FastMCP guards its MCP endpoint against DNS rebinding; the same guard, outermost,
        # covers the console and its API too.
        middleware = [Middleware(HostOriginGuardMiddleware, allowed_hosts=settings.allowed_hosts,
                                 allowed_origins=settings.allowed_origins),
                      Middleware(ProfilePaths, profiles=frozenset(settings.profiles)),
                      Middleware(TokenAuth, credentials=credentials, sessions=sessions, mcp_paths=mcp_paths,
                                 oauth=oauth)]
        # run_http_async takes no idle timeout; its streamable-HTTP app reads FastMCP's public
        # setting. mcp's own default keeps an abandoned handshake-era session for 30 minutes.
        fastmcp.settings.http_session_idle_timeout = settings.session_idle_timeout
        await gateway.mcp.run_http_async(
            transport=kind, host=host, port=port, path=path, show_banner=False,
            # a shutdown waits 1 s for open requests, not uvicorn's default 2, so that the
            # backends are stopped well within the 5 s a client or supervisor allows
            uvicorn_config={"log_level": "warning", "timeout_graceful_shutdown": 1},
            middleware=middleware, allowed_hosts=settings.allowed_hosts,
            allowed_origins=settings.allowed_origins)


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    auto_register: Path | None = typer.Option(
        None, "--auto-register", "-c", metavar="FILE",
        help="Config file in the Claude-Desktop 'mcpServers' format; its servers start with the gateway."),
    transport: Transport = typer.Option(
        Transport.stdio, "--transport", "-t",
        help="How clients reach the gateway: stdio, streamable-http (alias http, served at /mcp) "
             "or sse (legacy, served at /sse)."),
    host: str = typer.Option("127.0.0.1", help="Interface for the HTTP transports."),
    port: int = typer.Option(8003, help="Port for the HTTP transports."),
    path: str | None = typer.Option(None, help="Endpoint path for HTTP (default /mcp, or /sse)."),
    pipelines: Path | None = typer.Option(
        None, "--pipelines", metavar="DIR",
        help="Directory of pipeline files (YAML/JSON), reloaded on change. Default: 'pipelines' "
             "next to the config file, else ./pipelines."),
    allow_any_command: bool = typer.Option(
        False, "--allow-any-command",
        help="Let register_server start any command and reach any URL. Unsafe: an LLM could run "
             "anything. Prefer templates in gateway.catalog."),
    auth_token: list[str] = typer.Option(
        [], "--auth-token", metavar="TOKEN",
        help="HTTP clients must send 'Authorization: Bearer TOKEN' or 'X-API-Key: TOKEN'. Repeatable; "
             "also GATEWAY_AUTH_TOKENS (comma-separated) and gateway.auth_tokens in the config."),
    admin_token: list[str] = typer.Option(
        [], "--admin-token", metavar="TOKEN",
        help="Operator token: only these may use the console (/ui) and its REST API, and change the "
             "gateway over HTTP. Repeatable; also GATEWAY_ADMIN_TOKENS and gateway.admin_tokens."),
    admin_port: int | None = typer.Option(
        None, "--admin-port", metavar="PORT",
        help="With the stdio transport: also serve the console and its REST API on 127.0.0.1:PORT."),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Serve HTTP on a non-loopback --host without tokens (unsafe)."),
    profile: str | None = typer.Option(
        None, "--profile", metavar="NAME",
        help="With the stdio transport: serve only this profile of gateway.profiles (over HTTP each "
             "profile is served at /p/NAME/mcp)."),
    log_level: str = typer.Option("WARNING", help="Gateway log level (logs go to stderr)."),
) -> None:
    """Run the gateway (stdio by default)."""
    if ctx.invoked_subcommand is not None:
        return
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(auto_register) if auto_register else GatewayConfig()
    except ConfigError as exc:
        _fail(str(exc))
    credentials = Credentials(
        tuple([*auth_token, *config.gateway.auth_tokens, *_from_env("GATEWAY_AUTH_TOKENS")]),
        tuple([*admin_token, *config.gateway.admin_tokens, *_from_env("GATEWAY_ADMIN_TOKENS")]),
        tuple((token, name) for name, spec in config.gateway.profiles.items() for token in spec.tokens))
    every_token = [*credentials.client_tokens, *credentials.admin_tokens, *(t for t, _ in credentials.profile_tokens)]
    if any(token.startswith("REPLACE-ME") for token in every_token):
        _fail("a token is still a placeholder (REPLACE-ME...), as in deploy/kubernetes/secret.yaml: "
              "put real tokens there, e.g. from `openssl rand -hex 32`")
    if profile is not None:
        if transport is not Transport.stdio:
            _fail(f"--profile is for the stdio transport; over HTTP the profile is served at /p/{profile}/mcp")
        if profile not in config.gateway.profiles:
            known = ", ".join(sorted(config.gateway.profiles)) or "none are configured (gateway.profiles)"
            _fail(f"unknown profile '{profile}'; profiles: {known}")
    required = credentials.required or config.gateway.auth.oauth is not None
    if transport is not Transport.stdio and not required and not no_auth and not is_loopback(host):
        _fail(f"refusing to serve on {host} without authentication: give --auth-token (or "
              f"GATEWAY_AUTH_TOKENS), or --no-auth to accept any client on the network")
    if transport is not Transport.stdio and (problem := _unbindable(host, port)):
        _fail(f"cannot serve on {host}:{port}: {problem}. Choose another --port or stop what uses it", 1)
    if admin_port is not None:
        if transport is not Transport.stdio:
            _fail("--admin-port is for the stdio transport; over HTTP the console is served at /ui on --port")
        if problem := _unbindable("127.0.0.1", admin_port):
            _fail(f"cannot serve the console on 127.0.0.1:{admin_port}: {problem}. Choose another --admin-port", 1)
    if config.gateway.sandbox == "bwrap" and not shutil.which("bwrap"):
        _fail("gateway.sandbox is 'bwrap' but bwrap is not installed: install Debian's bubblewrap package "
              "(./setup.sh --with-sandbox) or set gateway.sandbox to 'none'")
    if allow_any_command or config.gateway.allow_any_command:
        logging.getLogger("gateway").warning(
            "any command may be registered at runtime (--allow-any-command): clients can run anything")
    # The configured stdio backends start now, before the MCP stack is imported: their start-up,
    # usually the longest part of the gateway's, overlaps ours.
    leftovers.begin(config.state_path())
    started = start_ahead(config.mcpServers)
    try:
        anyio.run(_serve, config, _pipelines_dir(pipelines, auto_register), transport, host, port, path,
                  allow_any_command, credentials, admin_port, started, profile,
                  # uvloop takes about 0.1 ms of CPU off each call over HTTP; over stdio it saves
                  # less than the 2 MB it costs
                  backend_options={"use_uvloop": transport is not Transport.stdio and _has_uvloop()})
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        _fail(f"cannot serve: {exc}", 1)
    except BaseExceptionGroup as group:
        if group.subgroup(SystemExit) is None:
            raise
        # uvicorn exits when it cannot listen after all (the port was taken since we checked)
        _fail("cannot serve: the HTTP server did not start; its reason is logged above", 1)
    finally:
        kill_unused(started)
        leftovers.end()


def _from_env(name: str) -> list[str]:
    return [token for token in (t.strip() for t in os.environ.get(name, "").split(",")) if token]


def _unbindable(host: str, port: int) -> str | None:
    """Why the HTTP server could not listen there, found before any backend is started."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(infos[0][4])
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _pipelines_dir(given: Path | None, config: Path | None) -> Path:
    if given is not None:
        return given
    return (config.resolve().parent if config else Path.cwd()) / "pipelines"


@app.command()
def validate(
    pipelines: Path | None = typer.Option(None, "--pipelines", metavar="DIR",
                                          help="Pipeline directory (default as for serving)."),
    auto_register: Path | None = typer.Option(
        None, "--auto-register", "-c", metavar="FILE",
        help="Also start this config's backends and check each step's server, tool and args."),
) -> None:
    """Check every pipeline file; exit 0 when all are valid, 1 with one line per problem."""
    logging.basicConfig(level="CRITICAL")
    try:
        config = load_config(auto_register) if auto_register else None
    except ConfigError as exc:
        _fail(str(exc))
    directory = _pipelines_dir(pipelines, auto_register)
    if not directory.is_dir():
        _fail(f"{directory}: no such pipeline directory", 1)
    problems, count = anyio.run(_validate, directory, config)
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"ok: {count} pipeline{'s' if count != 1 else ''} in {directory}"
               + (", checked against the running backends" if config else ""))


async def _validate(directory: Path, config: GatewayConfig | None) -> tuple[list[str], int]:
    from gateway.backends.pool import BackendPool
    from gateway.backends.tool_rules import ToolRules
    from gateway.store.file import StateFile
    from gateway.pipelines.checks import check_against_pool
    from gateway.pipelines.loader import PipelineRegistry

    _check_internals()
    registry = PipelineRegistry(directory)
    registry.refresh()
    problems = list(registry.errors.values())
    if config is not None:
        rules = ToolRules(config.mcpServers)
        state = StateFile(config.state_path())
        state.load()
        rules.restore(state.keep("tools", rules.saved))  # the operator's changes made at runtime
        async with BackendPool(config.gateway, tool_rules=rules) as pool:
            await pool.start_all(config.mcpServers)
            for pipeline in registry.pipelines.values():
                problems += check_against_pool(pipeline, pool)
    return problems, len(registry.pipelines)


secret_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                         help="Secrets in the operating system's keyring, for ${keyring:SERVICE/NAME} in the config.")
app.add_typer(secret_app, name="secret")
_ENTRY_HELP = "The entry, as written in ${keyring:SERVICE/NAME}."


def _keyring_for(reference: str) -> tuple[tuple[str, str], object]:
    """(service, name) and the keyring backend, or a one-line error."""
    from gateway.config import keyring_entry, open_keyring

    entry = keyring_entry(reference)
    if entry is None:
        _fail(f"{reference!r} is not SERVICE/NAME (letters, digits and ._-@, split at the first '/')")
    try:
        return entry, open_keyring()
    except ConfigError as exc:
        _fail(str(exc), 1)


def _secret_value(reference: str) -> str:
    """Never from the command line: typed twice, hidden, on a terminal; else one line of stdin."""
    if sys.stdin is None:
        _fail("no value: standard input is closed; nothing was stored")
    if sys.stdin.isatty():
        import getpass

        try:
            value = getpass.getpass(f"Secret for {reference}: ")
            if value and getpass.getpass("Again: ") != value:
                _fail("the two values differ; nothing was stored")
        except (EOFError, KeyboardInterrupt):
            typer.echo("", err=True)
            _fail("cancelled; nothing was stored", 1)
    else:
        value = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not value:
        _fail("the value is empty; nothing was stored")
    return value


@secret_app.command("set")
def secret_set(reference: str = typer.Argument(..., metavar="SERVICE/NAME", help=_ENTRY_HELP)) -> None:
    """Store a secret: asked for twice, hidden (or one line from stdin when it is not a terminal)."""
    from gateway.config import keyring_problem

    entry, backend = _keyring_for(reference)
    value = _secret_value(reference)
    try:
        backend.set_password(*entry, value)
    except Exception as exc:
        _fail(f"cannot store {reference!r}: {keyring_problem(exc)}", 1)
    typer.echo(f"stored {reference!r} in the keyring ({backend.name}); the config reads it as "
               f"${{keyring:{reference}}}")


@secret_app.command("delete")
def secret_delete(reference: str = typer.Argument(..., metavar="SERVICE/NAME", help=_ENTRY_HELP)) -> None:
    """Remove a secret from the keyring."""
    from keyring.errors import PasswordDeleteError

    from gateway.config import keyring_problem

    entry, backend = _keyring_for(reference)
    try:
        backend.delete_password(*entry)
    except PasswordDeleteError:  # what the backends raise for an entry they do not hold
        _fail(f"no secret {reference!r} in the keyring; nothing was deleted", 1)
    except Exception as exc:
        _fail(f"cannot delete {reference!r}: {keyring_problem(exc)}", 1)
    typer.echo(f"deleted {reference!r} from the keyring ({backend.name})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
