"""Resumable long messages (checkpoint, cursor, interruption) and the live worker registry."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mqlite
from mqlite.cli import app
from mqlite.errors import Interrupted

from .conftest import rows
from .helpers import ROOT, read_line, wait_for

STEPS, EVERY = 1000, 50

# Walks STEPS steps, recording each in a side table, checkpointing every EVERY steps; resumes
# from the message's cursor.
HANDLER = f'''
import os, time, MySQLdb
from mqlite.config import parse_dsn

_log = None

def walk(message):
    global _log
    if _log is None:
        _log = MySQLdb.connect(autocommit=True, **parse_dsn(os.environ["MQLITE_DSN"]).connect_kwargs())
    start = int(message.cursor or 0)
    print("start", message.id, start, flush=True)
    cur = _log.cursor()
    for step in range(start, {STEPS}):
        cur.execute("INSERT INTO steps (step, pid) VALUES (%s, %s)", (step, os.getpid()))
        time.sleep(0.003)
        if (step + 1) % {EVERY} == 0:
            message.checkpoint(str(step + 1), progress=(step + 1) / {STEPS})
    print("done", message.id, flush=True)
'''


@pytest.fixture
def walker(tmp_path: Path, dsn: str, admin, q: mqlite.Queue):
    (tmp_path / "walker.py").write_text(HANDLER)
    admin.cursor().execute("CREATE TABLE steps (step INT NOT NULL, pid INT NOT NULL)")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{ROOT}", "MQLITE_DSN": dsn}

    def start(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "mqlite", "worker", "long", "--handler", "walker:walk", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        )

    return start


def steps_done(admin) -> Counter:
    return Counter(int(s) for (s,) in rows(admin, "SELECT step FROM steps"))


def finish_elsewhere(walker, admin, message_id: int) -> None:
    second = walker("--until-empty")
    line = read_line(second, timeout=60)
    assert line.startswith(f"start {message_id} ")
    assert read_line(second, timeout=60) == f"done {message_id}"
    assert second.wait(timeout=60) == 0


def test_sigterm_releases_at_the_next_checkpoint_and_the_next_worker_resumes(q, admin, walker) -> None:
    mid = q.push("long", b"walk 1000 steps")
    first = walker()
    assert read_line(first) == f"start {mid} 0"
    wait_for(lambda: sum(steps_done(admin).values()) >= 300, timeout=60, what="300 steps")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0  # released at its next checkpoint, not after 700 more steps
    (kept,) = q.peek("long")
    assert kept.owner == 0 and kept.attempts == 0  # released, not failed
    assert int(kept.cursor) % EVERY == 0 and 300 <= int(kept.cursor) < STEPS
    assert kept.progress == int(kept.cursor) / STEPS
    finish_elsewhere(walker, admin, mid)
    assert steps_done(admin) == Counter(range(STEPS))  # every step exactly once, none skipped
    assert q.size("long") == 0


def test_sigkill_resumes_from_the_last_checkpoint_without_skipping(q, admin, walker) -> None:
    mid = q.push("long", b"walk 1000 steps")
    first = walker()
    assert read_line(first) == f"start {mid} 0"
    wait_for(lambda: sum(steps_done(admin).values()) >= 420, timeout=60, what="420 steps")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed_at = max(steps_done(admin))
    finish_elsewhere(walker, admin, mid)  # recovery (dead owner) brings it back with its cursor
    done = steps_done(admin)
    assert set(done) == set(range(STEPS))  # none skipped
    last_checkpoint = killed_at - (killed_at + 1) % EVERY + 1 if (killed_at + 1) % EVERY else killed_at + 1
    repeated = {s for s, n in done.items() if n > 1}
    # Only the steps after the last checkpoint before the kill ran twice.
    assert repeated <= set(range(last_checkpoint - EVERY, killed_at + 1))
    assert all(n <= 2 for n in done.values())


def test_checkpoint_saves_cursor_and_progress_and_survives_a_failure(q: mqlite.Queue) -> None:
    q.push("long", b"x")
    with pytest.raises(RuntimeError):
        with q.claim("long") as m:
            assert m.cursor is None
            m.checkpoint("page=7", progress=0.35)
            (busy,) = q.in_progress("long")
            assert (busy.cursor, busy.progress) == ("page=7", 0.35)
            raise RuntimeError("network down")
    (kept,) = q.peek("long")
    assert (kept.cursor, kept.progress, kept.attempts) == ("page=7", 0.35, 1)


def test_checkpoint_raises_interrupted_once_the_worker_is_stopping(q: mqlite.Queue) -> None:
    q.push("long", b"x")
    stop = threading.Event()
    with pytest.raises(Interrupted):
        with q.claim("long", interrupt=stop) as m:
            m.checkpoint("1")
            stop.set()
            m.checkpoint("2")
    (kept,) = q.peek("long")
    assert kept.owner == 0 and kept.attempts == 0 and kept.cursor == "2"


def test_workers_register_heartbeat_and_leave(q: mqlite.Queue, dsn: str, admin) -> None:
    q.push("jobs", b"slow")
    inside, go = threading.Event(), threading.Event()

    def handle(m: mqlite.Message) -> None:
        inside.set()
        assert go.wait(30)

    worker = mqlite.Worker(q, ["jobs", "other"], handle, heartbeat_every=0.2, handle_signals=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert inside.wait(30)
    (me,) = wait_for(lambda: [w for w in q.workers() if w.current_messages], what="a heartbeat with work in hand")
    assert me.queues == ["jobs", "other"] and me.current_messages == [q.peek("jobs")[0].id]
    # A worker that stopped heartbeating long ago is pruned by the live one.
    admin.cursor().execute(
        "INSERT INTO mqlite_workers (table_name, host, pid, queues, heartbeat_at) "
        "VALUES ('mqlite_messages', 'gone', 1, 'jobs', NOW(6) - INTERVAL 1 HOUR)"
    )
    wait_for(lambda: [w.host for w in q.workers()] == [me.host], what="the silent worker to be pruned")
    listed = json.loads(CliRunner().invoke(app, ["workers", "--json", "--dsn", dsn]).output)
    assert [w["pid"] for w in listed] == [me.pid]
    go.set()
    wait_for(lambda: [w.processed for w in q.workers()] == [1], what="the count in a heartbeat")
    worker.stop()
    thread.join(timeout=30)
    assert q.workers() == []  # a clean stop unregisters
