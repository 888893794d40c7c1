"""`mqlite bench --scenario wakeup`: push → handler latency with an idle `mqlite worker` in another
process, and what an idle worker costs the server in statements a second.

Each row gets a fresh table and one `mqlite worker` subprocess whose handler (`record`) appends
the push time carried in the body and its own start time to a file. Messages are pushed one at
a time, `gap_min`..`gap_max` seconds apart (random, seeded), so the worker is idle at each push.
Then, nothing pushed, the statements the idle worker sends over `idle_seconds`, counted by a
relay between it and the server (`counting.py`), and the server's global `Questions` (on a
shared server, other clients count too).
Rows: `mqlite` (pushes ring the worker's doorbell) and `no-ring` (a pusher with `wake=False`:
the worker finds messages by polling alone, as before the doorbell), alternated `rounds` times.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import sql
from ..config import parse_dsn
from ..message import Message
from ..queue import Queue
from . import drivers
from .counting import CountingRelay

LOG_ENV = "MQLITE_BENCH_WAKE_LOG"
QUEUE = "wake"
STRATEGIES = ("mqlite", "no-ring")


@dataclass(frozen=True)
class WakeOptions:
    messages: int = 200
    gap_min: float = 0.05
    gap_max: float = 0.3
    idle_seconds: float = 10.0
    idle_max: float = 1.0  # the worker's --idle-max: its own polling backs off to this
    rounds: int = 1
    seed: int = 1


@dataclass
class WakeRow:
    scenario: str
    strategy: str
    messages: int
    received: int
    duplicates: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    idle_statements_per_s: float | None  # the worker's own, through the relay (None: unreadable, TLS)
    server_questions_per_s: float | None  # the whole server's
    idle_seconds: float
    error: str | None = None
    load_avg: tuple[float, float] | None = None  # the machine's 1-minute load at the row's start and end
    latencies_ms: list[float] = field(default_factory=list, repr=False)


def record(message: Message) -> None:
    """The worker's handler: `<body> <now>` appended to the file named by MQLITE_BENCH_WAKE_LOG."""
    now = time.time()
    with open(os.environ[LOG_ENV], "a", encoding="ascii") as out:
        out.write(f"{message.body.decode('ascii')} {now:.6f}\n")


def run(dsn: str, opts: WakeOptions) -> list[WakeRow]:
    """The rows of one wakeup run: each strategy `rounds` times, alternated."""
    rows: list[WakeRow] = []
    rng = random.Random(opts.seed)
    for _ in range(opts.rounds):
        for strategy in STRATEGIES:
            rows.append(_row(dsn, opts, strategy, rng))
    return rows


def _row(dsn: str, opts: WakeOptions, strategy: str, rng: random.Random) -> WakeRow:
    table = f"mqb_wake_{uuid.uuid4().hex[:10]}"
    load_at_start = os.getloadavg()[0]
    with Queue(dsn, table=table, wake=strategy == "mqlite", pool_size=2) as q, \
            tempfile.TemporaryDirectory(prefix="mqlite-wake-") as tmp:
        q.apply_schema()
        log = Path(tmp, "received")
        log.touch()
        worker = _start_worker(dsn, table, log, opts.idle_max)
        try:
            row = _measure(q, log, worker, opts, strategy, rng)
        finally:
            _stop(worker)
        # A second worker, connected through a counting relay (which would slow the first one's
        # statements down), idle on the same queue: the statements it sends.
        settings = parse_dsn(dsn)
        relay = CountingRelay(*settings.hosts[0])
        via_relay = dataclasses.replace(settings, hosts=(("127.0.0.1", relay.port),), unix_socket=None).url()
        worker = _start_worker(via_relay, table, log, opts.idle_max)
        try:
            row.idle_statements_per_s, row.server_questions_per_s = _idle_rates(q, log, worker, relay, opts)
        finally:
            _stop(worker)
            relay.close()
    drivers.drop_table(dsn, table)
    row.load_avg = (round(load_at_start, 2), round(os.getloadavg()[0], 2))
    return row


