"""A relay that multiplexes, as a connection pooler can: each client statement goes to one of two
server sessions in turn, so two statements of one client connection run on different sessions.

The client logs in on the first server connection as usual. The second one is opened on the
client's first statement by replaying the client's own login packets, which only works for an
account without a password (the login answer to one server's challenge does not fit another's):
`Multiplexer.usable(dsn)` says whether a DSN qualifies. A statement is a client packet with sequence
number 0; the server's answer comes back from whichever session ran it (the client sends nothing
while it waits for an answer, so the answers never interleave).
"""

from __future__ import annotations

import asyncio

from mqlite.config import parse_dsn

from .relay import Packets, Relay

_COM_QUIT = 1


class Multiplexer(Relay):
    def __init__(self, server_dsn: str) -> None:
        super().__init__(server_dsn)
        self.statements = 0  # statements routed, each to the other session than the one before

    @staticmethod
    def usable(dsn: str) -> bool:
        return not parse_dsn(dsn).password

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first_reader, first = await self.upstream()
        sessions = [first]
        down = [self.spawn(_copy(first_reader, writer))]
        login: list[bytes] = []  # the client's packets before its first statement
        packets = Packets(head=1)
        turn = 0
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                # The client never sends a statement before the answer to the previous one, so
                # a chunk holding the start of a statement holds nothing of the one before.
                for _, seq, head in packets.feed(chunk):
                    if seq != 0:
                        continue
                    if len(sessions) == 1:
                        second_reader, second = await self._replay_login(login)
                        sessions.append(second)
                        down.append(self.spawn(_copy(second_reader, writer)))
                    if head[:1] == bytes([_COM_QUIT]):
                        for s in sessions:
                            s.write(chunk)
                        return
                    turn = (turn + 1) % len(sessions)
                    self.statements += 1
                if len(sessions) == 1:
                    login.append(chunk)
                sessions[turn].write(chunk)
                await sessions[turn].drain()
        finally:
            for task in down:
                task.cancel()
            for s in sessions:
                self.forget(s)

    async def _replay_login(self, login: list[bytes]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A second server session logged in with the client's own login packets."""
        reader, writer = await self.upstream()
        await _read_packet(reader)  # the server's greeting
        for packet in login:
            writer.write(packet)
            await writer.drain()
            answer = await _read_packet(reader)
        if not login or answer[:1] != b"\x00":
            raise OSError(f"the replayed login was refused: {answer[:80]!r}")
        return reader, writer


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    header = await asyncio.wait_for(reader.readexactly(4), 10)
    length = header[0] | header[1] << 8 | header[2] << 16
    return await asyncio.wait_for(reader.readexactly(length), 10)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            writer.transport.abort()
            return
        writer.write(chunk)
        await writer.drain()


class Renumbering(Relay):
    """A relay that pins each client to one server session, as a pooler with multiplexing turned
    off does, but hands the client a connection id of its own in the greeting (ProxySQL numbers
    its client sessions itself): the client's thread id is then not the server's CONNECTION_ID()."""

    OFFSET = 1_000_000

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_reader, server = await self.upstream()
        header = await asyncio.wait_for(server_reader.readexactly(4), 10)
        greeting = bytearray(await asyncio.wait_for(server_reader.readexactly(
            header[0] | header[1] << 8 | header[2] << 16), 10))
        at = greeting.index(0, 1) + 1  # after the protocol version byte and the version string
        real = int.from_bytes(greeting[at:at + 4], "little")
        greeting[at:at + 4] = (real + self.OFFSET).to_bytes(4, "little")
        writer.write(header + bytes(greeting))
        down = self.spawn(_copy(server_reader, writer))
        try:
            await _copy(reader, server)
        finally:
            down.cancel()
            self.forget(server)
