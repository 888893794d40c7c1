"""mqlite on a 3-node Galera cluster: node-qualified ownership, exactly-once over three writer nodes,
a node killed under load, and failover along the DSN's host list."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

import mqlite
from mqlite.config import Settings, parse_dsn
from mqlite.errors import MqliteError
from mqlite.sql import statements
from mqlite.testing.galera import galera_missing

from .conftest import admin_connection, rows
from .helpers import wait_for
from .test_cluster import _equal_connection_ids

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(galera_missing() is not None, reason=f"no Galera cluster here: {galera_missing()}"),
]
TABLE = "mqlite_messages"


def test_equal_session_ids_on_two_nodes_never_read_each_others_claims(cluster_dsns) -> None:
    q = mqlite.Queue(cluster_dsns[0])
    q.apply_schema()
    q.push_many("jobs", [b"m1", b"m2"])
    a, b = _equal_connection_ids(cluster_dsns[0], cluster_dsns[1])
    st = statements(TABLE)
    try:
        wait_for(lambda: rows(b, f"SELECT COUNT(*) FROM {TABLE}") == [(2,)], what="the rows on node 2")
        assert a.cursor().execute(st.claim, (30_000_000, "jobs", TABLE, "jobs", 1)) == 1
        wait_for(lambda: rows(b, f"SELECT COUNT(*) FROM {TABLE} WHERE owner <> 0") == [(1,)],
                 what="node 1's claim on node 2")
        cur = b.cursor()
        cur.execute(st.read_claimed, ("jobs",))
        assert cur.fetchall() == ()  # same CONNECTION_ID(), other node: not ours (the old SQL read m1 here)
        assert cur.execute(st.claim, (30_000_000, "jobs", TABLE, "jobs", 1)) == 1
        cur.execute(st.read_claimed, ("jobs",))
        assert [bytes(r[2]) for r in cur.fetchall()] == [b"m2"]  # only its own claim
        # Recovery asked on node 2 does not take node 1's live claim (its PROCESSLIST cannot see it).
        other = mqlite.Queue(cluster_dsns[1], recover_every=0)
        assert other.recover().total == 0
        other.close()
    finally:
        a.close()
        b.close()
        q.close()


def _consume_everywhere(queues, name, done: list[int], lock, stop: threading.Event, recoveries: list) -> None:
    def consume(q: mqlite.Queue) -> None:
        while not stop.is_set():
            try:
                with q.claim(name, lease=5) as m:
                    if m is None:
                        recoveries.append(q.recover())
                        continue
                    time.sleep(0.005)  # the work: long enough that a killed node leaves claims in hand
                    with lock:
                        done.append(m.id)
            except MqliteError:
                continue  # a node going away; the claim comes back by its lease

    return [threading.Thread(target=consume, args=(q,)) for q in queues for _ in range(2)]


def test_five_thousand_messages_over_three_writer_nodes_each_delivered_once(cluster_dsns) -> None:
    queues = [mqlite.Queue(dsn, pool_size=8, recover_every=0) for dsn in cluster_dsns]
    queues[0].apply_schema()
    pushed: list[int] = []
    done: list[int] = []
    recoveries: list = []
    lock = threading.Lock()
    stop = threading.Event()

    def produce(q: mqlite.Queue, first: int) -> None:
        for i in range(first, 5000, 3):
            new_id = q.push("spread", f"m{i}")
            with lock:
                pushed.append(new_id)

    producers = [threading.Thread(target=produce, args=(q, i)) for i, q in enumerate(queues)]
    consumers = _consume_everywhere(queues, "spread", done, lock, stop, recoveries)
    for t in producers + consumers:
        t.start()
    try:
        for t in producers:
            t.join(timeout=300)
        wait_for(lambda: len(done) >= 5000, timeout=300, what="every message delivered")
    finally:
        # Also when the wait fails: consumers left running would keep pytest from ever exiting.
        stop.set()
        for t in consumers:
            t.join(timeout=60)
    assert len(pushed) == 5000
    counts = Counter(done)
    assert sorted(counts) == sorted(pushed) and max(counts.values()) == 1  # each exactly once
    assert sum(r.total for r in recoveries) == 0  # no live claim was taken by another node
    for q in queues:
        q.close()


def test_a_node_killed_under_load_loses_nothing_and_its_claims_come_back_by_lease(galera, cluster_dsns) -> None:
    queues = [mqlite.Queue(dsn, pool_size=8, recover_every=0, retry_for=2, connect_timeout=2)
              for dsn in cluster_dsns]
    queues[0].apply_schema()
    pushed: list[int] = []
    done: list[int] = []
    recoveries: list = []
    lock = threading.Lock()
    stop = threading.Event()

    def produce(q: mqlite.Queue, first: int) -> None:
        for i in range(first, 1500, 3):
            try:
                new_id = q.push("load", f"m{i}")
            except MqliteError:
                return  # this producer's node is gone: its last push was not acknowledged
            with lock:
                pushed.append(new_id)

    producers = [threading.Thread(target=produce, args=(q, i)) for i, q in enumerate(queues)]
    consumers = _consume_everywhere(queues, "load", done, lock, stop, recoveries)
    for t in producers + consumers:
        t.start()
    try:
        wait_for(lambda: len(done) >= 300, timeout=120, what="load before the kill")
        held = queues[1].take("load", lease=5)  # a consumer on node 2 mid-message when its node dies
        assert held is not None
        galera.kill(1)
        for t in producers:
            t.join(timeout=300)
        # Every acknowledged push is processed by the two survivors, including the claims that died
        # with node 2's sessions: they come back when their 5 s lease runs out.
        wait_for(lambda: set(pushed) <= set(done) and held.id in done, timeout=180,
                 what="every acknowledged push processed, the held one too")
        assert sum(r.lease_expired for r in recoveries) >= 1
    finally:
        stop.set()
        for t in consumers:
            t.join(timeout=60)
        galera.start_node(1)
        for q in queues:
            q.close()


def test_failover_dsn_moves_pushes_to_the_next_node_when_the_primary_dies(galera, cluster_dsns) -> None:
    settings = [parse_dsn(dsn) for dsn in cluster_dsns]
    listed = Settings(settings[0].user, settings[0].password, tuple(s.hosts[0] for s in settings),
                      settings[0].database).url()
    q = mqlite.Queue(listed, connect_timeout=2, retry_for=15)
    q.apply_schema()
    acknowledged: list[int] = []
    try:
        for i in range(50):
            acknowledged.append(q.push("failover", f"before {i}"))
        assert q._pool._connector.primary == 0
        galera.kill(0)
        killed = time.monotonic()
        acknowledged.append(q.push("failover", "right after the kill"))  # retried onto the next host
        took = time.monotonic() - killed
        for i in range(50):
            acknowledged.append(q.push("failover", f"after {i}"))
        assert q._pool._connector.primary == 1 and took < 15, took
        survivor = admin_connection(cluster_dsns[1])
        stored = {int(r[0]) for r in rows(survivor, f"SELECT id FROM {TABLE}")}
        survivor.close()
        assert set(acknowledged) <= stored  # nothing acknowledged was lost
    finally:
        q.close()
        galera.start_node(0)
