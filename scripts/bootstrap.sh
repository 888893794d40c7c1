#!/usr/bin/env bash
# Installs what a fresh machine lacks for `make test` and `make bench`, then the .venv.
#   - system packages (Debian/Ubuntu, as root): pkg-config + libmariadb-dev to build mysqlclient,
#     mariadb-server when no server binary exists and MQLITE_DSN is unset, python3-venv;
#   - .venv with `pip install -e '.[test]'` (redone when pyproject.toml changes);
#   - chromium + chromium-driver for the web browser test, as root on Debian/Ubuntu only, and never
#     fatal: without them that one test is skipped (MQLITE_SKIP_BROWSER=1: do not install).
# Not root, or not Debian/Ubuntu: one line saying what to install, exit 1.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.mqlite-installed
missing=()

have() { command -v "$1" >/dev/null 2>&1; }
server_binary() {
    PATH="$PATH:/usr/sbin:/usr/local/sbin" have mariadbd || PATH="$PATH:/usr/sbin:/usr/local/sbin" have mysqld
}

if ! have "$PY"; then
    echo "mqlite: no $PY found: install Python >= 3.10 (Debian/Ubuntu: apt-get install python3 python3-venv)" >&2
    exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "mqlite: $("$PY" --version 2>&1) is too old: install Python >= 3.10" >&2
    exit 1
fi
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# mysqlclient compiles against the MariaDB/MySQL client library unless it is already installed.
if ! { [ -x $VENV/bin/python ] && $VENV/bin/python -c 'import MySQLdb' >/dev/null 2>&1; }; then
    have pkg-config || missing+=(pkg-config)
    { have pkg-config && pkg-config --exists mariadb 2>/dev/null; } || \
        { have pkg-config && pkg-config --exists mysqlclient 2>/dev/null; } || missing+=(libmariadb-dev)
    have gcc || missing+=(gcc)
fi
if [ -z "${MQLITE_DSN:-}" ] && ! server_binary; then
    missing+=(mariadb-server)
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && have apt-get; then
        echo "mqlite: installing ${missing[*]} with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
            apt-get update -q >/dev/null
            apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        }
    else
        echo "mqlite: missing ${missing[*]}: install with: sudo apt-get install ${missing[*]} (or set MQLITE_DSN to a server)" >&2
        exit 1
    fi
fi

# The browser test (tests/test_web_browser.py) drives the system's chromium through chromedriver.
debian_like() { [ -r /etc/os-release ] && grep -Eqi '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release; }
if [ -z "${MQLITE_SKIP_BROWSER:-}" ] && ! { { have chromium || have chromium-browser; } && have chromedriver; }; then
    if [ "$(id -u)" = 0 ] && have apt-get && debian_like; then
        echo "mqlite: installing chromium chromium-driver with apt-get (for the browser test)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || {
            apt-get update -q >/dev/null 2>&1
            apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1
        } || echo "mqlite: could not install chromium; the browser test will be skipped" >&2
    else
        echo "mqlite: no chromium/chromedriver: the browser test will be skipped (apt-get install chromium chromium-driver)" >&2
    fi
fi

if [ ! -x $VENV/bin/python ]; then
    "$PY" -m venv $VENV
fi
if [ ! -f $STAMP ] || [ pyproject.toml -nt $STAMP ]; then
    echo "mqlite: installing the package into $VENV" >&2
    $VENV/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    touch $STAMP
fi
