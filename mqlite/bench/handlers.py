"""Handlers the worker-process scenarios give `mqlite worker -H`: a no-op, and one recording latency.

`record` notes, for each message, when it was pushed (the stamp `drivers.stamped` put in its body)
and how long it took to reach the handler, and appends the pairs as doubles to the file named by
MQLITE_BENCH_SAMPLES every `FLUSH_EVERY` seconds (a thread of its own) and when the process exits,
so the bench can judge one paced run while the same workers go on to the next.
"""

from __future__ import annotations

import atexit
import os
import struct
import threading
import time
from array import array
from typing import Any

SAMPLES_ENV = "MQLITE_BENCH_SAMPLES"
FLUSH_EVERY = 0.1
_pairs = array("d")  # push time (monotonic seconds), push -> handler seconds, ... not yet written
_lock = threading.Lock()
_flusher: list[threading.Thread] = []


def noop(message: Any) -> None:
    """Do nothing: the message is acknowledged when this returns."""


def record(message: Any) -> None:
    """Note the message's push time and its age now."""
    pushed = struct.unpack_from("<q", message.body)[0]
    now = time.monotonic_ns()
    with _lock:
        _pairs.extend((pushed / 1e9, (now - pushed) / 1e9))
    if not _flusher:
        with _lock:
            if not _flusher:
                _flusher.append(threading.Thread(target=_flush_now_and_then, daemon=True))
                _flusher[0].start()


def _flush_now_and_then() -> None:
    while True:
        time.sleep(FLUSH_EVERY)
        _flush()


def _flush() -> None:
    global _pairs
    path = os.environ.get(SAMPLES_ENV)
    with _lock:
        pending, _pairs = _pairs, array("d")
    if path and pending:
        with open(path, "ab") as out:
            pending.tofile(out)


atexit.register(_flush)


def read_samples(path: str) -> list[tuple[float, float]]:
    """The (push time, latency) pairs one worker process wrote; empty if it wrote none."""
    values = array("d")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    values.frombytes(data[: len(data) // 16 * 16])  # whole pairs only: a flush may be under way
    return list(zip(values[0::2], values[1::2], strict=True))
