"""The client side of the asyncio rows: `AsyncQueue` (the core in threads), and a native async driver.

`AsyncMqliteDriver` is what mqlite ships. `NativeDriver` is the other shape the library could
have taken, measured so that the choice rests on figures: asyncmy connections on the event loop,
sending the same `sql.py` statements (push; claim → read back → grouped fenced ack), claims and
acks gathered into one statement in flight as `Claimer` and the ack group do. It is a measuring
stick only: as a library it would be a second implementation of the protocol and its coordination.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import datetime
from typing import Any

from ..aio import AsyncQueue
from ..config import DEFAULT_LEASE, parse_dsn
from ..message import Message
from ..queue import Queue
from ..sql import statements
from .drivers import Case, body
from .harness import Empty
from .peers import Skip

Work = Callable[[], Awaitable[int]]
_GATHER_LIMIT = 64  # rows one native claim asks for at most (the Claimer's group size)


class AsyncMqliteDriver:
    """`AsyncQueue` over one Queue sized as the sync row's (`pool_size`), its threads left at the default."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.q: AsyncQueue | None = None
        self._body = body(case.body_size)

    async def prepare(self, clients: int) -> None:
        self.q = AsyncQueue(self.case.dsn, table=self.case.table, pool_size=self.case.pool_size,
                            checkout_timeout=60)
        # Open the pool's connections before the clock starts, as `MqliteDriver.prepare` does (not by
        # running a statement: `size` would count a seeded backlog on each of them).
        await asyncio.to_thread(_warm, self.q.queue, min(clients, self.case.pool_size))

    async def worker(self, role: str, index: int) -> Work:
        q, queue, data = self.q, self.case.queue, self._body
        assert q is not None
        if role == "push":
            async def push() -> int:
                await q.push(queue, data)
                return 1
            return push
        if role == "pop":
            async def pop() -> int:
                if await q.pop(queue) is None:
                    raise Empty
                return 1
            return pop
        if role == "claim":
            async def claim() -> int:
                async with q.claim(queue) as message:
                    if message is None:
                        raise Empty
                return 1
            return claim
        raise ValueError(f"unknown asyncio role {role!r}")

    def samples(self) -> dict[str, list[float]]:
        return {}

    async def close(self) -> None:
        if self.q is not None:
            await self.q.aclose()


def _warm(q: Queue, n: int) -> None:
    with ExitStack() as stack:
        for _ in range(n):
            stack.enter_context(q._pool.connection())


class _Gather:
    """One `run(items)` in flight; callers arriving meanwhile go together into the next."""

    def __init__(self, run: Callable[[list[Any]], Awaitable[list[Any]]], limit: int) -> None:
        self._run = run
        self._limit = limit
        self._waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self._busy = False

    async def submit(self, item: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._lead())
        return await future

    async def _lead(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self._limit], self._waiting[self._limit:]
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                    for _, f in batch:
                        f.set_exception(exc)
                    continue
                for (_, f), result in zip(batch, results, strict=True):
                    f.set_result(result)
        finally:
            self._busy = False


class NativeDriver:
    """asyncmy connections on the loop, `sql.py`'s statements, claims and acks gathered."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.st = statements(case.table)
        self._body = body(case.body_size)
        self._pool: Any = None
        self._session: Any = None
        self._last_claim = datetime(1970, 1, 1)
        self._claims = _Gather(self._claim, _GATHER_LIMIT)
        self._acks = _Gather(self._ack, 500)

    async def prepare(self, clients: int) -> None:
        try:
            import asyncmy
        except ImportError:
            raise Skip("asyncmy is not installed (pip install 'mqlite[peers]')") from None
        kwargs = parse_dsn(self.case.dsn).connect_kwargs()
        args: dict[str, Any] = {
            "host": kwargs.get("host", "127.0.0.1"), "port": kwargs.get("port", 3306), "user": kwargs["user"],
            "password": kwargs.get("password", ""), "db": kwargs["database"], "autocommit": True,
            "charset": "utf8mb4",
            # utf8mb4_bin, as the pool's connections: under a case-insensitive collation the claim's
            # `queue = %s` no longer walks the index in order and every claim sorts the queue.
            "init_command": "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
        }
        if "unix_socket" in kwargs:
            args["unix_socket"] = kwargs["unix_socket"]
        size = self.case.pool_size
        self._pool = await asyncmy.create_pool(minsize=size, maxsize=size, **args)
        self._session = await asyncmy.connect(**args)
        async with self._session.cursor() as cur:
            await cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")

    async def worker(self, role: str, index: int) -> Work:
        if role == "push":
            async def push() -> int:
                async with self._pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute(self.st.push, (self.case.queue, self._body))
                return 1
            return push
        if role == "claim":
            async def claim() -> int:
                message = await self._claims.submit(1)
                if message is None:
                    raise Empty
                if not await self._acks.submit(message):
                    raise RuntimeError(f"message {message.id}: claim lost")
                return 1
            return claim
        raise ValueError(f"unknown native role {role!r}")

    async def _claim(self, wants: list[int]) -> list[Message | None]:
        st, queue = self.st, self.case.queue
        async with self._session.cursor() as cur:
            claimed = await cur.execute(st.in_list(st.claim_levels, 1),  # the bench pushes at priority 0 only
                                        (int(DEFAULT_LEASE * 1e6), queue, 0, st.table, queue, len(wants)))
            rows: list[Message] = []
            if claimed:
                await cur.execute(st.read_claimed_since, (self._last_claim, queue))
                rows = [Message.from_row(r) for r in await cur.fetchall()]
        for m in rows:
            if m.claimed_at is not None and m.claimed_at > self._last_claim:
                self._last_claim = m.claimed_at
        return [rows[i] if i < len(rows) else None for i in range(len(wants))]

    async def _ack(self, messages: list[Message]) -> list[bool]:
        fences = [v for m in messages for v in m.receipt.fence()]
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            deleted = await cur.execute(self.st.in_list(self.st.ack_many, len(messages), "(%s,%s,%s,%s,%s,%s,%s)"),
                                        fences)
        return [deleted == len(messages)] * len(messages)

    def samples(self) -> dict[str, list[float]]:
        return {}

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
