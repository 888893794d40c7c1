"""mqlite.testing's own checks that need no server: Galera availability, ports, the sweep."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mqlite.testing import galera, server
from mqlite.testing.galera import galera_available, galera_missing
from mqlite.testing.server import ServerError, _free_ports, _sweep_stale

from .helpers import wait_for


def test_galera_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(galera, "find_binary", lambda: ("mariadb", "/usr/sbin/mariadbd"))
    monkeypatch.setattr(galera, "galera_provider", lambda: None)
    assert "libgalera_smm.so" in galera_missing() and "galera-4" in galera_missing()
    assert not galera_available()
    monkeypatch.setattr(galera, "find_binary", lambda: ("mysql", "/usr/sbin/mysqld"))
    assert "is not MariaDB" in galera_missing()

    def none() -> tuple[str, str]:
        raise ServerError(server.INSTALL_HINT)

    monkeypatch.setattr(galera, "find_binary", none)
    assert galera_missing() == server.INSTALL_HINT


def test_galera_cluster_refuses_to_start_without_galera(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(galera, "galera_missing", lambda: "no Galera provider library")
    with pytest.raises(ServerError, match="no Galera provider library"):
        galera.GaleraCluster()


def test_free_ports_are_distinct() -> None:
    ports = _free_ports(12)
    assert len(set(ports)) == 12


def test_sweep_removes_a_dead_runs_directory_and_kills_what_still_runs_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A temporary root of its own: the sweep of any other run sharing /tmp (possibly from another
    # pid namespace, where our helper is invisible) could otherwise remove the directory first and
    # leave the helper running (seen in CI).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = Path(tempfile.mkdtemp(prefix="mqlite-server-"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    # Like an rsync daemon left by a state transfer: a process whose command line names the directory.
    helper = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", str(stale / "rsync_sst.conf")],
                              stdin=subprocess.PIPE)
    # The dead owner is written last, so the sweep finds the helper already running.
    (stale / "owner.pid").write_text(dead.stdout.strip())
    live = Path(tempfile.mkdtemp(prefix="mqlite-server-"))
    (live / "owner.pid").write_text(str(os.getpid()))
    try:
        _sweep_stale()
        assert not stale.exists() and live.exists()
        wait_for(lambda: helper.poll() is not None, timeout=10, what="the helper to be killed")
        assert helper.returncode == -9
    finally:
        helper.kill()
        helper.wait(timeout=10)
        for d in (stale, live):
            shutil.rmtree(d, ignore_errors=True)
