"""A TCP relay on loopback between a MySQL client and a server, on an asyncio loop of its own.

    with SomeRelay(server_dsn) as relay:
        q = mqlite.Queue(relay.dsn(dsn, read_timeout=2))

Subclasses decide what happens to the bytes (`serve`). The relay listens on 127.0.0.1 and reaches
the server over TCP, or over its unix socket when the DSN names one. Every wait here is bounded;
`close()` aborts every connection and stops the loop's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from mqlite.config import parse_dsn


class Relay:
    """Accepts clients on 127.0.0.1:`port` and gives each to `serve(client_reader, client_writer)`."""

    def __init__(self, server_dsn: str) -> None:
        settings = parse_dsn(server_dsn)
        self._unix = settings.unix_socket
        self._host, self._port = settings.hosts[0]
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{type(self).__name__}-loop", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # spawned by the relay
        self._serving: set[asyncio.Task[Any]] = set()  # one per client connection (asyncio's own)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Relay:
        self._thread.start()
        self._server = self.call(lambda: asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            if self._serving:
                await asyncio.wait(list(self._serving), timeout=5)

        try:
            self.call(shutdown, timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, make: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run the coroutine `make()` on the relay's loop and return its result (bounded wait)."""
        return asyncio.run_coroutine_threadsafe(_awaiting(make), self._loop).result(timeout)

    def dsn(self, dsn: str, **options: float) -> str:
        """`dsn` (user, password, database) reached through this relay, with extra DSN options."""
        s = parse_dsn(dsn)
        auth = quote(s.user, safe="") + (":" + quote(s.password, safe="") if s.password else "")
        query = f"?{urlencode(options)}" if options else ""
        return f"mysql://{auth}@127.0.0.1:{self.port}/{quote(s.database, safe='')}{query}"

    # -- connections -------------------------------------------------------------------------

    async def upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection to the server."""
        if self._unix:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self._unix), 10)
        else:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self._host, self._port), 10)
        self._writers.add(writer)
        return reader, writer

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
        try:
            await self.serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)
            if task is not None:
                self._serving.discard(task)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def forget(self, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()
        self._writers.discard(writer)


async def _awaiting(make: Callable[[], Any]) -> Any:
    return await make()


class Packets:
    """Finds where MySQL packets start in a byte stream fed in chunks.

    A packet is a 3-byte little-endian length, a sequence number, then the payload. `feed(chunk)`
    returns, for each packet that starts in the chunk, (offset in the chunk, sequence number,
    the payload's first bytes, up to `head`); a header split across chunks is carried over.
    """

    def __init__(self, head: int = 16) -> None:
        self.head = head
        self._left = 0  # payload bytes of the current packet still to come
        self._partial = b""  # the start of a header split across chunks

    def feed(self, chunk: bytes) -> list[tuple[int, int, bytes]]:
        found = []
        i = 0
        while i < len(chunk):
            if self._left:
                step = min(self._left, len(chunk) - i)
                self._left -= step
                i += step
                continue
            need = 4 - len(self._partial)
            header = self._partial + chunk[i:i + need]
            start = i - len(self._partial)
            i += min(need, len(chunk) - i)
            if len(header) < 4:
                self._partial = header
                break
            self._partial = b""
            length = header[0] | header[1] << 8 | header[2] << 16
            found.append((max(start, 0), header[3], chunk[i:i + min(self.head, length)]))
            self._left = length
        return found
