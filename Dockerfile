# mcp-gateway with the example backends, serving streamable HTTP on port 8003 (see deploy/README.md).
#
#   docker build -t mcp-gateway:0.1.0 .
#   docker run --rm -p 8003:8003 -e GATEWAY_AUTH_TOKENS=... -e GATEWAY_ADMIN_TOKENS=... mcp-gateway:0.1.0
#
# For linux/amd64, where every dependency comes as a wheel; on arm64 wordllama has none and would
# need a C compiler in the builder stage.
ARG PYTHON_VERSION=3.11

# --- builder: a virtualenv holding the gateway and its dependencies (the same pip steps as setup.sh,
# without -e and without the test extras)
FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --upgrade pip
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
RUN /opt/venv/bin/python -m pip install .

# --- runtime
FROM python:${PYTHON_VERSION}-slim
# tini as PID 1: passes SIGTERM on to the gateway (which then stops its backends) and reaps the
# orphans of backend processes. Not pinned: the base image's Debian release decides its version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can check it. /var/lib/mcp-gateway holds the
# state file, the record of running backends and the work directories of servers registered at
# runtime: the only place the gateway writes (a volume there keeps it across restarts).
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mcp-gateway --no-create-home \
        --shell /usr/sbin/nologin gateway \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/mcp-gateway
COPY --from=builder /opt/venv /opt/venv
COPY examples/ /opt/mcp-gateway/examples/
# the sample database, made now: at run time /opt is read-only
RUN /opt/venv/bin/python -B -c "import sys; sys.path.insert(0, '/opt/mcp-gateway/examples/backends'); \
import sqlite_server as s; s.create_sample_db(s.DEFAULT_DB)"
# the config and, beside it, the pipelines (their default place); mount another config over the file
COPY pipelines/ /etc/mcp-gateway/pipelines/
COPY deploy/gateway-config.container.json /etc/mcp-gateway/gateway-config.json

ENV PATH=/opt/venv/bin:$PATH \
    HOME=/var/lib/mcp-gateway \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/mcp-gateway
EXPOSE 8003
# liveness: /healthz answers 200 while the process serves (no token needed); slim has no curl
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8003/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["tini", "--", "gateway"]
# Off loopback the gateway refuses to start without tokens: GATEWAY_AUTH_TOKENS (clients,
# comma-separated) and GATEWAY_ADMIN_TOKENS (operators), or gateway.auth_tokens in the config.
CMD ["--transport", "streamable-http", "--host", "0.0.0.0", "--port", "8003", \
     "--auto-register", "/etc/mcp-gateway/gateway-config.json"]
