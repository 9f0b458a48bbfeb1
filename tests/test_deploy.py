"""The container image, docker compose and the Kubernetes manifests agree with the gateway.

No container runtime or cluster runs here, so what can be checked offline is: every manifest against
the Kubernetes JSON schemas (kubernetes-validate ships them), the command, port, probes, config and
install steps of the Dockerfile, docker-compose.yml and deploy/kubernetes/ against each other, the CLI,
the config parser and setup.sh, and the image's command itself run from this checkout.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import socket
import subprocess
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
import yaml

from conftest import GATEWAY, PYTHON, ROOT, ServedProcess, gateway_env
from gateway.config import parse_config
from gateway.http import PUBLIC_PATHS

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
CONTAINER_CONFIG = DEPLOY / "gateway-config.container.json"
VENV = "/opt/venv"  # the image's virtualenv
CLIENT, ADMIN = "client-tok-d3p1", "admin-tok-d3p1"


# --- the Dockerfile, read by a parser of a few lines ------------------------------------------------

@dataclass
class Instruction:
    name: str  # upper case
    args: str  # as written, continuation lines joined
    flags: dict[str, str] = field(default_factory=dict)  # --name=value before the arguments
    words: list[str] = field(default_factory=list)  # the JSON array, or the shell words

    @property
    def text(self) -> str:
        return " ".join(self.words)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with their arguments: comments dropped, `\\` continuations joined (as Docker does:
    the backslash and the newline go, nothing else), flags split off, exec form decoded."""
    logical: list[str] = []
    pending: str | None = None
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (pending is None and not stripped):
            continue
        line = raw.rstrip()
        joined = line if pending is None else pending + line
        if joined.endswith("\\"):
            pending = joined[:-1]
            continue
        logical.append(joined.strip())
        pending = None
    assert pending is None, "the Dockerfile ends inside a continued line"
    instructions = []
    for line in logical:
        name, _, args = line.partition(" ")
        args = args.strip()
        flags: dict[str, str] = {}
        while match := re.match(r"--([a-z-]+)=(\S+)\s+", args):
            flags[match.group(1)] = match.group(2)
            args = args[match.end():]
        if name.upper() == "HEALTHCHECK" and args.startswith("CMD "):
            args = args[4:].strip()
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        instructions.append(Instruction(name.upper(), args, flags, words))
    return instructions


@cache
def dockerfile() -> list[list[Instruction]]:
    """The stages, each from its FROM on, with global ARG defaults substituted in FROM."""
    instructions = parse_dockerfile((ROOT / "Dockerfile").read_text())
    arg_defaults = {}
    stages: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.name == "ARG" and not stages:
            name, _, default = instruction.args.partition("=")
            arg_defaults[name] = default
        elif instruction.name == "FROM":
            words = [re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults[m.group(1)], w) for w in instruction.words]
            stages.append([Instruction("FROM", " ".join(words), {}, words)])
        else:
            assert stages, f"{instruction.name} before the first FROM"
            stages[-1].append(instruction)
    return stages


def runtime(name: str) -> list[Instruction]:
    return [i for i in dockerfile()[-1] if i.name == name]


def only(instructions: list[Instruction]) -> Instruction:
    assert len(instructions) == 1, instructions
    return instructions[0]


def image_args() -> list[str]:
    """The gateway's arguments in the image: its CMD, after an ENTRYPOINT that ends in `gateway`."""
    entrypoint = only(runtime("ENTRYPOINT")).words
    assert entrypoint[-1] == "gateway" and entrypoint[:-1] in ([], ["tini", "--"]), entrypoint
    return only(runtime("CMD")).words


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def copies(stage: list[Instruction]) -> dict[str, str]:
    """COPY from the build context in one stage: source -> destination."""
    found = {}
    for instruction in stage:
        if instruction.name == "COPY" and "from" not in instruction.flags:
            *sources, destination = instruction.words
            found |= {source: destination for source in sources}
    return found


def run_lines(stage: list[Instruction]) -> list[str]:
    return [command.strip() for i in stage if i.name == "RUN" for command in i.args.split("&&")]


