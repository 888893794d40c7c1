"""The kombu transport's exchanges through kombu itself: fanout copies, direct and topic routing over
bindings other processes made, queues that expire when unused (schema/010)."""

from __future__ import annotations

import subprocess
import sys

import pytest

try:
    import kombu
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    pytest.skip(f"the celery extra is not installed ({exc})", allow_module_level=True)

import mqlite
from mqlite.contrib.kombu import routing

from .conftest import rows
from .helpers import ROOT, wait_for

TRANSPORT = "mqlite.contrib.kombu:Transport"


def connect(dsn: str, **options: object) -> kombu.Connection:
    return kombu.Connection(dsn, transport=TRANSPORT, transport_options=options)


def bind_elsewhere(dsn: str, *queues: tuple) -> None:
    """Declare and bind queues (name, exchange, type, routing key[, Queue kwargs]) in another process:
    their bindings are not in this process's memory."""
    code = (
        "import kombu, sys\n"
        "conn = kombu.Connection(sys.argv[1], transport=sys.argv[2])\n"
        f"for name, exchange, kind, key, *kw in {queues!r}:\n"
        "    x = kombu.Exchange(exchange, type=kind)\n"
        "    kombu.Queue(name, x, routing_key=key, **(kw[0] if kw else {}))(conn.default_channel).declare()\n"
        "conn.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code, dsn, TRANSPORT], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def drain(conn: kombu.Connection, queue: str) -> list[object]:
    got = []
    sq = conn.SimpleQueue(queue, no_ack=True)
    while True:
        try:
            got.append(sq.get(timeout=0.3).payload)
        except sq.Empty:
            sq.close()
            return got


def test_fanout_copies_to_every_bound_queue_of_every_process(q: mqlite.Queue, dsn: str) -> None:
    bind_elsewhere(dsn, ("node-a", "bcast", "fanout", ""), ("node-b", "bcast", "fanout", ""),
                   ("replies-1", "answers", "direct", "ticket-1"))
    with connect(dsn) as conn:
        x = kombu.Exchange("bcast", type="fanout")
        kombu.Queue("node-c", x)(conn.default_channel).declare()  # and one of this process
        with conn.Producer() as producer:
            producer.publish({"cmd": "ping"}, exchange=x, declare=[x])
        for name in ("node-a", "node-b", "node-c"):
            assert drain(conn, name) == [{"cmd": "ping"}], name
        # Direct: another process's binding routes this process's publish.
        d = kombu.Exchange("answers", type="direct")
        with conn.Producer() as producer:
            producer.publish("pong", exchange=d, routing_key="ticket-1", declare=[d])
            producer.publish("lost", exchange=d, routing_key="nobody", declare=[d])
        assert drain(conn, "replies-1") == ["pong"]
    assert sorted(s for s in q.stats().queues) == ["node-a", "node-b", "node-c", "replies-1"]


def test_topic_routing_over_shared_bindings(q: mqlite.Queue, dsn: str) -> None:
    bind_elsewhere(dsn, ("all-events", "ev", "topic", "#"), ("task-events", "ev", "topic", "task.*"))
    with connect(dsn) as conn:
        x = kombu.Exchange("ev", type="topic")
        with conn.Producer() as producer:
            producer.publish("sent", exchange=x, routing_key="task.sent", declare=[x])
            producer.publish("beat", exchange=x, routing_key="worker.heartbeat", declare=[x])
        assert drain(conn, "all-events") == ["sent", "beat"]
        assert drain(conn, "task-events") == ["sent"]


def test_expiring_queue_unused_is_purged_and_forgotten(q: mqlite.Queue, dsn: str, admin) -> None:
    bind_elsewhere(dsn, ("gone-soon", "bx", "fanout", "", {"expires": 0.2}), ("durable", "bx", "fanout", ""))
    with connect(dsn) as conn:
        x = kombu.Exchange("bx", type="fanout")
        with conn.Producer() as producer:
            producer.publish("one", exchange=x, declare=[x])
        assert q.size("gone-soon") == 1 and q.size("durable") == 1
        mine = conn.default_channel.connection.routing
        wait_for(lambda: mine.sweep(force=True) == 1, timeout=10, what="the unused queue to expire")
        assert q.size("gone-soon") == 0 and q.size("durable") == 1
        assert rows(admin, "SELECT queue FROM mqlite_kombu_bindings") == [("durable",)]
        with conn.Producer() as producer:  # no longer bound: no copy for it
            producer.publish("two", exchange=x, declare=[x])
        assert q.size("gone-soon") == 0 and q.size("durable") == 2


def test_consumed_expiring_queue_stays_and_a_deleted_one_leaves_nothing(
    q: mqlite.Queue, dsn: str, admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routing, "DELETED_GRACE_MS", 300)
    with connect(dsn, polling_interval=0.05) as conn:
        x = kombu.Exchange("rx", type="direct")
        kept = kombu.Queue("kept", x, routing_key="k", expires=0.3, auto_delete=True)
        consumer = conn.Consumer([kept], no_ack=True, callbacks=[lambda body, m: None])
        consumer.consume()
        for _ in range(12):  # 1.2 s of polling: 4 x the queue's expiry
            try:
                conn.drain_events(timeout=0.1)
            except TimeoutError:
                pass
        assert conn.transport.routing.sweep(force=True) == 0
        assert rows(admin, "SELECT queue FROM mqlite_kombu_queues WHERE expires_at > NOW(6)") == [("kept",)]
        consumer.cancel()
        # Deleted (as kombu's pidbox deletes a reply queue): unbound at once, a late message purged by the sweep.
        conn.default_channel.queue_delete("kept")
        assert rows(admin, "SELECT COUNT(*) FROM mqlite_kombu_bindings")[0][0] == 0
        q.push("kept", b"late reply")
        wait_for(lambda: conn.transport.routing.sweep(force=True) == 1, timeout=routing.DELETED_GRACE_MS / 1000 + 5,
                 what="the deleted queue's row to expire")
        assert q.size("kept") == 0
        assert rows(admin, "SELECT COUNT(*) FROM mqlite_kombu_queues")[0][0] == 0


def test_a_table_without_the_broadcast_schema_is_refused_at_connect(dsn: str, admin) -> None:
    from mqlite import schema
    from mqlite.errors import SchemaMissing

    schema.apply(admin, "before_010", upto=9)
    with connect(dsn, table="before_010") as conn, pytest.raises(SchemaMissing, match="schema 010"):
        conn.connect()
