"""Celery's remote control over mqlite, driven by the `celery` command against one real worker
process shared by the module: inspect ping/stats/active/reserved, revoke, shutdown; and the
session bound (issue 14) through the transport: 200 `inspect().ping()` calls in one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

try:
    import celery  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    pytest.skip(f"the celery extra is not installed ({exc})", allow_module_level=True)

import mqlite
from mqlite.testing.database import scratch_database

from .celery_app import SIDE_TABLE, make_app
from .conftest import admin_connection, rows
from .helpers import ROOT, wait_for
from .test_celery import Workers

NODE = f"mqlite-ctl@{socket.gethostname()}"


@pytest.fixture(scope="module")
def ctl_dsn(server_dsn: str) -> Iterator[str]:
    with scratch_database(server_dsn) as dsn:
        q = mqlite.Queue(dsn)
        q.apply_schema()
        q.close()
        conn = admin_connection(dsn)
        conn.cursor().execute(SIDE_TABLE)
        conn.close()
        yield dsn


@pytest.fixture(scope="module")
def worker(ctl_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    """One `celery worker` (prefork, 2 processes) for every test of the module: they start slowly."""
    workers = Workers(ctl_dsn, tmp_path_factory.mktemp("ctl"))
    # Answers while its pool is full (see celery_app.py); results over mqlite reply queues.
    os.environ.update(MQLITE_TEST_PUTLOCKS="0", MQLITE_TEST_BACKEND="rpc://")
    try:
        proc = workers.start("-n", NODE)
    finally:
        del os.environ["MQLITE_TEST_PUTLOCKS"], os.environ["MQLITE_TEST_BACKEND"]
    app = make_app(ctl_dsn)
    try:
        wait_for(lambda: proc.poll() is not None or app.control.inspect(timeout=0.5).ping(),
                 timeout=90, what="the worker to answer a ping")
        assert proc.poll() is None, workers.log_tail()
        yield proc
    finally:
        print(workers.log_tail())
        if proc.poll() is None:
            workers.kill(proc)


@pytest.fixture
def admin(ctl_dsn: str) -> Iterator[object]:
    conn = admin_connection(ctl_dsn)
    yield conn
    conn.close()


def celery_cmd(dsn: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MQLITE_TEST_BROKER": dsn}
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "tests.celery_app", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def output(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    return out


def inspect(dsn: str, command: str) -> dict:
    """`celery inspect COMMAND -d NODE --json`, parsed."""
    return json.loads(output(celery_cmd(dsn, "inspect", command, "-d", NODE, "-t", "5", "--json")))


def ran(admin: object, *ks: int) -> list[int]:
    return [k for (k,) in rows(admin, "SELECT k FROM done WHERE k IN (%s)" % ",".join(map(str, ks)))]


def test_inspect_ping_and_stats(ctl_dsn: str, worker: subprocess.Popen[bytes]) -> None:
    assert inspect(ctl_dsn, "ping") == {NODE: {"ok": "pong"}}
    stats = inspect(ctl_dsn, "stats")[NODE]
    assert stats["pid"] == worker.pid  # answered by the worker process itself
    assert stats["broker"]["transport"] == "mqlite.contrib.kombu:Transport"
    assert stats["pool"]["max-concurrency"] == 2


def test_rpc_result_backend_over_mqlite(ctl_dsn: str, worker: subprocess.Popen[bytes], admin: object) -> None:
    """`backend="rpc://"`: results come back to the caller through an mqlite queue of its own."""
    app = make_app(ctl_dsn, backend="rpc://")
    results = [app.tasks["t.add"].delay(i, i) for i in range(10)]
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(10)]
    # The caller's result queue: auto_delete, so it expires once unused (Celery gives it
    # result_expires, a day), and empty now that every result was read.
    (name, expires_ms), = rows(admin, "SELECT queue, expires_ms FROM mqlite_kombu_queues WHERE queue = %s",
                               app.backend.oid)
    assert expires_ms == 86_400_000 and rows(admin, "SELECT COUNT(*) FROM mqlite_messages WHERE queue = %s",
                                             name) == [(0,)]


def test_database_result_backend_on_the_same_server(ctl_dsn: str) -> None:
    """The README's other backend: Celery's SQLAlchemy one over the broker's own MySQL database."""
    app = make_app(ctl_dsn, backend="db+" + ctl_dsn)
    app.backend.mark_as_done("readme-task", 5)
    assert app.AsyncResult("readme-task").get(timeout=10) == 5


def test_revoked_task_does_not_run(ctl_dsn: str, worker: subprocess.Popen[bytes], admin: object) -> None:
    app = make_app(ctl_dsn)
    revoked = app.tasks["t.record"].apply_async((200,), countdown=2)
    app.tasks["t.record"].apply_async((201,), countdown=2)  # not revoked: runs
    out = output(celery_cmd(ctl_dsn, "control", "revoke", revoked.id, "-d", NODE, "-t", "5"))
    assert NODE in out and revoked.id in out
    wait_for(lambda: ran(admin, 201), timeout=60, what="the task that was not revoked")
    q = mqlite.Queue(ctl_dsn)
    try:  # the revoked one was delivered too, and discarded: acknowledged without running
        wait_for(lambda: q.peek("celery") == [], timeout=30, what="the revoked task to be consumed")
    finally:
        q.close()
    assert ran(admin, 200) == []


