"""Push and pop semantics against a real server."""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest

import mqlite
from mqlite import sql
from mqlite.errors import MqliteError

from .conftest import rows
from .helpers import wait_for


def test_pop_on_empty_queue_returns_none(q: mqlite.Queue) -> None:
    assert q.pop("nothing-here") is None
    with q.claim("nothing-here") as message:
        assert message is None


def test_push_returns_increasing_ids_and_pop_returns_body(q: mqlite.Queue) -> None:
    first = q.push("jobs", b"one")
    second = q.push("jobs", "twö")
    assert second > first
    m1, m2 = q.pop("jobs"), q.pop("jobs")
    assert (m1.id, m1.body, m1.queue) == (first, b"one", "jobs")
    assert (m2.id, m2.text()) == (second, "twö")
    assert q.pop("jobs") is None


def test_bodies_of_every_accepted_type(q: mqlite.Queue) -> None:
    for body in (b"b", bytearray(b"ba"), memoryview(b"mv"), "s"):
        q.push("types", body)
    assert [q.pop("types").body for _ in range(4)] == [b"b", b"ba", b"mv", b"s"]
    with pytest.raises(TypeError):
        q.push("types", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        q.push_many("types", [b"ok", None])  # type: ignore[list-item]
    assert q.size("types") == 0


def test_single_consumer_sees_fifo_order(q: mqlite.Queue) -> None:
    ids = [q.push("fifo", f"m{i}") for i in range(200)]
    ids += q.push_many("fifo", [f"m{i}" for i in range(200, 400)])
    popped = []
    while (m := q.pop("fifo")) is not None:
        popped.append(m)
    assert [m.id for m in popped] == ids
    assert [m.text() for m in popped] == [f"m{i}" for i in range(400)]


def test_one_mib_binary_body_round_trips(q: mqlite.Queue) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value, including NUL, quote and backslash
    q.push("bin", body)
    with q.claim("bin") as m:
        assert m is not None and m.body == body
    assert q.size("bin") == 0


def test_queues_are_separate(q: mqlite.Queue) -> None:
    q.push("a", b"for a")
    assert q.pop("b") is None
    assert q.pop("a").body == b"for a"


def test_hostile_queue_name_is_only_data(q: mqlite.Queue, admin) -> None:
    hostile = "q'; DELETE FROM mqlite_messages; --"
    q.push("innocent", b"keep me")
    q.push(hostile, b"evil")
    assert q.size("innocent") == 1
    m = q.pop(hostile)
    assert m.queue == hostile and m.body == b"evil"
    assert rows(admin, "SELECT queue FROM mqlite_messages") == [("innocent",)]


def test_push_many_returns_ids_of_its_rows_in_order(q: mqlite.Queue, admin) -> None:
    bodies = [f"row {i}".encode() for i in range(2500)]  # more rows than one INSERT takes
    ids = q.push_many("many", bodies)
    assert len(ids) == len(set(ids)) == 2500
    stored = dict(rows(admin, "SELECT id, body FROM mqlite_messages"))
    assert [stored[i] for i in ids] == bodies
    assert q.push_many("many", []) == []


def test_push_many_is_all_or_nothing(q: mqlite.Queue, admin) -> None:
    # A trigger makes the server refuse one row in the second chunk: the first chunk must roll back.
    admin.cursor().execute(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON mqlite_messages FOR EACH ROW "
        "BEGIN IF NEW.body = 'boom' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF; END"
    )
    for bodies in ([b"fine"] * 1500 + [b"boom"], [b"fine"] * 10 + [b"boom"]):  # two statements, one
        with pytest.raises(MqliteError):
            q.push_many("atomic", bodies)
        assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    assert q.push("atomic", b"after") > 0  # the connection went back clean


def test_concurrent_producers_and_consumers_deliver_each_message_once(q: mqlite.Queue, admin) -> None:
    producers, per_producer, consumers = 8, 375, 16
    produced = threading.Event()
    got: list[bytes] = []
    got_lock = threading.Lock()
    errors: list[BaseException] = []

    def produce(p: int) -> None:
        try:
            for i in range(per_producer):
                q.push("work", f"{p}:{i}")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def consume() -> None:
        try:
            while True:
                m = q.pop("work")
                if m is None:
                    if produced.is_set() and q.size("work") == 0:
                        return
                    continue
                with got_lock:
                    got.append(m.body)
        except BaseException as exc:
            errors.append(exc)

    ps = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    cs = [threading.Thread(target=consume) for _ in range(consumers)]
    for t in ps + cs:
        t.start()
    for t in ps:
        t.join(timeout=120)
    produced.set()
    for t in cs:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ps + cs), "threads did not finish in time"
    assert not errors, errors
    expected = Counter(f"{p}:{i}".encode() for p in range(producers) for i in range(per_producer))
    assert Counter(got) == expected  # every message, exactly once
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_claim_deletes_on_success_and_keeps_the_message_on_error(q: mqlite.Queue) -> None:
    q.push("c", b"x")
    with pytest.raises(RuntimeError):
        with q.claim("c") as m:
            assert m is not None
            assert q.size("c") == 0  # claimed: not ready for anyone else
            raise RuntimeError("handler failed")
    (kept,) = q.peek("c")  # not lost: back in the queue after its backoff
    assert kept.id == m.id and kept.attempts == 1 and kept.last_error.startswith("RuntimeError: handler failed")
    assert q.retry_failed("c") == 0  # delayed, not failed


