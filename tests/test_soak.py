"""The soak (`make soak`; skipped unless MQLITE_SOAK=1): MQLITE_SOAK_SECONDS (default 600) of mixed
load on a throwaway server of its own, with 4 worker processes. Three live through the whole run;
the fourth is SIGKILLed every 10 s and started again; halfway, the server is SIGKILLed and
restarted. Then: nothing acknowledged is lost, each long-lived worker's RSS is flat (its mean over
the last minute at most 1.1x its mean over the second minute), and the server never held more
connections than the configured pools allow.

The load: 2 producer threads here push plain messages, batches of 5 (push_many), keyed messages
and delayed ones, paced at about 150 messages a second; one message in ten fails its first attempt.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mqlite
from mqlite.errors import MqliteError
from mqlite.testing import ThrowawayServer, admin_connection

from .conftest import rows
from .helpers import ROOT, read_line, wait_for
from .support import soak_worker

pytestmark = pytest.mark.skipif(os.environ.get("MQLITE_SOAK") != "1", reason="the soak runs with `make soak`")

SECONDS = float(os.environ.get("MQLITE_SOAK_SECONDS", "600"))
WORKERS = 4
KILL_EVERY = 10.0
PRODUCER_POOL = 4
PER_WORKER = soak_worker.POOL_SIZE + soak_worker.CLAIM_SESSIONS + soak_worker.THREADS  # + one log connection a thread
# Every worker at its pools' size, one more just killed whose sessions the server has not reaped
# yet, the producers' pool, and the monitor's own connection.
CONNECTION_BOUND = (WORKERS + 1) * PER_WORKER + PRODUCER_POOL + 1


def _start_worker(dsn: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.soak_worker", dsn], cwd=ROOT, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert read_line(proc, timeout=60) == "ready"
    return proc


def _rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@pytest.mark.timeout(SECONDS + 600)
def test_soak() -> None:
    server = ThrowawayServer()
    server.start()
    try:
        report = _soak(server)
    finally:
        server.stop()
    print("\nsoak figures:", json.dumps(report, indent=1))
    assert not report["problems"], report["problems"]


def _soak(server: ThrowawayServer) -> dict:
    dsn = server.dsn
    with mqlite.Queue(dsn) as setup:
        setup.apply_schema()
    admin = admin_connection(dsn)
    admin.cursor().execute("CREATE TABLE handled (token VARCHAR(64) NOT NULL, msg_id BIGINT UNSIGNED NOT NULL, "
                           "pid INT NOT NULL, KEY (token))")
    admin.close()

    acked: set[str] = set()
    push_errors: dict[str, int] = {}
    lock = threading.Lock()
    producing = threading.Event()
    producing.set()
    producer = mqlite.Queue(dsn, pool_size=PRODUCER_POOL, claim_sessions=1)

    def produce(n: int) -> None:
        rng = random.Random(n)
        i = 0
        while producing.is_set():
            i += 1
            kind = rng.random()
            tokens = [f"p{n}-{i}.{j}" for j in range(5 if kind < 0.2 else 1)]
            try:
                if kind < 0.2:
                    producer.push_many("soak", tokens)
                elif kind < 0.3:
                    producer.push("keyed", tokens[0], unique_key=tokens[0])
                elif kind < 0.4:
                    producer.push("soak", tokens[0], delay=rng.random() * 2)
                else:
                    producer.push("soak", tokens[0])
            except MqliteError as exc:
                with lock:
                    push_errors[type(exc).__name__] = push_errors.get(type(exc).__name__, 0) + 1
                continue
            with lock:
                acked.update(tokens)
            time.sleep(0.013 * len(tokens))  # pacing: ~75 messages a second per producer

    workers = [_start_worker(dsn) for _ in range(WORKERS)]
    long_lived = {w.pid for w in workers[:-1]}
    rss: dict[int, list[tuple[float, int]]] = {pid: [] for pid in long_lived}
    threads_connected: list[int] = []
    monitor = admin_connection(dsn)
    kills = restarts = 0
    started = time.monotonic()
    restart_at = started + SECONDS / 2
    producers = [threading.Thread(target=produce, args=(n,), name=f"producer-{n}") for n in range(2)]
    for t in producers:
        t.start()
    next_kill = started + KILL_EVERY
    next_sample = started
    try:
        while time.monotonic() - started < SECONDS:
            now = time.monotonic()
            if now >= next_sample:
                next_sample += 5.0
                for pid in long_lived:
                    kb = _rss_kb(pid)
                    if kb is not None:
                        rss[pid].append((now - started, kb))
                try:
                    threads_connected.append(int(rows(monitor, "SHOW GLOBAL STATUS LIKE 'Threads_connected'")[0][1]))
                except Exception:
                    monitor = _reconnect(dsn)
            if now >= next_kill:
                next_kill += KILL_EVERY
                victim = workers.pop()
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=30)
                kills += 1
                workers.append(_start_worker(dsn))
            if restarts == 0 and now >= restart_at:
                server.kill()
                server.start()
                restarts += 1
                monitor = _reconnect(dsn)
            time.sleep(0.2)  # the orchestrator's tick (the load runs in the workers and producers)
        producing.clear()
        for t in producers:
            t.join(timeout=120)
        # Everything acknowledged is handled; the queues end empty (delayed ones come due).
        monitor = _reconnect(dsn)

        def drained() -> bool:
            left = rows(monitor, "SELECT COUNT(*) FROM mqlite_messages")[0][0]
            return left == 0

        wait_for(drained, timeout=180, what="the workers to drain the queues")
        handled = {str(r[0]) for r in rows(monitor, "SELECT DISTINCT token FROM handled")}
        deliveries = int(rows(monitor, "SELECT COUNT(*) FROM handled")[0][0])
    finally:
        producing.clear()
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.kill()
        producer.close()
        monitor.close()

    problems = []
    lost = acked - handled
    if lost:
        problems.append(f"{len(lost)} acknowledged messages never handled, e.g. {sorted(lost)[:3]}")
    flat = {}
    for pid, samples in rss.items():
        second = [kb for t, kb in samples if 60 <= t < 120]
        last = [kb for t, kb in samples if t >= SECONDS - 60]
        if not second or not last:
            problems.append(f"worker {pid}: no RSS samples in the second or the last minute")
            continue
        ratio = statistics.mean(last) / statistics.mean(second)
        flat[pid] = {"second minute kB": round(statistics.mean(second)), "last minute kB": round(statistics.mean(last)),
                     "ratio": round(ratio, 3)}
        if ratio > 1.1:
            problems.append(f"worker {pid}: RSS grew {ratio:.2f}x from the second minute to the last")
    if max(threads_connected, default=0) > CONNECTION_BOUND:
        problems.append(f"Threads_connected reached {max(threads_connected)}, over the bound {CONNECTION_BOUND}")
    return {
        "seconds": SECONDS,
        "messages acknowledged": len(acked),
        "deliveries": deliveries,
        "redelivered": deliveries - len(handled),
        "lost": len(lost),
        "push errors": push_errors,
        "worker kills": kills,
        "server restarts": restarts,
        "rss": flat,
        "threads_connected max": max(threads_connected, default=0),
        "threads_connected bound": CONNECTION_BOUND,
        "problems": problems,
    }


def _reconnect(dsn: str):
    return wait_for(lambda: _try_connect(dsn), timeout=60, what="the server to accept connections")


def _try_connect(dsn: str):
    try:
        return admin_connection(dsn)
    except Exception:
        return None
