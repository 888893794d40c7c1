"""Where a client's microseconds go: cProfile of push, pop and claim + ack, one thread, one table.

    python -m mqlite.bench.profile [--messages 3000] [--top 12] [--dsn mysql://…]

For each operation, `messages` calls in one thread (so every call is one round of the protocol,
no coalescing), profiled; prints wall and client CPU µs per message, the server's CPU µs per
message (when the server runs on this machine) and the functions with the most own time.
The table is created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import uuid
from collections.abc import Callable

from ..queue import Queue
from ..testing import dsn_or_throwaway
from . import drivers
from .suite import ServerProbe


def _ops(q: Queue, queue: str, data: bytes) -> dict[str, Callable[[], object]]:
    def claim_ack() -> None:
        with q.claim(queue) as m:
            assert m is not None

    return {"push": lambda: q.push(queue, data), "pop": lambda: q.pop(queue), "claim + ack": claim_ack}


def profile(dsn: str, messages: int, top: int) -> str:
    table, queue = f"mqb_prof_{uuid.uuid4().hex[:6]}", "prof"
    drivers.create_table(dsn, table)
    probe = ServerProbe(dsn)
    out = io.StringIO()
    try:
        q = Queue(dsn, table=table, pool_size=4)
        try:
            data = drivers.body(100)
            for name, op in _ops(q, queue, data).items():
                if name != "push":
                    drivers.seed(dsn, table, queue, messages + 1, 100)
                op()  # warm: sessions and statements ready
                prof = cProfile.Profile()
                cpu0, _ = probe.snapshot()
                wall0, own0 = time.perf_counter(), time.process_time()
                prof.enable()
                for _ in range(messages):
                    op()
                prof.disable()
                wall, own = time.perf_counter() - wall0, time.process_time() - own0
                cpu1, _ = probe.snapshot()
                server = "n/a" if cpu0 is None or cpu1 is None else f"{(cpu1 - cpu0) / messages * 1e6:.0f}"
                out.write(f"\n== {name}: {wall / messages * 1e6:.0f} µs/msg wall, {own / messages * 1e6:.0f} "
                          f"client CPU (profiled), {server} server CPU ==\n")
                stats = pstats.Stats(prof, stream=out)
                stats.sort_stats("tottime").print_stats(top)
                q.purge(queue)
        finally:
            q.close()
    finally:
        probe.close()
        drivers.drop_table(dsn, table)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m mqlite.bench.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", default=None, help="server (default: MQLITE_DSN, else a throwaway one)")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--top", type=int, default=12, help="functions listed per operation")
    args = ap.parse_args()
    with dsn_or_throwaway(args.dsn) as dsn:
        print(profile(dsn, args.messages, args.top))


if __name__ == "__main__":
    main()
