#!/usr/bin/env bash
# Installs what a fresh machine lacks for `make test` and `make bench`, then the .venv.
#   - system packages (Debian/Ubuntu, as root): pkg-config + libmariadb-dev to build mysqlclient,
#     mariadb-server when no server binary exists and MQLITE_DSN is unset, python3-venv;
#   - .venv with `pip install -e '.[test]'` (redone when pyproject.toml changes).
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

if [ ! -x $VENV/bin/python ]; then
    "$PY" -m venv $VENV
fi
if [ ! -f $STAMP ] || [ pyproject.toml -nt $STAMP ]; then
    echo "mqlite: installing the package into $VENV" >&2
    $VENV/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    touch $STAMP
fi