def test_claim_and_read_back_run_on_one_connection(dsn: str, admin) -> None:
    """Each claim's UPDATE and SELECT run on the same session, whatever the pool hands out meanwhile."""
    import MySQLdb

    statements: list[tuple[int, str]] = []
    lock = threading.Lock()

    class Recording(MySQLdb.cursors.Cursor):
        def execute(self, query, args=None):  # type: ignore[override]
            with lock:
                verb = "ID" if query == sql.CONNECTION_ID else query.split()[0].upper()
                statements.append((self.connection.thread_id(), verb))
            return super().execute(query, args)

    q = mqlite.Queue(dsn, pool_size=2)
    q.apply_schema()
    original = q._pool.open_session

    def recorded_session(**kw):
        raw = original(**kw)
        raw.cursorclass = Recording
        return raw

    q._pool.open_session = recorded_session  # type: ignore[method-assign]
    q.push_many("same", [str(i) for i in range(300)])
    popped: list[int] = []

    def consume() -> None:
        while (m := q.pop("same")) is not None:
            with lock:
                popped.append(m.id)

    threads = [threading.Thread(target=consume) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    q.close()
    assert len(popped) == len(set(popped)) == 300
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    by_session: dict[int, list[str]] = {}
    for session, verb in statements:
        by_session.setdefault(session, []).append(verb)
    reads = 0
    for verbs in by_session.values():
        assert verbs[0] == "ID" and "ID" not in verbs[1:]  # the session learns its server id once, first
        for i, verb in enumerate(verbs):
            if verb == "SELECT":  # every read-back directly follows a claim on the same session
                reads += 1
                assert i > 0 and verbs[i - 1] == "UPDATE"
    assert reads > 0


def test_module_level_functions_use_mqlite_dsn(dsn: str, monkeypatch) -> None:
    import mqlite.queue as queue_module

    monkeypatch.setenv("MQLITE_DSN", dsn)
    monkeypatch.setattr(queue_module, "_default", None)
    mqlite.Queue(dsn).apply_schema()
    ids = [mqlite.push("mod", b"a")] + mqlite.push_many("mod", [b"b", b"c"])
    assert mqlite.pop("mod").id == ids[0]
    with mqlite.claim("mod") as m:
        assert m.body == b"b"
    assert queue_module.default_queue() is queue_module.default_queue()
    queue_module.default_queue().close()


def test_peek_size_stats_purge(q: mqlite.Queue) -> None:
    q.push_many("p", [b"1", b"2", b"3"])
    q.push("other", b"o")
    assert [m.body for m in q.peek("p", 2)] == [b"1", b"2"]
    assert q.size("p") == 3
    with q.claim("p") as m:
        s = q.stats()
        assert s.queues["p"].ready == 2 and s.queues["p"].claimed == 1
        assert s.queues["other"].ready == 1
        assert s.sees_all_connections  # root has PROCESS
        assert q.purge("p") == 2  # the claimed one is left to finish
    assert q.size("p") == 0 and q.size("other") == 1
    assert m.body == b"1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(q: mqlite.Queue, admin) -> None:
    q.push("forks", "parent before")  # the parent now holds an idle pooled connection
    with q._pool.connection() as raw:
        parent_session = raw.thread_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: push on a connection of its own, say which, close everything
        code = 1
        try:
            with q._pool.connection() as raw:
                os.write(write_end, str(raw.thread_id()).encode())
            q.push("forks", "child")
            q.close()
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    child_session = int(os.read(read_end, 100))
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_session != parent_session  # sharing one socket between processes corrupts both
    q.push("forks", "parent after")  # on the parent's own connection, still alive
    with q._pool.connection() as raw:
        assert raw.thread_id() == parent_session
    bodies = sorted(b for (b,) in rows(admin, "SELECT body FROM mqlite_messages WHERE queue = 'forks'"))
    assert bodies == [b"child", b"parent after", b"parent before"]


def test_the_pool_opens_at_most_pool_size_connections_and_close_closes_them(dsn: str, admin) -> None:
    def sessions() -> int:
        ((n,),) = rows(admin, "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                              "WHERE DB = DATABASE() AND ID <> CONNECTION_ID()")
        return int(n)

    q = mqlite.Queue(dsn, pool_size=4)
    q.apply_schema()
    threads = [threading.Thread(target=lambda: [q.push("pool", "x") for _ in range(50)]) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert q.size("pool") == 800
    assert 1 <= sessions() <= 4  # every connection it ever opened is still open (idle): never more than 4
    q.close()
    wait_for(lambda: sessions() == 0, what="the pool's connections to close")
