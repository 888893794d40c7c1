"""`mqlite.aio.AsyncQueue`: Queue's verbs awaited, the same semantics and typed errors, exactly once
under concurrency (tasks and threads sharing one Queue), one caller's mistake failing only that caller."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable
from typing import TypeVar

import pytest

import mqlite
from mqlite.aio import AsyncQueue
from mqlite.errors import InvalidName, NotClaimed, Unavailable

from .conftest import rows

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 120))  # type: ignore[arg-type]


def test_push_pop_take_ack_and_the_admin_verbs(q: mqlite.Queue, admin) -> None:
    async def main() -> None:
        aq = AsyncQueue(queue=q)
        assert await aq.apply_schema() == []  # up to date already
        first = await aq.push("jobs", b"one")
        ids = await aq.push_many("jobs", ["two", "three", "four"])
        assert ids == [first + 1, first + 2, first + 3]
        assert await aq.size("jobs") == 4
        assert [m.text() for m in await aq.peek("jobs", 2)] == ["one", "two"]
        popped = await aq.pop("jobs")
        assert popped is not None and popped.body == b"one"
        taken = await aq.take("jobs")
        assert taken is not None and taken.text() == "two"
        assert (await aq.stats()).queues["jobs"].claimed == 1
        assert await aq.extend(taken, 60)
        assert await aq.checkpoint(taken, "page 3", 0.5)
        assert await aq.ack(taken)
        many = await aq.take_many("jobs", 5)
        assert [m.text() for m in many] == ["three", "four"]
        assert await aq.nack(many[0], "boom", delay=0)
        assert await aq.fail(many[1], "gave up")
        assert (await aq.peek("jobs", 5, failed=True))[0].last_error == "gave up"
        assert await aq.retry_failed("jobs") == 1
        await aq.pause("jobs")
        assert await aq.is_paused("jobs")
        assert await aq.take("jobs") is None  # paused: nothing handed out
        await aq.resume("jobs")
        again = await aq.take_many("jobs", 5)
        assert sorted(m.text() for m in again) == ["four", "three"]
        three = next(m for m in again if m.text() == "three")
        assert three.attempts == 1 and three.last_error == "boom"
        assert await aq.release(again[0])
        assert await aq.ack_many(again[1:]) == 1
        assert (await aq.recover()).total == 0
        assert await aq.pop_many("jobs", 10) != []
        assert await aq.pop("jobs") is None
        await aq.aclose()

    run(main())
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_claim_block_acks_records_failures_and_releases_on_cancellation(q: mqlite.Queue, admin) -> None:
    async def main() -> None:
        async with AsyncQueue(queue=q) as aq:
            await aq.push_many("c", ["ok", "bad", "cancelled"])
            async with aq.claim("c") as m:
                assert m is not None and m.text() == "ok"
            with pytest.raises(RuntimeError):
                async with aq.claim("c") as m:
                    assert m is not None and m.text() == "bad"
                    raise RuntimeError("handler broke")

            entered = asyncio.Event()

            async def slow() -> None:
                async with aq.claim("c") as m:
                    assert m is not None and m.text() == "cancelled"
                    entered.set()
                    await asyncio.sleep(60)

            task = asyncio.create_task(slow())
            await asyncio.wait_for(entered.wait(), 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with aq.claim("empty") as nothing:
                assert nothing is None

    run(main())
    got = dict(rows(admin, "SELECT body, attempts FROM mqlite_messages WHERE owner = 0 AND failed_at IS NULL"))
    # "bad" failed once (its attempt counted); the cancelled one is back at once, no attempt counted.
    assert got == {b"bad": 1, b"cancelled": 0}
    assert rows(admin, "SELECT last_error LIKE '%handler broke%' FROM mqlite_messages WHERE body = 'bad'") == [(1,)]


def test_the_same_typed_errors_and_a_bad_call_fails_alone(q: mqlite.Queue) -> None:
    async def main() -> None:
        async with AsyncQueue(queue=q) as aq:
            with pytest.raises(InvalidName):
                await aq.push("", b"x")
            with pytest.raises(TypeError):
                await aq.push("e", 42)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await aq.take_many("e", 0)
            with pytest.raises(ValueError):
                await aq.take("e", lease=-1)
            await aq.push_many("e", ["a", "b"])
            a, b = await aq.take_many("e", 2)
            assert await aq.ack(a)
            # Acks gathered into one statement: a second ack, and a receipt that is not one, fail
            # alone; the good ack in the same batch goes through.
            results = await asyncio.gather(aq.ack(a), aq.ack("not-a-receipt"), aq.ack(b), return_exceptions=True)
            assert isinstance(results[0], NotClaimed) and isinstance(results[1], NotClaimed)
            assert results[2] is True
            # Pushes gathered into one INSERT: a bad body fails alone.
            pushed = await asyncio.gather(aq.push("e", "fine"), aq.push("e", object()), aq.push("e", b"also"),
                                          return_exceptions=True)  # type: ignore[arg-type]
            assert isinstance(pushed[0], int) and isinstance(pushed[1], TypeError) and isinstance(pushed[2], int)
            assert [m.text() for m in await aq.pop_many("e", 5)] == ["fine", "also"]

    run(main())


def test_an_unreachable_server_is_unavailable(q: mqlite.Queue) -> None:
    async def main() -> None:
        async with AsyncQueue("mysql://root@127.0.0.1:1/nothing", retry_for=0, connect_timeout=2) as aq:
            with pytest.raises(Unavailable):
                await aq.push("x", b"y")
            with pytest.raises(Unavailable):
                await aq.take("x")

    run(main())


def test_concurrent_pushes_get_their_own_ids_and_rows(q: mqlite.Queue, admin) -> None:
    async def main() -> list[int]:
        async with AsyncQueue(queue=q) as aq:
            return list(await asyncio.gather(*(aq.push("p", f"body {i}") for i in range(300))))

    ids = run(main())
    assert len(set(ids)) == 300
    stored = dict(rows(admin, "SELECT id, body FROM mqlite_messages"))
    assert {i: stored[i] for i in ids} == {i: f"body {n}".encode() for n, i in enumerate(ids)}


def test_tasks_and_threads_sharing_one_queue_handle_each_message_exactly_once(q: mqlite.Queue, admin) -> None:
    ids = q.push_many("shared", [f"m{i}" for i in range(2000)])
    handled: list[int] = []
    lock = threading.Lock()

    def thread_consumer() -> None:
        while True:
            with q.claim("shared") as m:
                if m is None:
                    return
                with lock:
                    handled.append(m.id)

    async def main() -> None:
        aq = AsyncQueue(queue=q)

        async def task_consumer(k: int) -> None:
            while True:
                got = await (aq.take_many("shared", 1 + k % 5) if k % 2 else aq.take("shared"))
                batch = got if isinstance(got, list) else [got] if got else []
                if not batch:
                    return
                with lock:
                    handled.extend(m.id for m in batch)
                if k % 3:
                    assert await aq.ack_many(batch) == len(batch)
                else:
                    assert all(await asyncio.gather(*(aq.ack(m) for m in batch)))

        await asyncio.gather(*(task_consumer(k) for k in range(32)))
        await aq.aclose()

    threads = [threading.Thread(target=thread_consumer) for _ in range(6)]
    for t in threads:
        t.start()
    run(main())
    for t in threads:
        t.join(60)
    assert Counter(handled).most_common(1)[0][1] == 1
    assert sorted(handled) == ids
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_aclose_closes_a_queue_it_built_and_leaves_a_shared_one_open(q: mqlite.Queue, dsn: str) -> None:
    async def main() -> None:
        shared = AsyncQueue(queue=q)
        await shared.push("o", b"x")
        await shared.aclose()
        assert q.pop("o") is not None  # still usable
        async with AsyncQueue(dsn) as own:
            await own.push("o", b"y")
        assert own.queue._pool._db is None  # its pool was closed

    run(main())
    with pytest.raises(ValueError):
        AsyncQueue(dsn, queue=q)


def test_one_async_queue_serves_two_event_loops_at_once(q: mqlite.Queue) -> None:
    ids = q.push_many("loops", [f"m{i}" for i in range(400)])
    aq = AsyncQueue(queue=q)
    got: list[list[int]] = [[], []]

    async def drain(mine: list[int]) -> None:
        async def one() -> None:
            while (m := await aq.take("loops")) is not None:
                mine.append(m.id)
                assert await aq.ack(m)

        await asyncio.gather(*(one() for _ in range(8)))

    threads = [threading.Thread(target=lambda mine=mine: run(drain(mine))) for mine in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a loop waited forever on a batch of the other loop"
    assert sorted(got[0] + got[1]) == ids
    run(aq.aclose())