def _measure(q: Queue, log: Path, worker: subprocess.Popen[bytes], opts: WakeOptions, strategy: str,
             rng: random.Random) -> WakeRow:
    q.push(QUEUE, f"w {time.time():.6f}".encode())  # warm-up: the worker is up and has found the queue empty
    if not _wait_lines(log, 1, 60.0, worker):
        return _failed(strategy, opts, "the worker did not start within 60 s")
    time.sleep(opts.idle_max + 0.5)  # let its polling back off to the longest pause, as an idle worker's is
    for n in range(opts.messages):
        q.push(QUEUE, f"{n} {time.time():.6f}".encode())
        time.sleep(rng.uniform(opts.gap_min, opts.gap_max))
    _wait_lines(log, opts.messages + 1, 30.0, worker)
    latencies, seen, dups = _read(log)
    return WakeRow(
        "wakeup", strategy, opts.messages, seen, dups, *_percentiles(latencies),
        idle_statements_per_s=None, server_questions_per_s=None, idle_seconds=opts.idle_seconds,
        error=None if seen == opts.messages and not dups else f"received {seen} of {opts.messages}, {dups} twice",
        latencies_ms=latencies,
    )


def _idle_rates(q: Queue, log: Path, worker: subprocess.Popen[bytes], relay: CountingRelay,
                opts: WakeOptions) -> tuple[float | None, float | None]:
    """(statements/s the idle worker sent, Questions/s of the whole server) over `idle_seconds`."""
    lines = log.read_text(encoding="ascii").count("\n")
    q.push(QUEUE, f"w {time.time():.6f}".encode())
    if not _wait_lines(log, lines + 1, 60.0, worker):
        return None, None
    time.sleep(opts.idle_max + 0.5)  # its polling has backed off; the doorbell listens
    before, mine = _questions(q), relay.commands
    time.sleep(opts.idle_seconds)
    after, mine_after = _questions(q), relay.commands
    # Our own two SHOW STATUS count once (each counts itself before or after its read).
    server = round((after - before - 1) / opts.idle_seconds, 2)
    if mine is None or mine_after is None:
        return None, server
    return round((mine_after - mine) / opts.idle_seconds, 2), server


def _percentiles(values: list[float]) -> tuple[float | None, float | None, float | None, float | None]:
    if not values:
        return None, None, None, None
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return round(cut[49], 2), round(cut[89], 2), round(cut[98], 2), round(ordered[-1], 2)


def _read(log: Path) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    ids: set[str] = set()
    dups = 0
    for line in log.read_text(encoding="ascii").splitlines():
        ident, sent, got = line.split()
        if ident == "w":
            continue
        if ident in ids:
            dups += 1
            continue
        ids.add(ident)
        latencies.append((float(got) - float(sent)) * 1000)
    return latencies, len(ids), dups


def _wait_lines(log: Path, lines: int, timeout: float, worker: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        if log.read_text(encoding="ascii").count("\n") >= lines:
            return True
        time.sleep(0.05)
    return False


def _questions(q: Queue) -> int:
    rows = q._fetch(sql.SERVER_QUESTIONS, ())
    return int(rows[0][1])


def _start_worker(dsn: str, table: str, log: Path, idle_max: float) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **{LOG_ENV: str(log), "MQLITE_DSN": dsn})
    cmd = [sys.executable, "-m", "mqlite", "worker", QUEUE, "--handler", f"{__name__}:record", "--table", table,
           "--idle-max", str(idle_max), "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _failed(strategy: str, opts: WakeOptions, why: str) -> WakeRow:
    return WakeRow("wakeup", strategy, opts.messages, 0, 0, None, None, None, None, None, None, opts.idle_seconds,
                   why)


def as_dict(rows: list[WakeRow], opts: WakeOptions, dsn_redacted: str) -> dict[str, Any]:
    """The --json object: config and rows (latencies left out)."""
    results = []
    for r in rows:
        d = asdict(r)
        d.pop("latencies_ms")
        results.append(d)
    return {"config": {**asdict(opts), "dsn": dsn_redacted, "machine": {"cpus": os.cpu_count(),
                                                                          "platform": sys.platform}},
            "results": results}
