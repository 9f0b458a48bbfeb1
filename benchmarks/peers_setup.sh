#!/usr/bin/env bash
# Installs the one-server bridges that suite.py's `peers` group measures beside the gateway, into
# benchmarks/.peers/ (git-ignored), away from the project's venv:
#
#   benchmarks/.peers/mcp-proxy/   a venv with sparfenyuk's mcp-proxy (it needs mcp < 2; the gateway uses mcp 2)
#   benchmarks/.peers/node/        supergateway from npm
#
#     bash benchmarks/peers_setup.sh
#
# Idempotent: a peer already installed at the pinned version is left alone. Versions are exact, so
# that figures from different runs compare the same code.
set -euo pipefail

MCP_PROXY_VERSION=0.13.0
MCP_VERSION=1.30.0  # the mcp SDK mcp-proxy runs on (it needs mcp < 2), pinned too
SUPERGATEWAY_VERSION=4.0.0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$HERE/.peers"
VENV="$PEERS/mcp-proxy"
NODE_PREFIX="$PEERS/node"
PYTHON="${PYTHON:-python3}"

mkdir -p "$PEERS"

# -- mcp-proxy -------------------------------------------------------------------------------------
installed_proxy() {  # "MCP_PROXY_VERSION MCP_VERSION" as installed, or nothing
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c \
        'from importlib.metadata import version as v; print(v("mcp-proxy"), v("mcp"))' 2>/dev/null || true
}
if [ "$(installed_proxy)" != "$MCP_PROXY_VERSION $MCP_VERSION" ]; then
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # pip's warnings about this machine's extra local indexes are noise; its errors still show.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "mcp-proxy==$MCP_PROXY_VERSION" "mcp==$MCP_VERSION" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
[ "$(installed_proxy)" = "$MCP_PROXY_VERSION $MCP_VERSION" ] || {
    echo "peers_setup: mcp-proxy $MCP_PROXY_VERSION with mcp $MCP_VERSION did not install" >&2; exit 1; }
"$VENV/bin/mcp-proxy" --help >/dev/null

# -- supergateway ----------------------------------------------------------------------------------
command -v npm >/dev/null || { echo "peers_setup: npm not found; supergateway needs Node.js >= 20" >&2; exit 1; }
installed_sg() {
    local pkg="$NODE_PREFIX/node_modules/supergateway/package.json"
    [ -f "$pkg" ] && node -e 'console.log(require(process.argv[1]).version)' "$pkg" 2>/dev/null || true
}
if [ "$(installed_sg)" != "$SUPERGATEWAY_VERSION" ]; then
    npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error "supergateway@$SUPERGATEWAY_VERSION" >/dev/null
fi
[ "$(installed_sg)" = "$SUPERGATEWAY_VERSION" ] || { echo "peers_setup: supergateway $SUPERGATEWAY_VERSION did not install" >&2; exit 1; }
[ -x "$NODE_PREFIX/node_modules/.bin/supergateway" ] || { echo "peers_setup: no supergateway binary" >&2; exit 1; }

echo "peers_setup: installed into $PEERS"
echo "  mcp-proxy $MCP_PROXY_VERSION (mcp $MCP_VERSION,"\
     "Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())')): $VENV/bin/mcp-proxy"
echo "  supergateway $(installed_sg) (Node.js $(node --version)): $NODE_PREFIX/node_modules/.bin/supergateway"
