"""Crash proof: consumers SIGKILLed at random, and the database server itself killed and restarted."""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

import mqlite
from mqlite.errors import MqliteError
from mqlite.testing import ThrowawayServer

from .conftest import admin_connection, rows
from .helpers import python, read_line, wait_for

pytestmark = pytest.mark.slow

# A consumer that never recovers by hand: recovery runs inside claim() when it finds nothing ready.
CONSUMER = """
import os, sys, time, MySQLdb, mqlite
from mqlite.config import parse_dsn
dsn, last = sys.argv[1], sys.argv[2] == "last"
q = mqlite.Queue(dsn, recover_every=0.3, max_attempts=1000)
log = MySQLdb.connect(autocommit=True, **parse_dsn(dsn).connect_kwargs())
print("ready", flush=True)
while True:
    with q.claim("storm") as m:
        if m is None:
            if last and not sum(s.ready + s.delayed + s.claimed + s.failed for s in q.stats().queues.values()):
                break
            continue
        log.cursor().execute("INSERT INTO handled (msg_id, pid) VALUES (%s, %s)", (m.id, os.getpid()))
        time.sleep(0.02)  # the work itself
q.close()
print("drained", flush=True)
"""


def test_sigkill_storm_loses_nothing(q: mqlite.Queue, dsn: str, admin) -> None:
    admin.cursor().execute("CREATE TABLE handled (msg_id BIGINT UNSIGNED NOT NULL, pid INT NOT NULL)")
    ids = q.push_many("storm", [f"job {i}" for i in range(2000)])
    rng = random.Random(7)
    consumers = [python(CONSUMER, dsn, "storm") for _ in range(6)]
    for c in consumers:
        assert read_line(c) == "ready"

    def handled() -> int:
        return int(rows(admin, "SELECT COUNT(*) FROM handled")[0][0])

    started = time.monotonic()
    for _ in range(25):
        mark = handled()
        wait_for(lambda m=mark: handled() >= m + 20, timeout=60, what=f"progress between kills (at {mark}, kill {_})")
        victim = consumers.pop(rng.randrange(len(consumers)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        replacement = python(CONSUMER, dsn, "storm")
        consumers.append(replacement)
        assert read_line(replacement) == "ready"
    for c in consumers:
        c.send_signal(signal.SIGKILL)
        c.wait(timeout=10)
    last = python(CONSUMER, dsn, "last")
    assert read_line(last) == "ready"
    assert read_line(last, timeout=120) == "drained"
    assert last.wait(timeout=30) == 0
    done = {int(r[0]) for r in rows(admin, "SELECT DISTINCT msg_id FROM handled")}
    assert done == set(ids)  # every message processed at least once, none lost
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    print(f"storm: 25 kills, {handled()} handlings of 2000 messages in {time.monotonic() - started:.1f}s")


def test_server_killed_and_restarted_under_load() -> None:
    server = ThrowawayServer()
    server.start()
    try:
        _restart_under_load(server)
    finally:
        server.stop()


def _restart_under_load(server: ThrowawayServer) -> None:
    q = mqlite.Queue(server.dsn, recover_every=0.3, retry_for=1.0, connect_timeout=2, max_attempts=1000)
    q.apply_schema()
    holder = mqlite.Queue(server.dsn, recover_every=0, retry_for=1.0)
    q.push("held", b"claimed before the crash")
    # A consumer mid-message when the server dies. If its claim falls in the second around the
    # restart (uptime has whole seconds), only its lease can tell; otherwise it returns at once.
    held = holder.take("held", lease=3)
    pushed: list[int] = []
    processed: set[int] = set()
    producing = threading.Event()
    producing.set()
    lock = threading.Lock()

    def produce() -> None:
        i = 0
        while i < 600:
            try:
                new_id = q.push("work", f"m{i}")
            except MqliteError:
                time.sleep(0.05)  # the server is down: the producer's own retry loop
                continue
            with lock:
                pushed.append(new_id)
            i += 1
        producing.clear()

    def consume() -> None:
        while producing.is_set() or not set(pushed) <= processed:
            try:
                with q.claim("work") as m:
                    if m is not None:
                        with lock:
                            processed.add(m.id)
            except MqliteError:
                time.sleep(0.05)

    threads = [threading.Thread(target=produce)] + [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: len(pushed) >= 150, timeout=60, what="load before the crash")
    server.kill()
    with lock:
        acknowledged_before = len(pushed)
    server.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert len(pushed) == 600 and acknowledged_before >= 150
    assert set(pushed) <= processed  # every push that returned an id was processed
    # The claim from before the restart came back, though its session id may now be someone else's.
    again = wait_for(lambda: q.pop("held"), timeout=30, what="the pre-crash claim to be recovered")
    # Recovered by the restart rule, or (when its id is not in use after the restart) as a dead owner.
    assert again.id == held.id and ("restart" in again.last_error or "owner session gone" in again.last_error)
    admin = admin_connection(server.dsn)
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    admin.close()
    holder.close()
    q.close()