def test_inspect_active_and_reserved(ctl_dsn: str, worker: subprocess.Popen[bytes], admin: object) -> None:
    app = make_app(ctl_dsn)
    sent = [app.tasks["t.record"].apply_async((300 + i,), {"sleep": 5}) for i in range(3)]
    ids = {r.id for r in sent}

    def busy() -> bool:
        seen = app.control.inspect(destination=[NODE], timeout=1)
        active, reserved = seen.active() or {}, seen.reserved() or {}
        return len(active.get(NODE, [])) == 2 and len(reserved.get(NODE, [])) == 1

    wait_for(busy, timeout=60, what="two tasks running and one reserved (prefork, 2 processes)")
    active, reserved = celery_cmd(ctl_dsn, "inspect", "active", "-d", NODE, "-j"), \
        celery_cmd(ctl_dsn, "inspect", "reserved", "-d", NODE, "-j")
    running = {t["id"] for t in json.loads(output(active))[NODE]}
    waiting = {t["id"] for t in json.loads(output(reserved))[NODE]}
    assert len(running) == 2 and len(waiting) == 1 and running | waiting == ids
    assert all(t["name"] == "t.record" for t in json.loads(output(celery_cmd(ctl_dsn, "inspect", "active", "-j")))[NODE])


def own_ports() -> set[int]:
    """Local TCP ports of this process's sockets (/proc): which server sessions are ours."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@contextmanager
def own_sessions_peak(dsn: str) -> Iterator[list[int]]:
    """Samples the sessions of this process on the server (PROCESSLIST rows whose client port is one
    of this process's sockets; the sampler's own excluded); yields [peak]."""
    conn = admin_connection(dsn)
    cur = conn.cursor()
    cur.execute("SELECT CONNECTION_ID()")
    me = cur.fetchone()[0]
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            ports = own_ports()
            cur.execute("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID <> %s AND HOST LIKE '%%:%%'", (me,))
            ours = sum(1 for (host,) in cur.fetchall() if int(host.rsplit(":", 1)[1]) in ports)
            peak[0] = max(peak[0], ours)
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join(10)
        conn.close()


def test_two_hundred_pings_stay_within_the_session_bound(
    ctl_dsn: str, worker: subprocess.Popen[bytes], admin: object
) -> None:
    """Each `inspect()` call declares a fresh reply queue; the process's sessions stay bounded and
    the reply queues do not pile up in the table (deleted after use, expired if abandoned)."""
    app = make_app(ctl_dsn, pool_size=4)
    answered: list[bool] = []

    def pings() -> None:
        for _ in range(50):
            answered.append(bool(app.control.inspect(timeout=0.05).ping()))

    began = time.monotonic()
    with own_sessions_peak(ctl_dsn) as peak:
        threads = [threading.Thread(target=pings) for _ in range(4)]  # 4 x 50 calls, each its own reply queue
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    took = time.monotonic() - began
    assert len(answered) == 200
    answered = [a for a in answered if a]
    print(f"200 pings in {took:.1f}s, {len(answered)} answered in time; peak sessions of this process {peak[0]}")
    assert 0 < peak[0] <= 4 + 16
    assert answered
    reply_queues = "SELECT COUNT(*) FROM mqlite_kombu_queues WHERE queue LIKE '%%.reply.celery.pidbox'"
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_kombu_bindings WHERE queue LIKE '%%.reply.celery.pidbox'") == [(0,)]
    with app.connection_for_write() as conn:
        routing = conn.default_channel.connection.routing

        def swept() -> bool:
            routing.sweep(force=True)
            return rows(admin, reply_queues) == [(0,)]

        wait_for(swept, timeout=30, what="the deleted reply queues to be swept")
    late = rows(admin, "SELECT COUNT(*) FROM mqlite_messages WHERE queue LIKE '%%.reply.celery.pidbox'")
    assert late == [(0,)]  # replies that came after their ping gave up were purged with their queue


def test_flower_lists_the_worker(ctl_dsn: str, worker: subprocess.Popen[bytes], tmp_path) -> None:
    pytest.importorskip("flower")
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MQLITE_TEST_BROKER": ctl_dsn, "FLOWER_UNAUTHENTICATED_API": "true"}
    with open(tmp_path / "flower.log", "wb") as log:
        flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "tests.celery_app", "flower",
                                   "--address=127.0.0.1", f"--port={port}"], env=env, cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        def listed() -> dict | None:
            try:
                got = httpx.get(f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=10).json()
            except (httpx.HTTPError, ValueError):
                return None
            return got.get(NODE) if "stats" in got.get(NODE, {}) else None

        info = wait_for(listed, timeout=60, what="Flower to list the worker")
        assert info["stats"]["pid"] == worker.pid
        assert "error" not in info.get("conf", {}), info["conf"]  # Celery builds Connection(broker_url) there
        assert {q["name"] for q in info["active_queues"]} >= {"celery", "reports"}
    finally:
        flower.terminate()
        flower.wait(timeout=30)
        print((tmp_path / "flower.log").read_text(errors="replace")[-2000:])


def test_control_shutdown_stops_the_worker(ctl_dsn: str, worker: subprocess.Popen[bytes]) -> None:
    """Last of the module: the shared worker goes away."""
    celery_cmd(ctl_dsn, "control", "shutdown", "-d", NODE).communicate(timeout=60)
    assert worker.wait(timeout=60) == 0
