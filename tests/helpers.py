"""Test helpers: subprocesses that use mqlite, and waiting on a condition with a deadline."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python -c code args…` with mqlite importable; stdout/stdin are pipes."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
    )


def read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The next line the process prints, waiting at most `timeout` seconds.

    Reads the pipe a byte at a time: a buffered `readline()` may pull several lines into Python's
    buffer at once, and a `select()` on the pipe then waits for output that has already arrived.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = bytearray()
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            proc.kill()
            stderr = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"no output within {timeout}s (partial line {bytes(line)!r}); stderr: {stderr}")
        byte = os.read(fd, 1)
        if not byte:
            proc.wait(timeout=10)
            stderr = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"process exited ({proc.returncode}): {stderr}")
        if byte == b"\n":
            return line.decode("utf-8", errors="replace").strip()
        line += byte


def wait_for(condition: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
