"""Splitting a benchmark's clients over processes (spawned: no fork of a process holding threads and sockets).

Each process runs its share of every group's clients with `harness` (and its share of a count
budget), starts behind a barrier shared with the parent, reports progress through shared
memory, and sends its GroupStats back; the parent adds messages and keeps the longest elapsed.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import traceback
from array import array
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .harness import START_TIMEOUT, TICK, Bound, DriverFactory, Group, GroupStats, Tick, _fraction, _run_here


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if k < n % parts else 0) for k in range(parts)]


def _budgets(messages: int | None, clients: list[int]) -> list[int | None]:
    """Split a count budget over processes in proportion to their clients (largest remainder)."""
    if messages is None:
        return [None] * len(clients)
    total = sum(clients)
    shares = [messages * n // total for n in clients]
    for k in sorted(range(len(clients)), key=lambda k: -clients[k])[: messages - sum(shares)]:
        shares[k] += 1
    return list(shares)


def _child(
    make_driver: DriverFactory,
    groups: list[Group],
    bound: Bound,
    offset: int,
    gate: Any,
    shared: Any,
    index: int,
    out: Any,
) -> None:
    def report(done: int) -> None:
        shared[index] = done

    try:
        stats = _run_here(make_driver, groups, bound, offset=offset, gate=gate, report=report)
        out.put(("ok", index, [_pack(s) for s in stats]))
    except BaseException:  # noqa: BLE001 - the parent reports it
        try:
            gate.abort()
        except Exception:  # noqa: BLE001
            pass
        out.put(("error", index, traceback.format_exc(limit=3)))


def _pack(s: GroupStats) -> dict[str, Any]:
    data = dict(s.__dict__)
    data["latencies"] = array("d", s.latencies).tobytes()
    data["samples"] = {k: array("d", v).tobytes() for k, v in s.samples.items()}
    return data


def _unpack(data: dict[str, Any]) -> GroupStats:
    data = dict(data)
    lat = array("d")
    lat.frombytes(data["latencies"])
    data["latencies"] = lat.tolist()
    samples = {}
    for k, raw in data["samples"].items():
        values = array("d")
        values.frombytes(raw)
        samples[k] = values.tolist()
    data["samples"] = samples
    return GroupStats(**data)


def run_processes(
    make_driver: DriverFactory, groups: Sequence[Group], bound: Bound, processes: int, tick: Tick | None
) -> list[GroupStats]:
    ctx = multiprocessing.get_context("spawn")
    shares = [_split(g.clients, processes) for g in groups]
    budgets = [_budgets(g.budget if g.budget is not None else bound.messages, shares[gi])
               for gi, g in enumerate(groups)]
    plans: list[tuple[list[Group], Bound, int]] = []
    offset = 0
    for k in range(processes):
        sub = [replace(g, clients=shares[gi][k], budget=budgets[gi][k]) for gi, g in enumerate(groups)]
        count = sum(g.clients for g in sub)
        if count:
            plans.append((sub, bound, offset))
        offset += count
    gate = ctx.Barrier(len(plans) + 1)
    shared = ctx.Array("q", len(plans), lock=False)
    out = ctx.Queue()
    children = [
        ctx.Process(target=_child, args=(make_driver, sub, b, off, gate, shared, k, out), daemon=True)
        for k, (sub, b, off) in enumerate(plans)
    ]
    for p in children:
        p.start()
    results: dict[int, list[GroupStats]] = {}
    failure: str | None = None
    try:
        try:
            gate.wait(START_TIMEOUT + 60)
        except threading.BrokenBarrierError:
            pass
        began = time.perf_counter()
        deadline = began + bound.limit + START_TIMEOUT
        while len(results) < len(plans) and failure is None:
            now = time.perf_counter()
            if now > deadline:
                failure = "client processes did not finish in time"
                break
            try:
                kind, index, payload = out.get(timeout=TICK)
            except Exception:  # noqa: BLE001 - queue.Empty: report progress and wait again
                if tick is not None:
                    done = sum(shared)
                    tick(_fraction(bound, now - began, done), done)
                if not any(p.is_alive() for p in children) and out.empty():
                    failure = failure or "a client process died"
                continue
            if kind == "ok":
                results[index] = [_unpack(d) for d in payload]
            else:
                failure = payload
    finally:
        for p in children:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    if failure is not None:
        raise RuntimeError(f"benchmark client process failed: {failure}")
    merged = []
    for gi, g in enumerate(groups):
        parts = [results[k][gi] for k in sorted(results) if gi < len(results[k])]
        parts = [p for p in parts if p.clients]
        m = GroupStats(g.role, g.clients)
        m.messages = sum(p.messages for p in parts)
        m.calls = sum(p.calls for p in parts)
        m.elapsed = max((p.elapsed for p in parts), default=0.0)
        m.latencies = sorted(x for p in parts for x in p.latencies)
        m.errors = sum(p.errors for p in parts)
        m.error = next((p.error for p in parts if p.error), None)
        m.drained = any(p.drained for p in parts)
        m.truncated = any(p.truncated for p in parts)
        m.cpu_seconds = sum(p.cpu_seconds for p in parts)
        names = {k for p in parts for k in p.samples}
        m.samples = {k: sorted(x for p in parts for x in p.samples.get(k, ())) for k in names}
        merged.append(m)
    return merged
