"""`mqlite web` as a process, for tests and benchmarks of the HTTP API (needs the web extra).

    proc = start_web(dsn, port)          # returns once it answers GET /stats
    ...                                  # talk to http://127.0.0.1:{port}/
    printed = stop_web(proc)             # SIGTERM, wait; everything it printed
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from .server import ServerError, free_port

__all__ = ["free_port", "output", "start_web", "stop_web"]

# The directory holding the mqlite package this process runs: the child runs the same code.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_LOGS: dict[int, IO[str]] = {}


def start_web(
    dsn: str, port: int, *extra: str, env: dict[str, str] | None = None, timeout: float = 30.0
) -> subprocess.Popen[str]:
    """`mqlite web --port PORT --dsn DSN EXTRA…` as a process; returns once it answers /stats.

    Its output goes to a temporary file (a pipe nobody reads would fill up and stall the server);
    `stop_web` ends it and returns that output. Raises ServerError when it exits or does not answer
    within `timeout` seconds (with what it printed)."""
    log = tempfile.TemporaryFile(mode="w+", prefix="mqlite-web-")
    path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqlite", "web", "--port", str(port), "--dsn", dsn, *extra],
        stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )
    _LOGS[proc.pid] = log
    deadline = time.monotonic() + timeout
    while not _answers(port):
        if proc.poll() is not None:
            raise ServerError(f"mqlite web exited {proc.returncode}: {output(proc)}")
        if time.monotonic() > deadline:
            stop_web(proc)
            raise ServerError(f"mqlite web did not answer on port {port} within {timeout:g}s")
        time.sleep(0.02)
    return proc


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/stats")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


def output(proc: subprocess.Popen[str]) -> str:
    """Everything `proc` (started by `start_web`) has printed so far."""
    log = _LOGS[proc.pid]
    log.flush()
    log.seek(0)
    return log.read()


def stop_web(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """SIGTERM, wait for the exit; returns everything the process printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    text = output(proc)
    _LOGS.pop(proc.pid).close()
    return text
