"""Helpers for the web tests: a free port, and `mqlite web` started as a process."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys

from .helpers import ROOT, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_web(dsn: str, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`mqlite web --port PORT --dsn DSN EXTRA…` as a process; returns once it answers /stats.

    stdout and stderr go to one pipe: stop the process with `send_signal` + `communicate`.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqlite", "web", "--port", str(port), "--dsn", dsn, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )

    def answers() -> bool:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"mqlite web exited {proc.returncode}: {out}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/stats")
            return conn.getresponse().status == 200
        except OSError:
            return False

    wait_for(answers, timeout=30, what="mqlite web to answer")
    return proc
