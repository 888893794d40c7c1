"""Cancelling an awaited take or pop at any moment never loses or duplicates a message.

The storm: 2,000 messages, 32 tasks taking under random `wait_for` timeouts while another task
cancels consumers at random (and starts new ones). Claims: every message is handled exactly once.
Pops: no message is handled twice, and none is missing from both the handled set and the table.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

import mqlite
from mqlite.aio import AsyncQueue

from .conftest import rows

MESSAGES = 2000
TASKS = 32
STORM_FOR = 120.0  # seconds at most (it ends when every message has been handled)


async def _storm(aq: AsyncQueue, queue: str, *, consume: bool, seed: int) -> tuple[list[int], dict[str, int]]:
    rng = random.Random(seed)
    handled: list[int] = []
    counts = Counter[str]()

    async def consumer() -> None:
        while True:
            try:
                call = aq.pop(queue) if consume else aq.take(queue)
                # One in three with a timeout shorter than a claim takes; the others mostly long enough.
                timeout = rng.uniform(0.0, 0.005) if rng.random() < 1 / 3 else rng.uniform(0.01, 0.2)
                m = await asyncio.wait_for(call, timeout)
            except asyncio.TimeoutError:
                counts["timeouts"] += 1
                continue
            if m is None:
                await asyncio.sleep(0.001)  # the rest may be on their way back
                continue
            handled.append(m.id)
            if not consume:
                await aq.ack(m)  # a cancellation here still lets the ack finish

    tasks = [asyncio.create_task(consumer()) for _ in range(TASKS)]
    started = set(tasks)
    deadline = time.monotonic() + STORM_FOR
    while len(handled) < MESSAGES and time.monotonic() < deadline:
        await asyncio.sleep(rng.uniform(0.0, 0.01))
        victim = rng.randrange(TASKS)
        tasks[victim].cancel()
        counts["cancelled"] += 1
        tasks[victim] = asyncio.create_task(consumer())
        started.add(tasks[victim])
    # A cancellation can be swallowed (Python 3.11's wait_for returns a result that was already
    # there instead): cancel until every consumer has stopped.
    while not all(t.done() for t in started):
        for t in started:
            t.cancel()
        await asyncio.wait(started, timeout=1)
    await aq.aclose()  # waits for what is being given back
    return handled, dict(counts)


@pytest.mark.parametrize("consume", [False, True], ids=["claim", "pop"])
def test_a_cancellation_storm_leaves_every_message_in_the_queue_or_in_one_callers_hands(
    q: mqlite.Queue, admin, consume: bool
) -> None:
    ids = q.push_many("storm", [f"m{i}" for i in range(MESSAGES)])
    aq = AsyncQueue(queue=q)
    handled, counts = asyncio.run(_storm(aq, "storm", consume=consume, seed=16))
    left = [i for (i,) in rows(admin, "SELECT id FROM mqlite_messages")]
    twice = [i for i, n in Counter(handled).items() if n > 1]
    assert not twice, f"handled more than once: {twice[:10]}"
    assert not set(handled) & set(left)
    missing = set(ids) - set(handled) - set(left)
    assert not missing, f"{len(missing)} messages neither handled nor in the table: {sorted(missing)[:10]}"
    if not consume:
        assert sorted(handled) == ids  # exactly once
        assert not left
    # The storm reached the hard case: calls cancelled after their batch had started, whose messages
    # had to be given back (released, or restored to the table).
    assert aq.given_back > 0, counts
    assert counts["cancelled"] > 50 and counts["timeouts"] > 50, counts