# --- the manifests and compose -------------------------------------------------------------------------

@cache
def manifests() -> dict[str, list[dict[str, Any]]]:
    return {path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
            for path in sorted(K8S.glob("*.yaml"))}


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [doc for docs in manifests().values() for doc in docs
             if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def gateway_deployment() -> dict[str, Any]:
    return resource("Deployment", "mcp-gateway")


def gateway_container() -> dict[str, Any]:
    return only_item(gateway_deployment()["spec"]["template"]["spec"]["containers"])


def only_item(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, named or numbered, as the container's port number."""
    if isinstance(port, int):
        return port
    return only_item([p["containerPort"] for p in container["ports"] if p["name"] == port])


def deployment_env() -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in gateway_container()["env"]}


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@cache
def container_config() -> dict[str, Any]:
    return json.loads(CONTAINER_CONFIG.read_text())


def url_of_probe(words: list[str]) -> str:
    """The URL a `python -c "... urlopen('URL' ..."` healthcheck asks."""
    return re.search(r"urlopen\('([^']+)'", " ".join(words)).group(1)


@pytest.fixture(scope="module")
def cli_help() -> str:
    done = subprocess.run([GATEWAY, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- Kubernetes ---------------------------------------------------------------------------------------------

def schema_versions() -> list[str]:
    """The oldest Kubernetes release the manifests are meant for (1.29), and the newest bundled."""
    from kubernetes_validate.utils import all_versions, major_minor
    from packaging.version import Version

    known = [major_minor(v) for v in all_versions()]
    return sorted({min((v for v in known if Version(v) >= Version("1.29")), key=Version), known[-1]}, key=Version)


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_every_manifest_is_valid_kubernetes_offline(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import kubernetes_validate

    def no_network(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the schemas must come from the package, not the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    documents = manifests()[name]
    assert documents
    for document in documents:
        for version in schema_versions():
            # strict: an unknown field (a typo) is an error too, as `kubectl apply` would report it
            kubernetes_validate.validate(document, version, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = only_item(manifests()["kustomization.yaml"])
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(set(manifests()) - {"kustomization.yaml"})
    image = gateway_container()["image"].split(":")[0]
    assert image in {entry["name"] for entry in kustomization["images"]}


def test_the_kubernetes_objects_are_wired_together() -> None:
    deployment, container = gateway_deployment(), gateway_container()
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = resource("Service", "mcp-gateway")
    assert service["spec"]["selector"].items() <= labels.items()
    pdb = resource("PodDisruptionBudget", "mcp-gateway")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    # tokens from the Secret, each key the Deployment names present, and visibly a placeholder
    secret = resource("Secret", "mcp-gateway-tokens")
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert set(refs) == {"GATEWAY_AUTH_TOKENS", "GATEWAY_ADMIN_TOKENS"}
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        assert all(token.startswith("REPLACE-ME") for token in secret["stringData"][ref["key"]].split(","))

    # the store is the Redis of redis.yaml, which only the gateway's pods may reach
    store = urlsplit(deployment_env()["GATEWAY_STORE"])
    redis_service = resource("Service", store.hostname)
    assert store.scheme == "redis" and store.port in {p["port"] for p in redis_service["spec"]["ports"]}
    redis_pods = resource("Deployment", store.hostname)["spec"]["template"]["metadata"]["labels"]
    assert redis_service["spec"]["selector"].items() <= redis_pods.items()
    policy = resource("NetworkPolicy", "mcp-gateway-redis")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_pods.items()
    allowed = only_item(only_item(policy["ingress"])["from"])["podSelector"]["matchLabels"]
    assert allowed.items() <= labels.items() and not allowed.items() <= redis_pods.items()

    # the config from the ConfigMap, mounted at the path the command reads
    config_path = option(container["args"], "--auto-register")
    mount = only_item([m for m in container["volumeMounts"] if m["mountPath"] == config_path])
    volume = only_item([v for v in pod["volumes"] if v["name"] == mount["name"]])
    assert mount["subPath"] in resource("ConfigMap", volume["configMap"]["name"])["data"]

    # non-root with a read-only root: the image's user, and writable emptyDirs where the gateway writes
    security = pod["securityContext"]
    user, group = only(runtime("USER")).args.split(":")
    assert security["runAsNonRoot"] and (security["runAsUser"], security["runAsGroup"]) == (int(user), int(group))
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert not container["securityContext"]["allowPrivilegeEscalation"]
    writable = {m["mountPath"] for m in container["volumeMounts"]
                if "emptyDir" in only_item([v for v in pod["volumes"] if v["name"] == m["name"]])}
    state_dir = str(Path(container_config()["gateway"]["state_file"]).parent)
    assert writable == {state_dir, "/tmp"}
    assert {"requests", "limits"} <= container["resources"].keys()


def test_session_affinity_for_handshake_era_clients() -> None:
    service = resource("Service", "mcp-gateway")
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    ingress = resource("Ingress", "mcp-gateway")
    key = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-hash-by"]
    # what ingress-nginx accepts for this annotation (internal/ingress/annotations/upstreamhashby)
    assert re.fullmatch(r"[A-Za-z0-9\-_${}]*", key)
    # The key must be the same on a session's `initialize` (no Mcp-Session-Id yet) as on the requests
    # after it, or the session would be created on one replica and asked for on another: the client's
    # credential is there from the first request on.
    assert "mcp_session_id" not in key and "$http_authorization" in key
    backend = only_item(only_item(ingress["spec"]["rules"])["http"]["paths"])["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


# --- the command, port, probes and config, everywhere ---------------------------------------------------

def test_image_compose_and_deployment_run_the_same_gateway_command(cli_help: str) -> None:
    args = image_args()
    assert gateway_container()["args"] == args and "command" not in gateway_container()  # the image's entrypoint
    gateway = compose()["services"]["gateway"]
    assert gateway["command"] == args and "entrypoint" not in gateway
    known = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", cli_help))
    used = [arg for arg in args if arg.startswith("--")]
    assert set(used) <= known, f"options the gateway does not have: {set(used) - known}"
    transports = re.search(r"--transport <([a-z|-]+)>", cli_help).group(1).split("|")
    assert option(args, "--transport") == "streamable-http" in transports
    assert option(args, "--host") == "0.0.0.0" and "--no-auth" not in args  # off loopback: tokens required


def test_one_port_everywhere() -> None:
    port = int(option(image_args(), "--port"))
    assert only(runtime("EXPOSE")).words == [str(port)]
    assert urlsplit(url_of_probe(only(runtime("HEALTHCHECK")).words)).port == port
    container = gateway_container()
    assert container_port(container, "http") == port
    for probe in ("livenessProbe", "readinessProbe"):
        assert container_port(container, container[probe]["httpGet"]["port"]) == port
    service_port = only_item(resource("Service", "mcp-gateway")["spec"]["ports"])
    assert container_port(container, service_port["targetPort"]) == port
    gateway = compose()["services"]["gateway"]
    assert [p.split(":")[-1] for p in gateway["ports"]] == [str(port)]  # strings: YAML reads 8003:8003 as base 60
    assert urlsplit(url_of_probe(gateway["healthcheck"]["test"])).port == port


def test_probes_ask_the_health_and_readiness_endpoints() -> None:
    container = gateway_container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert urlsplit(url_of_probe(only(runtime("HEALTHCHECK")).words)).path == "/healthz"
    assert urlsplit(url_of_probe(compose()["services"]["gateway"]["healthcheck"]["test"])).path in {"/healthz", "/readyz"}
    assert {"/healthz", "/readyz"} <= PUBLIC_PATHS  # probes carry no token


def derived_container_config() -> dict[str, Any]:
    """gateway-config.json as the image runs it: its relative paths made the image's absolute ones,
    the store chosen by the environment, the state file where the container may write."""
    def absolute(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: absolute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [absolute(v) for v in value]
        if isinstance(value, str):
            value = re.sub(r"^\.venv/bin/", f"{VENV}/bin/", value)
            return re.sub(r"(^|:-)examples/", r"\1/opt/mcp-gateway/examples/", value)
        return value

    config = absolute(json.loads((ROOT / "gateway-config.json").read_text()))
    config["gateway"] |= {"store": "${GATEWAY_STORE:-file}", "state_file": "/var/lib/mcp-gateway/gateway-state.json"}
    return config


def test_the_container_config_is_the_shipped_one_for_the_image_and_valid() -> None:
    assert container_config() == derived_container_config()
    configmap = resource("ConfigMap", "mcp-gateway-config")
    assert json.loads(configmap["data"]["gateway-config.json"]) == container_config()

    # the image bakes it in where the command reads it; compose mounts it there
    config_path = option(image_args(), "--auto-register")
    assert copies(dockerfile()[-1])[str(CONTAINER_CONFIG.relative_to(ROOT))] == config_path
    gateway = compose()["services"]["gateway"]
    assert f"./{CONTAINER_CONFIG.relative_to(ROOT)}:{config_path}:ro" in gateway["volumes"]

    # valid for the gateway with exactly the environment each deployment gives it (nothing else)
    placeholders = {"GATEWAY_AUTH_TOKENS": CLIENT, "GATEWAY_ADMIN_TOKENS": ADMIN}
    k8s_env = {k: v if isinstance(v, str) else placeholders[k] for k, v in deployment_env().items()}
    compose_env = {k: placeholders.get(k, v) for k, v in gateway["environment"].items()}
    assert parse_config(container_config(), env={}).gateway.store == "file"  # docker run without a store
    for env in (k8s_env, compose_env):
        parsed = parse_config(container_config(), env=env, base_dir=Path(config_path).parent)
        assert parsed.gateway.store == env["GATEWAY_STORE"] and parsed.gateway.store.startswith("redis://")
        assert str(parsed.state_path().parent) == "/var/lib/mcp-gateway"
        for spec in [*parsed.mcpServers.values(), *parsed.gateway.catalog.values()]:
            assert Path(spec.command).is_absolute(), spec.command


def image_to_checkout(path: str, state_dir: Path) -> Path:
    """Where a path of the image is in this checkout: COPYs from the context, the virtualenv, the state."""
    if path.startswith(f"{VENV}/bin/"):
        return Path(PYTHON).parent / path.removeprefix(f"{VENV}/bin/")
    if path.startswith("/var/lib/mcp-gateway"):
        return state_dir / path.removeprefix("/var/lib/mcp-gateway").lstrip("/")
    for source, destination in copies(dockerfile()[-1]).items():
        if path == destination.rstrip("/") or path.startswith(destination.rstrip("/") + "/"):
            return ROOT / source / path.removeprefix(destination.rstrip("/")).lstrip("/")
    raise AssertionError(f"{path}: not a path the Dockerfile puts in the image")


def image_paths(value: Any) -> list[str]:
    """Absolute paths in a config, ${VAR:-defaults} included."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in image_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in image_paths(v)]
    if isinstance(value, str):
        inner = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
        value = inner.group(1) if inner else value
        return [value] if value.startswith("/") else []
    return []


def test_every_path_of_the_container_config_is_in_the_image(tmp_path: Path) -> None:
    paths = image_paths(container_config())
    assert any(p.endswith("sqlite_server.py") for p in paths)
    creates_the_db = any("create_sample_db" in line for line in run_lines(dockerfile()[-1]))
    for path in paths:
        here = image_to_checkout(path, tmp_path)
        if path.startswith("/var/lib/mcp-gateway"):
            continue  # made at run time
        if path.endswith(".db"):  # the sample database is made at build time, like the backend would
            assert creates_the_db and here.parent.is_dir(), path
            continue
        assert here.exists(), f"{path} (in this checkout: {here})"


# --- the image's build -------------------------------------------------------------------------------------------

def test_the_dockerfile_installs_like_setup_sh() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = re.fullmatch(r">=(\d+\.\d+)", project["requires-python"]).group(1)
    setup = (ROOT / "setup.sh").read_text()
    assert f"sys.version_info < ({floor.replace('.', ', ')})" in setup
    stages = dockerfile()
    assert len(stages) >= 2, "multi-stage: a builder and a slim runtime"
    for stage in stages:
        assert re.fullmatch(rf"python:{re.escape(floor)}-slim(-\w+)?", stage[0].words[0]), stage[0].words
    builder, final = stages[0], stages[-1]
    assert builder[0].words[1:] == ["AS", "builder"]

    # setup.sh's pip steps, in the builder's virtualenv: pip upgraded, then the project, neither
    # editable nor with the test extras, but with every other extra there is
    steps = [shlex.split(line) for line in re.findall(r"^\.venv/bin/python -m pip install (.*)$", setup, re.M)]
    assert [s[-2:] for s in steps] == [["--upgrade", "pip"], ["-e", ".[test]"]]
    pip = [shlex.split(line.split("-m pip install", 1)[1]) for line in run_lines(builder) if "-m pip install" in line]
    assert all(line.startswith(f"{VENV}/bin/python -m pip") for line in run_lines(builder) if "pip install" in line)
    assert f"python -m venv {VENV}" in run_lines(builder)
    assert pip[0][-2:] == ["--upgrade", "pip"]
    extras = sorted(set(project.get("optional-dependencies", {})) - {"test"})
    assert pip[-1] == ["." + (f"[{','.join(extras)}]" if extras else "")]

    # what the package needs to build: its metadata, readme and packages (setuptools' find: gateway*)
    needed = {"pyproject.toml", project["readme"], "gateway/"}
    assert needed <= copies(builder).keys()
    assert any(i.name == "COPY" and i.flags.get("from") == "builder" and i.words == [VENV, VENV] for i in final)
    assert copies(final).get("examples/") == "/opt/mcp-gateway/examples/"

    user, group = only(runtime("USER")).args.split(":")
    assert int(user) != 0 and int(group) != 0  # numeric, so that runAsNonRoot can check it
    assert any(f"-o {user} -g {group}" in line and "/var/lib/mcp-gateway" in line for line in run_lines(final))
    assert runtime("HEALTHCHECK")


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(re-include?, pattern) as Docker reads .dockerignore: `*` within one path element, `**` any
    number of them; a file is out when the last pattern matching it or a parent directory excludes."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        regex = "".join("(?:.*/)?" if part == "**/" else ".*" if part == "**" else "[^/]*" if part == "*"
                        else "[^/]" if part == "?" else part if part.startswith("[") else re.escape(part)
                        for part in re.findall(r"\*\*/|\*\*|\*|\?|\[[^]]*\]|[^*?[]+", pattern))
        rules.append((include, re.compile(regex)))
    return rules


def in_build_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    included = True
    for include, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = include
    return included


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    rules = dockerignore_rules()
    project_files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                   capture_output=True, text=True, check=True).stdout.splitlines()
    sources = [s.rstrip("/") for stage in dockerfile() for s in copies(stage)]
    for source in sources:
        files = [f for f in project_files if f == source or f.startswith(source + "/")]
        assert files and (ROOT / source).exists(), source
        left_out = [f for f in files if not in_build_context(f, rules) and (ROOT / f).exists()]
        assert not left_out, f".dockerignore leaves out files the image needs: {left_out}"
    for path in [".venv/bin/python", ".git/HEAD", "tests/conftest.py", "gateway/__pycache__/cli.cpython-311.pyc",
                 "examples/backends/data/sample.db", "gateway-state.json", "benchmarks/catalog"]:
        assert not in_build_context(path, rules), path


# --- docker compose ----------------------------------------------------------------------------------------

def test_compose_runs_the_image_with_redis_as_the_store() -> None:
    services = compose()["services"]
    gateway = services["gateway"]
    assert gateway["build"] in (".", {"context": "."})
    for name in ("GATEWAY_AUTH_TOKENS", "GATEWAY_ADMIN_TOKENS"):  # compose stops when they are not set
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", gateway["environment"][name]), gateway["environment"][name]
    store = urlsplit(gateway["environment"]["GATEWAY_STORE"])
    assert store.scheme == "redis" and store.port == 6379
    redis = services[store.hostname]
    assert re.fullmatch(r"redis:7(\.\d+)*", redis["image"])
    assert gateway["depends_on"][store.hostname]["condition"] == "service_healthy"
    assert "redis-cli" in redis["healthcheck"]["test"] and gateway["healthcheck"]["test"][0] == "CMD"
    state_dir = str(Path(container_config()["gateway"]["state_file"]).parent)
    assert any(v.split(":")[1] == state_dir for v in gateway["volumes"] if isinstance(v, str))
    assert gateway.get("read_only") is True


# --- the image's command, run from this checkout ----------------------------------------------------------------

def checkout_config(tmp_path: Path, mark: str) -> Path:
    """The container config with the image's paths made this checkout's, in a directory laid out like
    the image's /etc/mcp-gateway (pipelines beside it); every backend carries the test's mark."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if isinstance(value, str):
            for path in image_paths(value):
                value = value.replace(path, str(image_to_checkout(path, state_dir)))
        return value

    config = rewrite(copy.deepcopy(container_config()))
    for spec in config["mcpServers"].values():
        spec.setdefault("env", {})["GATEWAY_TEST_MARK"] = mark
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "pipelines").symlink_to(ROOT / "pipelines")
    path = etc / "gateway-config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def checkout_command(config: Path, port: int | str) -> list[str]:
    args = image_args()
    args[args.index("--port") + 1] = str(port)
    args[args.index("--auto-register") + 1] = str(config)
    return [GATEWAY, *args]


async def test_the_image_command_serves_health_and_readiness_and_wants_a_token(tmp_path: Path, mark: str) -> None:
    config = checkout_config(tmp_path, mark)
    home = {"HOME": str(tmp_path / "state")}

    # without tokens it refuses to serve off loopback, before starting anything
    env = {k: v for k, v in gateway_env(mark).items() if not k.startswith("GATEWAY_") or k == "GATEWAY_TEST_MARK"}
    refused = subprocess.run(checkout_command(config, 8003), env=env | home, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "refusing to serve on 0.0.0.0 without authentication" in refused.stderr

    tokens = {"GATEWAY_AUTH_TOKENS": CLIENT, "GATEWAY_ADMIN_TOKENS": ADMIN}
    async with ServedProcess(checkout_command(config, "{port}"), "/mcp", env | home | tokens) as (url, _proc):
        base = url.removesuffix("/mcp")
        async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
            health = await http.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})

            initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "test_deploy", "version": "0"}}}
            accept = {"Accept": "application/json, text/event-stream"}
            refused_call = await http.post("/mcp", json=initialize, headers=accept)
            assert refused_call.status_code == 401
            served = await http.post("/mcp", json=initialize, headers=accept | {"Authorization": f"Bearer {CLIENT}"})
            assert served.status_code == 200

            # ready once every configured backend had its first start; all of them start from this config
            with anyio.fail_after(60):
                while (ready := await http.get("/readyz")).status_code == 503:
                    await anyio.sleep(0.05)
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            servers = (await http.get("/servers", headers={"Authorization": f"Bearer {ADMIN}"})).json()["servers"]
            assert {s["name"]: s["status"] for s in servers} == {name: "ready" for name in container_config()["mcpServers"]}


def test_the_placeholder_tokens_of_the_example_secret_are_refused() -> None:
    """Applied unedited, the example Secret would make its placeholder an operator's token: the
    gateway refuses to start with it."""
    secret = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "secret.yaml").read_text())
    placeholder = secret["stringData"]["GATEWAY_ADMIN_TOKENS"]
    assert placeholder.startswith("REPLACE-ME")
    answer = subprocess.run([GATEWAY, "--transport", "streamable-http", "--port", "1"], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL,
                            env={**os.environ, "GATEWAY_ADMIN_TOKENS": placeholder})
    assert answer.returncode == 2 and "a token is still a placeholder" in answer.stderr
