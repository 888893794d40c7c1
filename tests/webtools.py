"""Helpers for the web tests: a free port, and `mqlite web` started as a process."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile

from .helpers import ROOT, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_web(dsn: str, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`mqlite web --port PORT --dsn DSN EXTRA…` as a process; returns once it answers /stats.

    Its output goes to a temporary file (a pipe nobody reads would fill up and stall the server);
    `stop_web` ends it and returns that output.
    """
    log = tempfile.TemporaryFile(mode="w+", prefix="mqlite-web-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqlite", "web", "--port", str(port), "--dsn", dsn, *extra],
        stdout=log, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    proc.log = log  # type: ignore[attr-defined]

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mqlite web exited {proc.returncode}: {output(proc)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/stats")
            return conn.getresponse().status == 200
        except OSError:
            return False

    wait_for(answers, timeout=30, what="mqlite web to answer")
    return proc


def output(proc: subprocess.Popen[str]) -> str:
    log = proc.log  # type: ignore[attr-defined]
    log.flush()
    log.seek(0)
    return log.read()


def stop_web(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM, wait for the exit; returns everything the process printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    text = output(proc)
    proc.log.close()  # type: ignore[attr-defined]
    return text
