"""The batch API: `take_many`, `pop_many`, `ack_many`; exactly once when mixed with single takes."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

import mqlite

from .conftest import rows


def test_take_many_claims_the_oldest_in_order_and_ack_many_deletes_them(q: mqlite.Queue, admin) -> None:
    ids = q.push_many("batch", [f"m{i}" for i in range(10)])
    got = q.take_many("batch", 4)
    assert [m.id for m in got] == ids[:4]
    assert q.stats().queues["batch"].claimed == 4
    assert q.ack_many(got) == 4
    assert rows(admin, "SELECT id FROM mqlite_messages ORDER BY id") == [(i,) for i in ids[4:]]
    with pytest.raises(mqlite.errors.NotClaimed):
        q.ack_many(got[:1])  # settled already


def test_take_many_returns_what_there_is_and_empty_when_nothing(q: mqlite.Queue) -> None:
    q.push_many("few", ["a", "b"])
    assert [m.text() for m in q.take_many("few", 50)] == ["a", "b"]
    assert q.take_many("few", 50) == []
    assert q.pop_many("nothing", 5) == []


def test_pop_many_deletes_before_returning(q: mqlite.Queue, admin) -> None:
    ids = q.push_many("popmany", [f"m{i}" for i in range(7)])
    got = q.pop_many("popmany", 5)
    assert [m.id for m in got] == ids[:5]
    assert rows(admin, "SELECT id FROM mqlite_messages ORDER BY id") == [(i,) for i in ids[5:]]
    assert q.stats().queues["popmany"].processed == 5


@pytest.mark.parametrize("n", [0, -1, 1001, 2.5, True])
def test_batch_sizes_are_checked(q: mqlite.Queue, n: object) -> None:
    with pytest.raises(ValueError):
        q.take_many("x", n)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        q.pop_many("x", n)  # type: ignore[arg-type]


def test_ack_many_counts_only_claims_still_held(q: mqlite.Queue, admin) -> None:
    q.push_many("lost", ["a", "b", "c"])
    got = q.take_many("lost", 3)
    # The second one's claim was recovered meanwhile (as after an expired lease) and re-taken.
    admin.cursor().execute("UPDATE mqlite_messages SET owner = 0, claimed_at = NULL WHERE id = %s", (got[1].id,))
    again = q.take("lost")
    assert again is not None and again.id == got[1].id
    assert q.ack_many(got) == 2
    assert rows(admin, "SELECT id FROM mqlite_messages") == [(got[1].id,)]
    assert q.ack(again)


def test_receipts_work_in_ack_many(q: mqlite.Queue, admin) -> None:
    q.push_many("receipts", ["a", "b"])
    receipts = [str(m.receipt) for m in q.take_many("receipts", 2)]
    assert q.ack_many(receipts) == 2
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_sixteen_threads_mixing_take_many_and_take_get_each_message_once(q: mqlite.Queue, dsn: str, admin) -> None:
    ids = q.push_many("mixed", [f"m{i}" for i in range(3000)])
    many = mqlite.Queue(dsn, pool_size=20)
    got: list[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        while True:
            if k % 2:
                batch = many.take_many("mixed", 1 + k % 7)
                if not batch:
                    return
                with lock:
                    got.extend(m.id for m in batch)
                assert many.ack_many(batch) == len(batch)
            else:
                m = many.take("mixed")
                if m is None:
                    return
                with lock:
                    got.append(m.id)
                assert m.ack()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    counts = Counter(got)
    assert sorted(counts) == ids and max(counts.values()) == 1
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    many.close()


def test_ack_each_says_which_claims_were_still_held(q: mqlite.Queue, admin) -> None:
    q.push_many("each", ["a", "b", "c"])
    got = q.take_many("each", 3)
    admin.cursor().execute("UPDATE mqlite_messages SET owner = 0, claimed_at = NULL WHERE id = %s", (got[1].id,))
    assert q.ack_each(got) == [True, False, True]
    assert rows(admin, "SELECT id FROM mqlite_messages") == [(got[1].id,)]


def test_give_back_releases_claims_and_restores_popped_messages_in_place(q: mqlite.Queue, admin) -> None:
    ids = q.push_many("back", ["p1", "p2", "c1", "c2", "later"])
    popped = q.pop_many("back", 2)
    claimed = q.take_many("back", 2)
    assert rows(admin, "SELECT id FROM mqlite_messages ORDER BY id") == [(i,) for i in ids[2:]]
    q.give_back(popped + claimed)
    # Every one back, ready, same id, no attempt counted: the popped ones in their old place, the
    # released claims ready now (behind what was waiting, as any release).
    assert rows(admin, "SELECT id, owner, attempts FROM mqlite_messages ORDER BY id") == [(i, 0, 0) for i in ids]
    assert [m.text() for m in q.take_many("back", 5)] == ["p1", "p2", "later", "c1", "c2"]
    with pytest.raises(mqlite.errors.NotClaimed):
        q.ack(claimed[0])  # given back: no longer this caller's to settle
