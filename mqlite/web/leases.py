"""Leases of claims handed out over HTTP, enforced by the server that holds them.

A claim made through `POST /q/{queue}/claim` is owned by one of *this* process's claim sessions,
and that session stays alive while the server runs. The library's recovery returns a claim when
its owner session is gone (or, without the PROCESS privilege, when its lease expired), so with the
privilege a claim whose HTTP client died would never come back while the server is up. The
keeper closes that gap: every claim it handed out has a deadline (`lease` seconds, renewed by
`extend`), and a claim still unsettled at its deadline is nacked through the public API: one
attempt counted, the backoff applied, failed after `max_attempts`, like any recovered claim.

If the server itself dies, its sessions die with it and the library's recovery takes over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..aio import AsyncQueue
from ..errors import MqliteError

log = logging.getLogger("mqlite.web")

EXPIRED = "Recovered: HTTP lease of {lease:g}s expired (the client neither acked nor extended the claim)"


@dataclass
class _Held:
    queue: str
    lease: float
    deadline: float  # time.monotonic()


class LeaseKeeper:
    """Deadlines of the HTTP claims this server handed out, by receipt text."""

    def __init__(self, queue: AsyncQueue, on_expired: Callable[[str], None], *, every: float = 1.0) -> None:
        self._queue = queue
        self._on_expired = on_expired
        self.every = every
        self._held: dict[str, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, receipt: str, queue: str, lease: float) -> None:
        self._held[receipt] = _Held(queue, lease, time.monotonic() + lease)

    def extend(self, receipt: str, lease: float) -> None:
        held = self._held.get(receipt)
        if held is not None:
            held.lease, held.deadline = lease, time.monotonic() + lease

    def drop(self, receipt: str) -> None:
        self._held.pop(receipt, None)

    def expired(self, now: float | None = None) -> list[tuple[str, _Held]]:
        """Claims past their deadline, forgotten here (the caller settles them)."""
        now = time.monotonic() if now is None else now
        gone = [(r, h) for r, h in self._held.items() if h.deadline <= now]
        for r, _ in gone:
            del self._held[r]
        return gone

    async def sweep(self) -> int:
        """Nack every expired claim; returns how many were still held (and so came back)."""
        back = 0
        for receipt, held in self.expired():
            try:
                done = await self._queue.nack(receipt, EXPIRED.format(lease=held.lease))
            except MqliteError as exc:
                # The database is unreachable: keep the claim and try again next sweep.
                log.warning("mqlite web: could not return an expired HTTP claim: %s", exc)
                held.deadline = time.monotonic() + self.every
                self._held[receipt] = held
                continue
            if done:
                back += 1
                self._on_expired(held.queue)
        if back:
            log.info("mqlite web: %d HTTP claim(s) came back after their lease expired", back)
        return back

    async def run(self) -> None:
        """Sweep every `every` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.sweep()
            except Exception:  # housekeeping must not die of one bad sweep
                log.exception("mqlite web: lease sweep failed")
