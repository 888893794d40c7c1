"""Servers that are up but refuse work: read_only switched on mid-load, a full disk, max_connections
reached. Each on a throwaway server of its own, through an account without SUPER (root may write
to a read-only server and has a connection kept for it past max_connections)."""

from __future__ import annotations

import threading
import time
import zlib

import MySQLdb
import pytest

import mqlite
from mqlite.errors import MqliteError, ReadOnly, StorageFull, Unavailable
from mqlite.testing import ThrowawayServer, admin_connection

from .conftest import rows
from .helpers import wait_for
from .support.servers import SmallDiskServer, add_app_user

pytestmark = pytest.mark.slow

RETRY_FOR = 1.5


@pytest.fixture
def server() -> ThrowawayServer:
    server = ThrowawayServer(extra_args=("--max-connections=24",))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class _Pushes:
    """Pushes from a thread, each recorded with what it returned or raised and how long it took."""

    def __init__(self, q: mqlite.Queue) -> None:
        self.q = q
        self.acked: dict[str, int] = {}
        self.refused: list[tuple[str, MqliteError, float]] = []

    def push(self, body: str, **kw: object) -> None:
        started = time.monotonic()
        try:
            self.acked[body] = self.q.push("jobs", body, **kw)
        except MqliteError as exc:
            self.refused.append((body, exc, time.monotonic() - started))


def test_read_only_mid_load(server: ThrowawayServer) -> None:
    app = add_app_user(server)
    with mqlite.Queue(app) as setup:
        setup.apply_schema()
    root = admin_connection(server.dsn)
    producer = mqlite.Queue(app, retry_for=RETRY_FOR)
    consumer = mqlite.Queue(app, retry_for=RETRY_FOR, recover_every=0.3)
    handled: list[str] = []
    worker = mqlite.Worker(consumer, ["jobs"], lambda m: handled.append(m.text()), concurrency=2,
                           handle_signals=False, idle_max=0.2)
    running = threading.Thread(target=worker.run)
    running.start()
    pushes = _Pushes(producer)
    try:
        for i in range(30):
            pushes.push(f"before {i}")
        wait_for(lambda: set(pushes.acked) <= set(handled), timeout=30, what="the load before read_only")

        root.cursor().execute("SET GLOBAL read_only = ON")
        for i in range(3):
            pushes.push(f"refused {i}")
            pushes.push(f"refused keyed {i}", unique_key=f"k{i}")
        with pytest.raises(ReadOnly) as many:
            producer.push_many("jobs", [f"refused many {i}" for i in range(5)])
        assert many.value.transient and many.value.code == 1290
        assert len(pushes.refused) == 6
        for body, exc, took in pushes.refused:
            # Typed, after the retry bound (retried, not failed at once), and naming the cause.
            assert isinstance(exc, ReadOnly) and "read-only" in str(exc), exc
            assert RETRY_FOR <= took <= RETRY_FOR + 5, (body, took)
        # Nothing of a refused push was written.
        assert rows(root, "SELECT COUNT(*) FROM test.mqlite_messages WHERE body LIKE 'refused%'") == [(0,)]

        # A push that starts while the server is read-only succeeds once read_only is lifted
        # within its retry bound.
        patient = _Pushes(mqlite.Queue(app, retry_for=30))
        waiting = threading.Thread(target=patient.push, args=("across the switch",))
        waiting.start()
        time.sleep(1.0)  # the push is retrying now (what is measured: it outlives read_only)
        root.cursor().execute("SET GLOBAL read_only = OFF")
        waiting.join(timeout=40)
        assert not waiting.is_alive() and "across the switch" in patient.acked, patient.refused
        patient.q.close()

        # The consumers resume by themselves: everything acknowledged is handled.
        for i in range(30):
            pushes.push(f"after {i}")
        acked = set(pushes.acked) | set(patient.acked)
        wait_for(lambda: acked <= set(handled), timeout=60, what="the consumers to resume")
        assert not {b for b in handled if b.startswith("refused")}
        wait_for(lambda: rows(root, "SELECT COUNT(*) FROM test.mqlite_messages") == [(0,)], timeout=30,
                 what="the table to empty")
    finally:
        root.cursor().execute("SET GLOBAL read_only = OFF")
        worker.stop()
        running.join(timeout=60)
        producer.close()
        consumer.close()
        root.close()
    assert not running.is_alive()


