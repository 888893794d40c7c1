"""Drive client *tasks* on one event loop (the asyncio rows), bounded as `harness` bounds threads.

An async driver is `harness.Driver`'s shape with coroutines: `await prepare(clients)`, `await
worker(role, index)` returning an async callable that handles messages (raising `Empty` when
there are none), `samples()`, `await close()`. Beside the clients, a probe task sleeps 1 ms over
and over and records how late it wakes: the event-loop lag a web app on that loop would see. The
same probe runs alone for `IDLE_PROBE` seconds first: on a shared machine, the lag of a loop with
nothing to do is the floor the clients' lag is to be read against.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .harness import TICK, Bound, Empty, Group, GroupStats, Tick, _calls, _describe

PROBE_SLEEP = 0.001  # seconds the lag probe asks to sleep
IDLE_PROBE = 1.0  # seconds the probe runs alone before the clients start
AsyncDriverFactory = Callable[[], Any]


def run(make_driver: AsyncDriverFactory, group: Group, bound: Bound, *, tick: Tick | None = None) -> list[GroupStats]:
    """Run `group.clients` tasks of `group.role` within `bound`; one GroupStats, lag in `samples["loop_lag"]`."""
    return [asyncio.run(_main(make_driver, group, bound, tick))]


async def _main(make_driver: AsyncDriverFactory, group: Group, bound: Bound, tick: Tick | None) -> GroupStats:
    driver = make_driver()
    try:
        return await _drive(driver, group, bound, tick)
    finally:
        await driver.close()


async def _drive(driver: Any, group: Group, bound: Bound, tick: Tick | None) -> GroupStats:
    await driver.prepare(group.clients)
    stats = GroupStats(group.role, group.clients)
    works: list[Callable[[], Awaitable[int]]] = []
    errors: list[str] = []
    for i in range(group.clients):
        try:
            works.append(await driver.worker(group.role, i))
        except Exception as exc:  # noqa: BLE001 - reported as the row's error
            errors.append(_describe(exc))
    calls_left = _calls(group, bound)
    stop = asyncio.Event()
    counts = [0] * len(works)
    lats: list[float] = []
    ended = [0.0] * len(works)
    drained = [False]
    lag: list[float] = []
    clock = time.perf_counter

    async def client(slot: int, work: Callable[[], Awaitable[int]]) -> None:
        nonlocal calls_left
        try:
            while not stop.is_set():
                if calls_left is not None:
                    if calls_left <= 0:
                        break
                    calls_left -= 1
                t0 = clock()
                try:
                    n = await work()
                except Empty:
                    if calls_left is not None:
                        calls_left += 1
                    if group.stop_on_empty:
                        drained[0] = True
                        break
                    await asyncio.sleep(group.idle)
                    continue
                except Exception as exc:  # noqa: BLE001
                    errors.append(_describe(exc))
                    break
                lats.append(clock() - t0)
                counts[slot] += n
        finally:
            ended[slot] = clock()

    async def probe(into: list[float], until: asyncio.Event) -> None:
        while not until.is_set():
            t0 = clock()
            await asyncio.sleep(PROBE_SLEEP)
            into.append(max(0.0, clock() - t0 - PROBE_SLEEP))

    idle_lag: list[float] = []
    alone = asyncio.Event()
    asyncio.get_running_loop().call_later(IDLE_PROBE, alone.set)
    await probe(idle_lag, alone)
    cpu0 = time.process_time()
    began = clock()
    prober = asyncio.create_task(probe(lag, stop))
    tasks = [asyncio.create_task(client(i, w)) for i, w in enumerate(works)]
    truncated = False
    pending = set(tasks)
    while pending:
        now = clock() - began
        if now >= bound.limit and not stop.is_set():
            stop.set()
            truncated = bound.seconds is None
        if tick is not None:
            done = sum(counts)
            fraction = now / bound.limit if bound.seconds is not None else max(
                done / (bound.messages or 1), now / bound.cap)
            tick(min(1.0, fraction), done)
        _, pending = await asyncio.wait(pending, timeout=min(TICK, max(0.001, bound.limit - now)))
    stop.set()
    await prober
    stats.cpu_seconds = time.process_time() - cpu0
    stats.messages = sum(counts)
    stats.latencies = sorted(lats)
    stats.calls = len(lats)
    stats.elapsed = max(ended, default=began) - began
    stats.errors = len(errors)
    stats.error = errors[0] if errors else None
    stats.drained = drained[0]
    stats.truncated = truncated
    stats.samples = {k: sorted(v) for k, v in driver.samples().items()}
    stats.samples["loop_lag"] = sorted(lag)
    stats.samples["loop_lag_idle"] = sorted(idle_lag)
    return stats
