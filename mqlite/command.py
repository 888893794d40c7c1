"""`command_handler(cmd)`: a Worker handler that runs a shell command per message (`mqlite consume --exec`).

The body goes to the command's stdin and the message's id, queue and attempt to its environment;
exit 0 acknowledges, any other status fails the message with the tail of the command's stderr.
"""

from __future__ import annotations

import codecs
import os
import subprocess
import sys
import threading
from collections import deque
from typing import Any

from .message import Message
from .worker import Handler, attempt_number


class CommandFailed(Exception):
    """The command run for a message exited non-zero. The message carries the tail of its stderr."""

    def __init__(self, returncode: int, stderr_tail: str) -> None:
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exited with status {returncode}"
        super().__init__(f"command {how}" + (f": {stderr_tail}" if stderr_tail else ""))
        self.returncode = returncode
        self.stderr_tail = stderr_tail


def command_handler(command: str, *, stderr_tail: int = 2000, stderr: Any = None) -> Handler:
    """A handler that runs `command` with `/bin/sh -c` for each message.

    The body is the command's stdin; `MQLITE_MESSAGE_ID`, `MQLITE_QUEUE` and `MQLITE_ATTEMPT`
    are added to its environment; its stdout is this process's. Its stderr is copied to
    `stderr` (default `sys.stderr`) as it comes, and its last `stderr_tail` bytes go into the
    `CommandFailed` raised when it exits non-zero.
    """

    def handle(message: Message) -> None:
        env = {
            **os.environ,
            "MQLITE_MESSAGE_ID": str(message.id),
            "MQLITE_QUEUE": message.queue,
            "MQLITE_ATTEMPT": str(attempt_number(message)),
        }
        proc = subprocess.Popen(
            command, shell=True, env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=None,
        )
        feeder = threading.Thread(target=_feed, args=(proc.stdin, message.body), daemon=True)
        feeder.start()
        tail = _copy_stderr(proc.stderr, stderr if stderr is not None else sys.stderr, stderr_tail)
        returncode = proc.wait()
        feeder.join()
        if returncode != 0:
            raise CommandFailed(returncode, tail)

    return handle


def _feed(pipe: Any, body: bytes) -> None:
    try:
        pipe.write(body)
    except (BrokenPipeError, OSError):
        pass  # the command did not read all of its stdin: its business
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _copy_stderr(pipe: Any, sink: Any, keep: int) -> str:
    """Copy `pipe` to `sink` until EOF; returns the last `keep` bytes as text."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    tail: deque[bytes] = deque()
    kept = 0
    fd = pipe.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        text = decoder.decode(chunk)
        if text:
            try:
                sink.write(text)
                sink.flush()
            except (OSError, ValueError):
                pass
        tail.append(chunk)
        kept += len(chunk)
        while kept - len(tail[0]) >= keep:
            kept -= len(tail.popleft())
    pipe.close()
    data = b"".join(tail)[-keep:] if keep > 0 else b""
    return data.decode("utf-8", "replace").strip()
