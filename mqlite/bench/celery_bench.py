"""Celery task throughput on mqlite vs Celery on kombu's SQLAlchemy transport and on Redis, same run.

    python -m mqlite.bench.celery_bench [--tasks 2000] [--rounds 2] [--dsn mysql://…] [--redis-url URL]

Without --dsn (or MQLITE_DSN) a throwaway MariaDB is started. Each transport gets a fresh
database on that server; per round and transport:

1. publish: `task.delay(i)` for every task from `--producers` threads of this process (no worker
   running), timed;
2. consume: a real `celery worker` (prefork, `--concurrency`, the defaults otherwise: early acks,
   prefetch multiplier 4) drains the queue; each task appends `time.time()` to a file, and the
   rate is tasks per second between the first and the last completion (worker start-up excluded).

Both transports run the same worker command; the SQLAlchemy transport runs with its default
`polling_interval` (1 s) and, as a second baseline, with 0.01 s (its best case: it sleeps a
whole interval whenever the prefetch window is full). The ratio is taken against the better
SQLAlchemy result of the round. Celery on its Redis transport (the broker most Celery users run)
runs in the same rounds when a Redis answers at --redis-url (default: this machine's, in the
first database number holding no keys; only the keys Celery made there are deleted afterwards,
never FLUSHALL). This module is also the worker's app module
(`-A mqlite.bench.celery_bench`). Needs the celery extra (and SQLAlchemy for the baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The directory holding the mqlite package this process runs: the worker imports the same code.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


# -- the app: the bench process sends with it, the worker imports this module -----------------


def make_app(kind: str, dsn: str, polling_interval: float | None = None, extra: dict | None = None):
    from celery import Celery

    from ..config import parse_dsn

    if kind == "mqlite":
        app = Celery("bench", broker=dsn, broker_transport="mqlite.contrib.kombu:Transport")
    elif kind == "redis":
        app = Celery("bench", broker=dsn)  # a redis:// URL
    else:
        s = parse_dsn(dsn)
        host, port = s.hosts[0]
        auth = s.user + (f":{s.password}" if s.password else "")
        # kombu hands every transport option of this transport to create_engine(), so its polling
        # interval can only be changed on the class (registered below as `sqlafast`).
        scheme = "sqla" if polling_interval is None else "sqlafast"
        app = Celery("bench", broker=f"{scheme}+mysql+mysqldb://{auth}@{host}:{port}/{s.database}")
    options = {"polling_interval": polling_interval} if kind == "mqlite" and polling_interval is not None else {}
    if kind == "mqlite":
        options.update(extra or {})
    app.conf.update(broker_transport_options=options, worker_hijack_root_logger=False,
                    broker_connection_retry_on_startup=True)
    out = os.environ.get("BENCH_OUT", os.devnull)
    fds: dict[int, int] = {}

    @app.task(name="bench.tick", shared=False)
    def tick(i: int) -> None:
        fd = fds.get(os.getpid())
        if fd is None:
            fd = fds[os.getpid()] = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{time.time():.6f}\n".encode())

    return app


try:
    from kombu.transport import TRANSPORT_ALIASES
    from kombu.transport.sqlalchemy import Transport as _Sqla

    class FastPollingSqla(_Sqla):
        polling_interval = 0.01

    # This module's name as the worker imports it (`__main__` in the process that runs the bench).
    TRANSPORT_ALIASES["sqlafast"] = f"{__name__}:FastPollingSqla"
except ImportError:  # SQLAlchemy missing: only the mqlite side can run
    pass


if os.environ.get("BENCH_KIND"):
    _pi = os.environ.get("BENCH_POLLING")
    app = make_app(os.environ["BENCH_KIND"], os.environ["BENCH_DSN"], float(_pi) if _pi else None,
                   json.loads(os.environ.get("BENCH_MQLITE_OPTIONS") or "{}"))


# -- the benchmark ---------------------------------------------------------------------------------


def publish(app, tasks: int, producers: int) -> float:
    tick = app.tasks["bench.tick"]
    tick.delay(-1)  # connect and declare before timing
    per = [tasks // producers + (1 if i < tasks % producers else 0) for i in range(producers)]
    start = threading.Barrier(producers + 1)

    def run(n: int) -> None:
        start.wait()
        for i in range(n):
            tick.delay(i)

    threads = [threading.Thread(target=run, args=(n,)) for n in per]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return tasks / (time.perf_counter() - began)


def consume(kind: str, dsn: str, polling: float | None, tasks: int, concurrency: int, timeout: float,
            pool: str = "prefork") -> float:
    out = Path(tempfile.mkstemp(prefix="celery-bench-", suffix=".txt")[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p), "BENCH_KIND": kind,
           "BENCH_DSN": dsn, "BENCH_OUT": str(out), "BENCH_POLLING": "" if polling is None else str(polling)}
    log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mqlite.bench.celery_bench", "worker", "-P", pool,
         "-c", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + timeout
        want = tasks + 1  # the warm-up task too
        while True:
            stamps = out.read_text().split()
            if len(stamps) >= want:
                break
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: {len(stamps)}/{want} tasks ran; log: "
                                   f"{out.with_suffix('.log').read_text()[-2000:]}")
            time.sleep(0.2)
        times = sorted(float(x) for x in stamps)
        return (len(times) - 1) / (times[-1] - times[0])
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        out.unlink(missing_ok=True)
        out.with_suffix(".log").unlink(missing_ok=True)


REDIS_KEYS = ("celery", "_kombu.*", "unacked*")  # what Celery leaves in the broker's database


def free_redis_db(url: str) -> str | None:
    """`url` with the first database number (1-15) holding no keys, or None without a Redis there."""
    try:
        import redis
    except ImportError:
        return None
    base = url.rstrip("/")
    try:
        client = redis.Redis.from_url(base, socket_timeout=2)
        used = client.info("keyspace")
    except Exception:  # noqa: BLE001 - no Redis: its rows are skipped
        return None
    for n in range(1, 16):
        if f"db{n}" not in used:
            return f"{base}/{n}"
    return None


def clean_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    for pattern in REDIS_KEYS:
        for key in client.scan_iter(match=pattern):
            client.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mqlite.bench.celery_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=None, help="server to use (default: MQLITE_DSN, else a throwaway one)")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--producers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pool", default="prefork", help="the worker's pool (prefork, threads, solo)")
    parser.add_argument("--only", default=None, help="run only this transport (mqlite or sqla)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an mqlite transport option, e.g. claim_batch=8 (numbers are parsed as JSON)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per drain")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379",
                        help="Redis for the Celery-on-Redis rows (a free database number is picked); 'none' to skip")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from ..queue import Queue
    from ..testing import dsn_or_throwaway, scratch_database

    extra = {}
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except ValueError:
            extra[key] = value
    os.environ["BENCH_MQLITE_OPTIONS"] = json.dumps(extra)

    variants: list[tuple[str, float | None]] = [("mqlite", None), ("sqla", None), ("sqla", 0.01)]
    redis_url = None if args.redis_url == "none" else free_redis_db(args.redis_url)
    if redis_url is not None:
        variants.append(("redis", None))
    if args.only:
        variants = [v for v in variants if v[0] == args.only]
    results: list[dict] = []
    with dsn_or_throwaway(args.dsn) as server_dsn:
        for rnd in range(args.rounds):
            # Alternate the order: load from elsewhere on a shared machine drifts during a round.
            order = list(enumerate(variants))
            if rnd % 2:
                order.reverse()
            for vi, (kind, polling) in order:
                if kind == "redis":
                    assert redis_url is not None
                    try:
                        app = make_app(kind, redis_url)
                        push_rate = publish(app, args.tasks, args.producers)
                        app.close()
                        drain_rate = consume(kind, redis_url, None, args.tasks, args.concurrency, args.timeout,
                                             args.pool)
                    finally:
                        clean_redis(redis_url)
                    results.append({"round": rnd + 1, "transport": "redis", "publish_per_s": round(push_rate),
                                    "consume_per_s": round(drain_rate)})
                    print(f"round {rnd + 1}  {'redis':38s} publish {push_rate:8,.0f}/s   consume {drain_rate:8,.0f}/s",
                          file=sys.stderr if args.json else sys.stdout, flush=True)
                    continue
                # A new name each time: kombu caches SQLAlchemy engines (and creates tables) per URL.
                with scratch_database(server_dsn, f"mqlite_celery_bench_{rnd}_{vi}") as dsn:
                    if kind == "mqlite":
                        with Queue(dsn) as q:
                            q.apply_schema()
                    app = make_app(kind, dsn, polling, extra)
                    push_rate = publish(app, args.tasks, args.producers)
                    app.pool.force_close_all()
                    drain_rate = consume(kind, dsn, polling, args.tasks, args.concurrency, args.timeout, args.pool)
                label = kind if polling is None else f"{kind} (polling_interval={polling})"
                row = {"round": rnd + 1, "transport": label, "publish_per_s": round(push_rate),
                       "consume_per_s": round(drain_rate)}
                results.append(row)
                print(f"round {rnd + 1}  {label:38s} publish {push_rate:8,.0f}/s   consume {drain_rate:8,.0f}/s",
                      file=sys.stderr if args.json else sys.stdout, flush=True)

    def median(transport: str, key: str) -> float:
        return statistics.median(r[key] for r in results if r["transport"] == transport)

    def per_round_ratios(key: str) -> list[float]:
        ratios = []
        for rnd in sorted({r["round"] for r in results}):
            mine = [r[key] for r in results if r["round"] == rnd and r["transport"] == "mqlite"]
            theirs = [r[key] for r in results if r["round"] == rnd and r["transport"].startswith("sqla")]
            if mine and theirs:
                ratios.append(round(mine[0] / max(theirs), 2))
        return ratios

    def redis_ratios(key: str) -> list[float]:
        ratios = []
        for rnd in sorted({r["round"] for r in results}):
            mine = [r[key] for r in results if r["round"] == rnd and r["transport"] == "mqlite"]
            theirs = [r[key] for r in results if r["round"] == rnd and r["transport"] == "redis"]
            if mine and theirs:
                ratios.append(round(mine[0] / theirs[0], 2))
        return ratios

    summary = {}
    sqla_labels = sorted({r["transport"] for r in results if r["transport"].startswith("sqla")})
    for key in ("publish_per_s", "consume_per_s"):
        ratios = per_round_ratios(key)
        summary[key] = {"mqlite": median("mqlite", key) if "mqlite" in {r["transport"] for r in results} else None,
                        "sqla_best": max((median(lbl, key) for lbl in sqla_labels), default=None),
                        "ratio_per_round": ratios,
                        "ratio": statistics.median(ratios) if ratios else None}
        vs_redis = redis_ratios(key)
        summary[key].update({
            "redis": median("redis", key) if vs_redis else None, "redis_ratio_per_round": vs_redis,
            "redis_ratio": statistics.median(vs_redis) if vs_redis else None,
        })
    report = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        "tasks": args.tasks, "rounds": args.rounds, "producers": args.producers,
        "concurrency": args.concurrency, "pool": args.pool, "mqlite_options": extra,
        "redis_url": redis_url, "results": results,
        "median": summary,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, s in summary.items():
            if s["ratio"] is None:
                continue
            print(f"median {key:14s} mqlite {s['mqlite']:8,.0f}/s   sqla (best) {s['sqla_best']:8,.0f}/s   "
                  f"ratio {s['ratio']:.1f}x (per round, against that round's better sqla: {s['ratio_per_round']})")
            if s["redis_ratio"] is not None:
                print(f"median {key:14s} redis  {s['redis']:8,.0f}/s   mqlite ÷ redis {s['redis_ratio']:.2f}x "
                      f"(per round: {s['redis_ratio_per_round']})")
        print(report["machine"])


if __name__ == "__main__":
    main()
