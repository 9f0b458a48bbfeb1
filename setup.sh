#!/usr/bin/env bash
# Installs the gateway, its test tools and the example backends' extras into .venv.
# Idempotent; any failing step stops the script with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")"

WITH_SANDBOX=0
WITH_BROWSER=0
WITH_REDIS=0
for option in "$@"; do
    case "$option" in
        --with-sandbox) WITH_SANDBOX=1 ;;  # bubblewrap, for gateway.sandbox = "bwrap"
        --with-browser) WITH_BROWSER=1 ;;  # Debian's chromium, for the console's browser tests
        --with-redis) WITH_REDIS=1 ;;  # Debian's redis-server, for the replica tests (gateway.store)
        *) echo "setup.sh: unknown option $option (known: --with-sandbox, --with-browser, --with-redis)" >&2; exit 2 ;;
    esac
done

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup.sh: Python 3.11+ is required ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# TypeScript reference servers (handshake-era protocol only) for the cross-era tests; server-everything
# also asks the client for sampling, elicitation and roots.
if command -v npm >/dev/null 2>&1; then
    npm install --silent --no-audit --no-fund --prefix .node-backends \
        @modelcontextprotocol/server-memory@2026.8.31 \
        @modelcontextprotocol/server-everything@2026.8.31 >/dev/null
else
    echo "setup.sh: npm not found; the TypeScript-backend tests will be skipped" >&2
fi

if [ "$WITH_SANDBOX" = 1 ] && ! command -v bwrap >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1 ||
        { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q bubblewrap >/dev/null; }
fi

# Playwright only drives this system browser (tests/test_console_ui.py); nothing here runs
# `playwright install` or downloads a browser build.
if [ "$WITH_BROWSER" = 1 ] && [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -q chromium >/dev/null 2>&1 ||
        { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
fi

# Only the binary: the tests start their own redis-server on a free port (nothing here starts a
# system-wide one, and Debian's package does not either without systemd).
if [ "$WITH_REDIS" = 1 ] && ! command -v redis-server >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -q redis-server >/dev/null 2>&1 ||
        { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q redis-server >/dev/null; }
fi

.venv/bin/gateway --help >/dev/null
echo "setup.sh: ready. Run: .venv/bin/gateway --auto-register gateway-config.json"
