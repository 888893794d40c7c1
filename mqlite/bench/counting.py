"""A TCP relay that counts the statements one process sends to MySQL (for `--scenario wakeup`).

The server's `Questions` is global: on a shared server it counts everyone. A process connected
through this relay has its commands counted alone: in the client/server protocol every command
opens with a packet whose sequence id is 0 (the login's packets have ids 1, 2, ...). A TLS
session cannot be read: `commands` is then None.
"""

from __future__ import annotations

import socket
import threading


class CountingRelay:
    """Listens on 127.0.0.1:`port`, forwards to (host, port); `commands` counts client commands."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._count = 0
        self._unreadable = False
        self._lock = threading.Lock()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="mqlite-bench-relay", daemon=True).start()

    @property
    def commands(self) -> int | None:
        with self._lock:
            return None if self._unreadable else self._count

    def close(self) -> None:
        self._closed = True
        for s in [self._listener, *self._sockets]:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._target)
            except OSError:
                return
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        pending = b""
        first = True
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if not count:
                    continue
                pending += data
                while len(pending) >= 4:
                    length = int.from_bytes(pending[:3], "little")
                    if first and length == 32 and pending[3] == 1:  # an SSL request: TLS from here on
                        with self._lock:
                            self._unreadable = True
                    first = False
                    if len(pending) < 4 + length:
                        break
                    if pending[3] == 0:
                        with self._lock:
                            self._count += 1
                    pending = pending[4 + length:]
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