def test_max_connections_reached_is_unavailable_and_passes(server: ThrowawayServer) -> None:
    app = add_app_user(server)
    with mqlite.Queue(app) as setup:
        setup.apply_schema()
    held = []
    root = admin_connection(server.dsn)  # opened first: it takes a place of its own
    q = mqlite.Queue(app, retry_for=RETRY_FOR, connect_timeout=2)
    try:
        q.push("jobs", b"first")
        q.close()  # every connection of the Queue closed: the next call needs a new one
        kwargs = dict(host="127.0.0.1", port=server.port, user="app", database="test")

        def full() -> bool:
            """Take every free connection; True once the server refuses with only ours left."""
            try:
                held.append(MySQLdb.connect(**kwargs))
                return False
            except MySQLdb.OperationalError as exc:
                assert exc.args[0] == 1040, exc
            # A connection closed a moment ago may still hold its place: full only when every
            # app session left is one of ours.
            sessions[:] = rows(root, "SELECT ID, USER, COMMAND, STATE FROM information_schema.PROCESSLIST")
            return sum(1 for s in sessions if s[1] == "app") == len(held)

        sessions: list[tuple] = []
        try:
            wait_for(full, timeout=30, what="max_connections to be reached")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {len(held)} held, sessions {sessions}") from None
        for call in (lambda: q.push("jobs", b"refused"), lambda: q.take("jobs")):
            started = time.monotonic()
            with pytest.raises(Unavailable, match="1040") as refused:
                call()
            assert refused.value.transient and time.monotonic() - started >= RETRY_FOR
        # It passes by itself: a call retrying when connections free up succeeds.
        patient = _Pushes(mqlite.Queue(app, retry_for=30, connect_timeout=2))
        waiting = threading.Thread(target=patient.push, args=("when there is room",))
        waiting.start()
        time.sleep(1.0)  # the push is retrying now
        for conn in held:
            conn.close()
        held.clear()
        waiting.join(timeout=40)
        assert not waiting.is_alive() and "when there is room" in patient.acked, patient.refused
        patient.q.close()
        with q.claim("jobs") as m:
            assert m.text() == "first"
        assert [m.text() for m in q.pop_many("jobs", 10)] == ["when there is room"]
    finally:
        for conn in held:
            conn.close()
        q.close()
        root.close()


def test_full_disk_is_a_typed_error_and_loses_nothing() -> None:
    server = SmallDiskServer()
    server.start()
    try:
        _full_disk(server)
    finally:
        server.stop()


def _full_disk(server: SmallDiskServer) -> None:
    if not server.mounted:
        print(f"full disk: no tmpfs ({server.why_not_mounted}); a capped InnoDB tablespace instead")
    app = add_app_user(server)
    with mqlite.Queue(app) as setup:
        setup.apply_schema()
    q = mqlite.Queue(app, retry_for=RETRY_FOR, connect_timeout=2)
    server.fill()
    bodies: dict[int, bytes] = {}
    # Fill the table in batches until the server refuses; every acknowledged batch is kept.
    with pytest.raises(StorageFull) as full:
        for batch in range(100_000):
            chunk = [f"{batch:06d}.{i:03d}".encode() * 40 for i in range(500)]
            bodies.update(zip(q.push_many("jobs", chunk), chunk, strict=True))
    assert full.value.transient and full.value.code == 1114, full.value
    assert len(bodies) >= 500
    # Then one at a time, into what the last pages have left.
    with pytest.raises(StorageFull, match="no space left") as refused:
        for i in range(100_000):
            body = f"single {i:06d}".encode() * 40
            started = time.monotonic()
            bodies[q.push("jobs", body)] = body
    assert time.monotonic() - started >= RETRY_FOR, refused.value  # retried for the bound, then raised

    # Reading and deleting need no new space on the disk: consumers go on. (A capped system
    # tablespace also holds the undo records a delete writes: there they are refused too.)
    try:
        first = q.pop("jobs")
        assert first is not None and first.body == bodies.pop(first.id)
        with q.claim("jobs") as m:
            assert m.body == bodies.pop(m.id)
    except StorageFull:
        assert not server.mounted

    # A large body is stored off the row's pages, in space InnoDB may still find, or not. On
    # MariaDB 10.11 a full disk there can also make InnoDB abort the server ("Error (Out of disk
    # space) in rollback"): mqlite then sees a lost connection. Whichever happens, nothing
    # acknowledged is lost once space returns.
    large = b"L" * (1 << 20)
    died = False
    try:
        bodies[q.push("jobs", large)] = large
        outcome = "stored"
    except StorageFull:
        outcome = "refused with StorageFull"
    except Unavailable:
        died = server.process is None or server.process.poll() is not None
        assert died, "lost the connection, yet the server runs"
        outcome = "made the server abort"
    print(f"full disk: a 1 MB push {outcome}")

    if died:
        server.process = None
    server.free()
    if died and server.process is None:
        server.start()
    after = wait_for(lambda: _push_or_none(q, b"after"), timeout=30, what="pushes to succeed again")
    bodies[after] = b"after"
    root = admin_connection(server.dsn)
    try:
        assert rows(root, "CHECK TABLE test.mqlite_messages")[0][2:] == ("status", "OK")
        stored = dict(rows(root, "SELECT id, body FROM test.mqlite_messages"))
        assert {i: bytes(b) for i, b in stored.items()} == bodies  # every acknowledged body, byte for byte
        checksum = rows(root, "SELECT SUM(CRC32(body)) FROM test.mqlite_messages")[0][0]
        assert int(checksum) == sum(zlib.crc32(b) for b in bodies.values())
    finally:
        root.close()
        q.close()


def _push_or_none(q: mqlite.Queue, body: bytes) -> int | None:
    try:
        return q.push("jobs", body)
    except MqliteError:
        return None
