#!/usr/bin/env bash
# Installs what a fresh machine lacks for `make test` and `make bench`, then the .venv.
#   - system packages (Debian/Ubuntu, as root): pkg-config + libmariadb-dev to build mysqlclient,
#     mariadb-server when no server binary exists and MQLITE_DSN is unset, python3-venv;
#   - galera-4 and rsync for the cluster tests (tests/test_cluster.py, 3 local MariaDB Galera nodes)
#     when missing and MQLITE_DSN is unset. Optional: where they cannot be installed (not root,
#     not Debian/Ubuntu) the cluster tests skip, saying why;
#   - chromium + chromium-driver for the web browser test, as root on Debian/Ubuntu only, and never
#     fatal: without them that one test is skipped (MQLITE_SKIP_BROWSER=1: do not install);
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

# The Galera provider and rsync (its state transfer) for the cluster tests. Debian's mariadb-server
# depends on both, but a server from elsewhere may lack them. Optional: a failure here only means
# that the cluster tests skip (they say why).
galera_provider() {
    for f in ${MQLITE_GALERA_PROVIDER:-} /usr/lib/galera/libgalera_smm.so /usr/lib/galera-4/libgalera_smm.so \
             /usr/lib64/galera-4/libgalera_smm.so /usr/lib64/galera/libgalera_smm.so; do
        [ -f "$f" ] && return 0
    done
    return 1
}
optional=()
if [ -z "${MQLITE_DSN:-}" ]; then
    galera_provider || optional+=(galera-4)
    have rsync || optional+=(rsync)
fi
if [ ${#optional[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && have apt-get; then
        echo "mqlite: installing ${optional[*]} with apt-get (for the cluster tests)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "${optional[@]}" >/dev/null 2>&1 || {
            apt-get update -q >/dev/null 2>&1
            apt-get install -y -q --no-install-recommends "${optional[@]}" >/dev/null 2>&1
        } || echo "mqlite: could not install ${optional[*]}: the cluster tests will skip" >&2
    else
        echo "mqlite: missing ${optional[*]}: the cluster tests will skip (sudo apt-get install ${optional[*]})" >&2
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
