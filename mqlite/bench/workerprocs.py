"""Consumers as a user runs them: `mqlite worker` processes, started, awaited and stopped by the bench.

`WorkerProcesses` starts `processes` × `mqlite worker QUEUE… -H handler -c concurrency` on one
table, waits until each has registered itself (table `mqlite_workers`), and on exit stops them
with SIGTERM (they finish what they hold and acknowledge it), killing any that outlast the grace,
and collects the samples the `handlers.record` handler wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType

from ..queue import Queue
from .handlers import SAMPLES_ENV, read_samples

READY_TIMEOUT = 60.0  # seconds for every worker process to register
STOP_GRACE = 20.0  # seconds a stopped worker may take to finish and exit


class WorkerProcesses:
    def __init__(
        self, dsn: str, table: str, queues: Sequence[str], *, processes: int, concurrency: int, handler: str,
        idle_max: float = 0.05,
    ) -> None:
        self.dsn, self.table, self.queues = dsn, table, list(queues)
        self.processes, self.concurrency, self.handler, self.idle_max = processes, concurrency, handler, idle_max
        self._dir = tempfile.mkdtemp(prefix="mqlite-bench-")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.collected: list[tuple[float, float]] = []  # (push time, push -> handler), after stop
        self.cpu_seconds = 0.0  # CPU time of the worker processes, read just before they were stopped

    def sample_path(self, k: int) -> str:
        return os.path.join(self._dir, f"samples-{k}.bin")

    def _log(self, k: int) -> str:
        return os.path.join(self._dir, f"stderr-{k}.log")

    def _last_line(self, k: int) -> str:
        try:
            lines = open(self._log(k), errors="replace").read().strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else f"exit code {self.procs[k].returncode}"

    def __enter__(self) -> WorkerProcesses:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        with Queue(self.dsn, table=self.table, pool_size=1) as q:
            before = {w.id for w in q.workers()}
            for k in range(self.processes):
                env = dict(os.environ, **{SAMPLES_ENV: self.sample_path(k)})
                cmd = [sys.executable, "-m", "mqlite", "worker", *self.queues, "-H", self.handler,
                       "-c", str(self.concurrency), "--idle-max", str(self.idle_max), "--log-level", "warning",
                       "--dsn", self.dsn, "--table", self.table]
                with open(self._log(k), "wb") as log:  # a file, not a pipe: nobody drains a pipe meanwhile
                    self.procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                                       stdout=subprocess.DEVNULL, stderr=log))
            deadline = time.monotonic() + READY_TIMEOUT
            pids = {p.pid for p in self.procs}
            while True:
                up = {w.pid for w in q.workers() if w.id not in before} & pids
                if len(up) == len(pids):
                    return
                dead = [p for p in self.procs if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"mqlite worker exited early: {self._last_line(self.procs.index(dead[0]))}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(pids) - len(up)} of {len(pids)} worker processes not up in time")
                time.sleep(0.05)

    def stop(self) -> None:
        live = [p for p in self.procs if p.poll() is None]
        self.cpu_seconds = sum(_cpu(p.pid) for p in live)
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.collected = self.samples()
        shutil.rmtree(self._dir, ignore_errors=True)



    def samples(self) -> list[tuple[float, float]]:
        """Every (push time, push -> handler) pair the `record` handler has written so far."""
        return [pair for k in range(len(self.procs)) for pair in read_samples(self.sample_path(k))]

    def cpu(self) -> float:
        """CPU seconds the live worker processes have used so far."""
        return sum(_cpu(p.pid) for p in self.procs if p.poll() is None)


def _cpu(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
