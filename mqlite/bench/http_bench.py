"""Push then pop N messages at C concurrent clients, through the library and over HTTP, in one run.

    python -m mqlite.bench.http_bench [--clients 16] [--messages 20000] [--body-size 100] [--json]

MQLITE_DSN names the server (else a throwaway one is started); a scratch database is created and
dropped. Needs the web extra. The library side is C threads over one `Queue`; the HTTP side is C
threads, each with one keep-alive `http.client` connection, against `mqlite web` started as a
process (one uvicorn worker). Both clients run in this process, so on a small machine they compete
with the server for CPU.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections.abc import Callable

from ..queue import Queue
from ..testing import dsn_or_throwaway, free_port, scratch_database
from ..testing.web import start_web, stop_web

DATABASE = "mqlite_http_bench"


def run(clients: int, total: int, make: Callable[[], Callable[[], bool]]) -> tuple[float, list[float]]:
    """`clients` threads, each running its own `op` until `total` ops succeeded; (seconds, latencies)."""
    left = [total]
    lock = threading.Lock()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)

    def worker(mine: list[float]) -> None:
        op = make()
        start.wait()
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            t0 = time.perf_counter()
            ok = op()
            mine.append(time.perf_counter() - t0)
            if not ok:
                with lock:
                    left[0] += 1  # an empty pop (not there yet): try again

    threads = [threading.Thread(target=worker, args=(latencies[i],)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - began, [x for xs in latencies for x in xs]


def summary(side: str, scenario: str, clients: int, total: int, seconds: float, lat: list[float]) -> dict:
    lat.sort()
    pick = lambda f: lat[min(len(lat) - 1, int(f * (len(lat) - 1)))] * 1000  # noqa: E731
    return {"side": side, "scenario": scenario, "clients": clients, "messages": total,
            "seconds": round(seconds, 2), "rate": round(total / seconds), "p50_ms": round(pick(0.5), 2),
            "p99_ms": round(pick(0.99), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mqlite.bench.http_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--body-size", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    body = b"x" * args.body_size
    results = []
    with dsn_or_throwaway(None) as server, scratch_database(server, DATABASE) as dsn:
        q = Queue(dsn, pool_size=args.clients + 4)
        q.apply_schema()

        def library_push() -> Callable[[], bool]:
            return lambda: bool(q.push("bench-lib", body))

        def library_pop() -> Callable[[], bool]:
            return lambda: q.pop("bench-lib") is not None

        for scenario, make in (("push", library_push), ("pop", library_pop)):
            seconds, lat = run(args.clients, args.messages, make)
            results.append(summary("library", scenario, args.clients, args.messages, seconds, lat))

        port = free_port()
        web = start_web(dsn, port, "--log-level", "warning")  # no access log line per request

        def http_op(method: str, expect: int) -> Callable[[], Callable[[], bool]]:
            def make() -> Callable[[], bool]:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

                def op() -> bool:
                    conn.request(method, "/q/bench-http", body=body if method == "POST" else None)
                    r = conn.getresponse()
                    r.read()
                    return r.status == expect

                return op

            return make

        try:
            for scenario, make in (("push", http_op("POST", 201)), ("pop", http_op("GET", 200))):
                seconds, lat = run(args.clients, args.messages, make)
                results.append(summary("http", scenario, args.clients, args.messages, seconds, lat))
        finally:
            stop_web(web)
            q.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'side':8} {'scenario':8} {'clients':>7} {'messages':>8} {'seconds':>8} {'msg/s':>8} "
          f"{'p50 ms':>7} {'p99 ms':>7}")
    for r in results:
        print(f"{r['side']:8} {r['scenario']:8} {r['clients']:>7} {r['messages']:>8} {r['seconds']:>8} "
              f"{r['rate']:>8} {r['p50_ms']:>7} {r['p99_ms']:>7}")


if __name__ == "__main__":
    main()
