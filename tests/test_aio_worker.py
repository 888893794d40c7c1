"""`mqlite.aio.AsyncWorker`: coroutine handlers, at most N at once, failures recorded, graceful stop;
`mqlite worker --handler mod:coro` runs it, and SIGTERM with messages in hand loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

import mqlite
from mqlite.aio import AsyncQueue, AsyncWorker
from mqlite.aio.idle import AsyncIdleWait
from mqlite.message import Message

from .conftest import rows
from .helpers import ROOT, read_line

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 120))  # type: ignore[arg-type]


def test_at_most_concurrency_handlers_run_at_once_and_every_message_is_settled(q: mqlite.Queue, admin) -> None:
    q.push_many("w", [f"m{i}" for i in range(40)] + ["boom"])
    running = 0
    peak = 0
    seen: list[str] = []

    async def handle(message: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.02)
            if message.text() == "boom":
                raise ValueError("bad message")
            seen.append(message.text())
        finally:
            running -= 1

    async def main() -> mqlite.WorkerResult:
        async with AsyncQueue(queue=q) as aq:
            return await AsyncWorker(aq, ["w"], handle, concurrency=8, until_empty=True, handle_signals=False).run()

    result = run(main())
    assert (result.processed, result.failed, result.reason, result.clean) == (40, 1, "empty", True)
    assert peak == 8  # all eight ran together, never more
    assert sorted(seen) == sorted(f"m{i}" for i in range(40))
    assert rows(admin, "SELECT body, attempts, last_error LIKE '%bad message%' FROM mqlite_messages") == [
        (b"boom", 1, 1)
    ]


def test_queues_are_swept_in_order_and_max_messages_stops(q: mqlite.Queue) -> None:
    q.push_many("low", ["l1", "l2"])
    q.push_many("high", ["h1", "h2"])
    order: list[str] = []

    async def handle(message: Message) -> None:
        order.append(message.text())

    async def main() -> mqlite.WorkerResult:
        worker = AsyncWorker(q, ["high", "low"], handle, max_messages=3, handle_signals=False)
        return await worker.run()

    result = run(main())
    assert order == ["h1", "h2", "l1"] and (result.processed, result.reason) == (3, "max_messages")


def test_stop_finishes_what_is_in_hand_and_takes_nothing_new(q: mqlite.Queue, admin) -> None:
    q.push_many("s", [f"m{i}" for i in range(10)])
    started: list[int] = []
    release = asyncio.Event()

    async def handle(message: Message) -> None:
        started.append(message.id)
        await release.wait()

    async def main() -> mqlite.WorkerResult:
        worker = AsyncWorker(q, ["s"], handle, concurrency=3, handle_signals=False)
        running = asyncio.create_task(worker.run())
        while len(started) < 3:
            await asyncio.sleep(0.01)
        worker.stop()
        release.set()  # the three in hand finish; their tasks must not take another
        return await running

    result = run(main())
    assert len(started) == 3
    assert (result.processed, result.reason, result.abandoned) == (3, "stopped", 0)
    assert len(rows(admin, "SELECT id FROM mqlite_messages WHERE owner = 0")) == 7


def test_handlers_still_running_at_stop_timeout_are_cancelled_and_their_messages_released(
    q: mqlite.Queue, admin
) -> None:
    q.push_many("t", ["a", "b"])

    async def handle(message: Message) -> None:
        await asyncio.sleep(600)

    async def main() -> mqlite.WorkerResult:
        worker = AsyncWorker(q, ["t"], handle, concurrency=2, stop_timeout=0.2, handle_signals=False)
        running = asyncio.create_task(worker.run())
        while len(worker.in_hand()) < 2:
            await asyncio.sleep(0.01)
        worker.stop()
        return await running

    result = run(main())
    assert (result.abandoned, result.clean) == (2, False)
    # Back at once, unclaimed, no attempt counted: not left for recovery.
    assert rows(admin, "SELECT body, owner, attempts FROM mqlite_messages ORDER BY id") == [(b"a", 0, 0), (b"b", 0, 0)]


def test_a_plain_function_is_refused_and_the_idle_wait_is_pluggable(q: mqlite.Queue) -> None:
    with pytest.raises(TypeError):
        AsyncWorker(q, ["x"], lambda m: None)  # type: ignore[arg-type, return-value]
    slept: list[float] = []

    class Recording(AsyncIdleWait):
        async def sleep_async(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
            slept.append(seconds)
            if len(slept) == 4:
                worker.stop()
            return await super().sleep_async(0, wake)

    async def handle(message: Message) -> None:
        pass

    worker = AsyncWorker(q, ["x"], handle, idle_min=0.01, idle_max=0.04, handle_signals=False)
    worker.idle_wait = Recording
    run(worker.run())
    assert slept == [0.01, 0.02, 0.04, 0.04]


ASYNC_HANDLER = '''
import asyncio, os
from pathlib import Path

async def handle(message):
    print("started", message.id, flush=True)
    go = Path(os.environ["TEST_GO_FILE"])
    for _ in range(3000):  # the test says when the work is over (30 s at most)
        if go.exists():
            break
        await asyncio.sleep(0.01)
    print("finished", message.id, flush=True)
'''


def test_sigterm_of_an_async_worker_process_with_messages_in_hand_loses_nothing(
    tmp_path: Path, dsn: str, q: mqlite.Queue, admin
) -> None:
    ids = q.push_many("jobs", [f"m{i}" for i in range(20)])
    (tmp_path / "async_handler.py").write_text(ASYNC_HANDLER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_GO_FILE": str(tmp_path / "go"), "MQLITE_DSN": dsn}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqlite", "worker", "jobs", "--handler", "async_handler:handle", "-c", "4"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen: list[str] = []
    try:
        while sum(line.startswith("started") for line in seen) < 4:
            seen.append(read_line(proc))
        proc.send_signal(signal.SIGTERM)
        while "SIGTERM received" not in seen[-1]:
            seen.append(read_line(proc))
        (tmp_path / "go").touch()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    seen += proc.stdout.read().splitlines() if proc.stdout else []
    assert any("4 task(s)" in line for line in seen)  # it ran on the AsyncWorker
    started = {int(line.split()[1]) for line in seen if line.startswith("started")}
    finished = {int(line.split()[1]) for line in seen if line.startswith("finished")}
    assert len(started) == 4 and finished == started  # in hand at the signal, finished; nothing new taken
    left = {i for (i,) in rows(admin, "SELECT id FROM mqlite_messages WHERE owner = 0")}
    assert left == set(ids) - finished  # the finished ones acknowledged, every other one ready again
    assert any("stopped (signal): 4 processed" in line for line in seen)
    assert "Traceback" not in "\n".join(seen)
