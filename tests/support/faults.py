"""A relay that injects network faults between mqlite and the server.

Modes (`FaultProxy(dsn, mode, every=…)`):
- "pass": relays every byte unchanged;
- "cut": about every `every` seconds, the next chunk relayed (either way, any connection, the
  handshake included) is cut at a random byte and both sides of that connection are dropped:
  a statement half-sent, or a reply half-received;
- "lost_ack": about every `every` seconds, the next autocommit INSERT or COMMIT a client sends
  is relayed whole, and its connection is dropped as soon as the server's reply starts (part of
  the reply's first chunk reaches the client, never all of it): the server committed, the client
  cannot know;
- "stall": about every `every` seconds, the next connection to carry a chunk goes silent both
  ways (a black hole, as a half-open connection or a dead router is) for `stall_for` seconds, then
  is dropped; what is sent into it meanwhile is discarded;
- "slow": every chunk waits `delay` seconds before it is relayed, both ways.

`counts` says how many of each fault were injected. Faults start when `start_faults()` is called
(so a test can set up through the relay first) and stop with `stop_faults()`.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

from .relay import Packets, Relay

MODES = ("pass", "cut", "lost_ack", "stall", "slow")
_COM_QUERY = 3
_COMMITTING = (b"INSERT", b"COMMIT")


@dataclass
class _Link:
    """One client connection and its server connection."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    stalled: bool = False
    cut_reply: bool = False  # drop the connection once the server's reply starts
    dead: bool = False
    commands: Packets = field(default_factory=Packets)


class FaultProxy(Relay):
    def __init__(
        self,
        server_dsn: str,
        mode: str,
        *,
        every: float = 0.2,
        stall_for: float = 4.0,
        delay: float = 0.01,
        seed: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        super().__init__(server_dsn)
        self.mode = mode
        self.every = every
        self.stall_for = stall_for
        self.delay = delay
        self.rng = random.Random(seed)  # where to cut
        # When to arm the next fault: a generator of its own, so the faults' times depend on the
        # seed alone (not on how much traffic drew cut positions meanwhile), and so their count.
        self._clock = random.Random(seed + 1)
        self.counts: Counter[str] = Counter()
        self._armed = False
        self._faulting = False
        self._arming: asyncio.Task[None] | None = None

    def start_faults(self) -> None:
        self.call(self._start_faults)

    def stop_faults(self) -> None:
        self.call(self._stop_faults)

    async def _start_faults(self) -> None:
        self._faulting = True
        if self.mode in ("cut", "lost_ack", "stall") and self._arming is None:
            self._arming = self.spawn(self._arm_forever())

    async def _stop_faults(self) -> None:
        self._faulting = False
        self._armed = False
        if self._arming is not None:
            self._arming.cancel()
            self._arming = None

    async def _arm_forever(self) -> None:
        while True:
            # Between half and one and a half `every`: irregular, but never a long gap (a short
            # run still sees its share of faults).
            await asyncio.sleep(self.every * self._clock.uniform(0.5, 1.5))
            self._armed = True

    def _take_armed(self) -> bool:
        if self._armed and self._faulting:
            self._armed = False
            return True
        return False

    # -- relaying ------------------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        server_reader, server_writer = await self.upstream()
        link = _Link(writer, server_writer)
        try:
            up = self.spawn(self._pump(link, reader, server_writer, upstream=True))
            down = self.spawn(self._pump(link, server_reader, writer, upstream=False))
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            down.cancel()
        finally:
            self.forget(server_writer)

    async def _pump(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    *, upstream: bool) -> None:
        while not link.dead:
            chunk = await reader.read(65536)
            if not chunk:
                return
            if link.stalled:
                continue  # the black hole swallows it
            if self.mode == "slow" and self._faulting:
                await asyncio.sleep(self.delay)
            elif self.mode == "cut" and self._take_armed():
                self.counts["cut"] += 1
                writer.write(chunk[: self.rng.randrange(len(chunk))])
                return await self._drop(link, writer)
            elif self.mode == "stall" and self._take_armed():
                self.counts["stall"] += 1
                link.stalled = True
                self.spawn(self._end_stall(link))
                continue
            elif self.mode == "lost_ack":
                if upstream and self._committing(link, chunk) and self._take_armed():
                    link.cut_reply = True
                elif not upstream and link.cut_reply:
                    self.counts["lost_ack"] += 1
                    writer.write(chunk[: self.rng.randrange(len(chunk))])
                    return await self._drop(link, writer)
            writer.write(chunk)
            await writer.drain()

    @staticmethod
    def _committing(link: _Link, chunk: bytes) -> bool:
        """Whether the chunk starts a COM_QUERY that commits: an (autocommit) INSERT, or COMMIT."""
        for _, seq, head in link.commands.feed(chunk):
            if seq == 0 and head[:1] == bytes([_COM_QUERY]) and head[1:].lstrip().upper().startswith(_COMMITTING):
                return True
        return False

    async def _drop(self, link: _Link, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(writer.drain(), 1)
        except (OSError, asyncio.TimeoutError):
            pass
        link.dead = True
        link.client.transport.abort()
        link.server.transport.abort()

    async def _end_stall(self, link: _Link) -> None:
        await asyncio.sleep(self.stall_for)
        link.dead = True
        link.client.transport.abort()
        link.server.transport.abort()
