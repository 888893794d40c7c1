"""`mqlite.Worker` in-process, and `mqlite worker` as a real process stopped by signals."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

import mqlite
from mqlite.config import parse_dsn
from mqlite.message import Message

from .conftest import rows
from .helpers import ROOT, read_line, wait_for

TABLE = "mqlite_messages"


def counts(admin, queue: str) -> tuple[int, int]:
    """(ready, claimed) rows of `queue`."""
    ((ready, claimed),) = rows(
        admin, f"SELECT COALESCE(SUM(owner = 0 AND available_at <= NOW(6)), 0), COALESCE(SUM(owner <> 0), 0) "
        f"FROM {TABLE} WHERE queue = %s",
        queue,
    )
    return int(ready), int(claimed)


def run_in_thread(worker: mqlite.Worker) -> tuple[threading.Thread, list[mqlite.WorkerResult]]:
    results: list[mqlite.WorkerResult] = []
    thread = threading.Thread(target=lambda: results.append(worker.run()), daemon=True)
    thread.start()
    return thread, results


# -- in-process ---------------------------------------------------------------------------------


def test_takes_queues_in_priority_order_until_empty(q: mqlite.Queue) -> None:
    q.push_many("low", ["l1", "l2"])
    q.push_many("high", ["h1", "h2", "h3"])
    seen: list[str] = []
    result = mqlite.Worker(q, ["high", "low"], lambda m: seen.append(m.text()), until_empty=True).run()
    assert seen == ["h1", "h2", "h3", "l1", "l2"]
    assert (result.processed, result.failed, result.reason, result.clean) == (5, 0, "empty", True)
    assert q.stats().queues["high"].processed == 3 and q.size("low") == 0


def test_concurrent_threads_handle_each_message_once(q: mqlite.Queue, admin) -> None:
    q.push_many("jobs", [str(i) for i in range(60)])
    seen: list[int] = []
    lock = threading.Lock()

    def handle(m: Message) -> None:
        with lock:
            seen.append(int(m.text()))

    result = mqlite.Worker(q, ["jobs"], handle, concurrency=4, until_empty=True).run()
    assert sorted(seen) == list(range(60)) and result.processed == 60
    assert counts(admin, "jobs") == (0, 0)


def test_failures_are_logged_on_one_line_and_the_rest_is_processed(q: mqlite.Queue, admin, caplog) -> None:
    for body in ["ok1", "bad\nmultiline", "ok2"]:
        q.push("jobs", body, max_attempts=1)

    def handle(m: Message) -> None:
        if m.text().startswith("bad"):
            raise ValueError(f"cannot do {m.text()}")

    with caplog.at_level(logging.WARNING, logger="mqlite.worker"):
        result = mqlite.Worker(q, ["jobs"], handle, until_empty=True).run()
    assert (result.processed, result.failed) == (2, 1)
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and "\n" not in failures[0]
    assert "ValueError: cannot do bad | multiline" in failures[0] and "queue 'jobs'" in failures[0]
    (failed,) = q.peek("jobs", failed=True)  # recorded as failed (max_attempts=1), with the error
    assert "cannot do bad" in (failed.last_error or "")


def test_stop_finishes_the_message_in_hand_and_claims_no_more(q: mqlite.Queue, admin) -> None:
    q.push_many("jobs", ["a", "b", "c"])
    started, go = threading.Event(), threading.Event()

    def handle(m: Message) -> None:
        started.set()
        assert go.wait(20)

    worker = mqlite.Worker(q, ["jobs"], handle)
    thread, results = run_in_thread(worker)
    assert started.wait(20)
    worker.stop()
    go.set()
    thread.join(20)
    assert not thread.is_alive()
    assert (results[0].processed, results[0].reason, results[0].abandoned) == (1, "stopped", 0)
    assert counts(admin, "jobs") == (2, 0)  # acknowledged the one in hand, left the rest ready


def test_stop_timeout_bounds_the_wait_and_leaves_the_message_claimed(q: mqlite.Queue, admin) -> None:
    q.push("jobs", "slow")
    started, go = threading.Event(), threading.Event()

    def handle(m: Message) -> None:
        started.set()
        assert go.wait(20)

    worker = mqlite.Worker(q, ["jobs"], handle, stop_timeout=0.2)
    thread, results = run_in_thread(worker)
    assert started.wait(20)
    worker.stop()
    thread.join(20)
    assert results[0].abandoned == 1 and not results[0].clean
    assert counts(admin, "jobs") == (0, 1)  # still claimed: recovery returns it if this process dies
    go.set()  # the handler thread finishes after all, and acknowledges
    wait_for(lambda: counts(admin, "jobs") == (0, 0), what="the late acknowledgement")


def test_max_messages_and_max_seconds(q: mqlite.Queue, admin) -> None:
    q.push_many("jobs", ["1", "2", "3", "4", "5"])
    result = mqlite.Worker(q, ["jobs"], lambda m: None, max_messages=2).run()
    assert (result.processed, result.reason) == (2, "max_messages")
    result = mqlite.Worker(q, ["jobs"], lambda m: None, max_seconds=0).run()
    assert (result.processed, result.reason) == (0, "max_seconds")
    assert counts(admin, "jobs") == (3, 0)


# -- prefetch ---------------------------------------------------------------------------------


def test_prefetch_takes_batches_in_order_and_acknowledges_them_together(q: mqlite.Queue, admin) -> None:
    q.push_many("jobs", [str(i) for i in range(25)])
    q.push("jobs", "bad", max_attempts=1)
    q.push_many("jobs", [str(i) for i in range(25, 30)])
    seen: list[str] = []
    claimed_while_handling: list[int] = []

    def handle(m: Message) -> None:
        claimed_while_handling.append(counts(admin, "jobs")[1])
        if m.text() == "bad":
            raise ValueError("bad")
        seen.append(m.text())

    result = mqlite.Worker(q, ["jobs"], handle, prefetch=10, until_empty=True).run()
    assert seen == [str(i) for i in range(30)]  # one consumer: FIFO, the failure in its place
    assert (result.processed, result.failed, result.clean) == (30, 1, True)
    assert max(claimed_while_handling) <= 10  # bounded: never more than one batch claimed
    assert claimed_while_handling[:2] == [10, 10]  # acknowledged together, after the batch
    assert counts(admin, "jobs") == (0, 0) and len(q.peek("jobs", failed=True)) == 1
    assert q.stats().queues["jobs"].processed == 30


def test_prefetch_respects_max_messages_and_gives_back_unstarted_ones_on_stop(q: mqlite.Queue, admin) -> None:
    q.push_many("jobs", [str(i) for i in range(12)])
    result = mqlite.Worker(q, ["jobs"], lambda m: None, prefetch=5, max_messages=7).run()
    assert (result.processed, result.reason) == (7, "max_messages")
    assert counts(admin, "jobs") == (5, 0)
    started, go = threading.Event(), threading.Event()

    def handle(m: Message) -> None:
        started.set()
        assert go.wait(20)

    worker = mqlite.Worker(q, ["jobs"], handle, prefetch=5)
    thread, results = run_in_thread(worker)
    assert started.wait(20)
    worker.stop()
    go.set()
    thread.join(20)
    assert (results[0].processed, results[0].reason, results[0].abandoned) == (1, "stopped", 0)
    assert counts(admin, "jobs") == (4, 0)  # the four not started went back at once, ready
    attempts = {m.attempts for m in q.peek("jobs", 10)}
    assert attempts == {0}  # giving back counts no attempt


def test_prefetch_threads_handle_each_message_once(q: mqlite.Queue, admin) -> None:
    q.push_many("jobs", [str(i) for i in range(200)])
    seen: list[int] = []
    lock = threading.Lock()

    def handle(m: Message) -> None:
        with lock:
            seen.append(int(m.text()))

    result = mqlite.Worker(q, ["jobs"], handle, concurrency=4, prefetch=16, until_empty=True).run()
    assert sorted(seen) == list(range(200)) and result.processed == 200
    assert counts(admin, "jobs") == (0, 0)


def test_bad_configuration_fails_before_starting(q: mqlite.Queue, dsn: str) -> None:
    with pytest.raises(ValueError):
        mqlite.Worker(q, [], lambda m: None)
    with pytest.raises(mqlite.errors.InvalidName):
        mqlite.Worker(q, [""], lambda m: None)
    bare = mqlite.Queue(dsn, table="not_there")
    with pytest.raises(mqlite.errors.SchemaMissing):
        mqlite.Worker(bare, ["jobs"], lambda m: None).run()
    bare.close()


class _FakeQueue:
    """Claims nothing except at the calls listed in `hits`; records nothing else (timing only)."""

    settings = parse_dsn("mysql://nobody@127.0.0.1/none")
    table = "none"

    def __init__(self, hits: set[int]) -> None:
        self.calls = 0
        self.hits = hits

    def size(self, name: str) -> int:
        return 0

    def _registry(self, step, *args):  # no registry: this stand-in only counts claims
        return 1

    @contextmanager
    def claim(self, name: str, *, lease: float = 30.0, interrupt=None):
        self.calls += 1
        yield Message(self.calls, name, b"x", datetime.now()) if self.calls in self.hits else None


def test_idle_backoff_doubles_to_idle_max_and_resets_after_work() -> None:
    fake = _FakeQueue(hits={5})
    worker = mqlite.Worker(fake, ["jobs"], lambda m: None, idle_min=0.01, idle_max=0.08, handle_signals=False)
    waits: list[float] = []
    real_wait = worker._stop.wait

    def recording_wait(timeout: float | None = None) -> bool:
        if threading.current_thread().name.startswith("mqlite-worker"):
            waits.append(timeout or 0.0)
            if len(waits) >= 8:
                worker.stop()
            return worker._stop.is_set()
        return real_wait(timeout)

    worker._stop.wait = recording_wait  # type: ignore[method-assign]
    result = worker.run()
    # Four empty polls back off 10, 20, 40, 80 ms; the message found at the fifth resets to 10 ms.
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.01, 0.02, 0.04, 0.08]
    assert result.processed == 1


# -- `mqlite worker` as a process ----------------------------------------------------------------

HANDLER = '''
import os, sys, time
from pathlib import Path

def handle(message):
    print("started", message.id, message.text(), flush=True)
    go = Path(os.environ["TEST_GO_FILE"])
    deadline = time.monotonic() + 30
    while not go.exists():  # the test says when the slow work is over
        if time.monotonic() > deadline:
            raise TimeoutError("nobody said go")
        time.sleep(0.01)
    print("finished", message.id, flush=True)
'''


@pytest.fixture
def password_dsn(dsn: str, admin) -> Iterator[str]:
    """The test database through a user with a password (to check it never shows)."""
    db = dsn.rsplit("/", 1)[1]
    user = f"w{os.getpid()}_{db[-6:]}"
    cur = admin.cursor()
    cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'hunter2secret'")
    cur.execute(f"GRANT ALL ON `{db}`.* TO '{user}'@'%'")
    cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'hunter2secret'")
    cur.execute(f"GRANT ALL ON `{db}`.* TO '{user}'@'localhost'")
    yield dataclasses.replace(parse_dsn(dsn), user=user, password="hunter2secret").url()
    cur.execute(f"DROP USER '{user}'@'%'")
    cur.execute(f"DROP USER '{user}'@'localhost'")


def start_worker(tmp_path: Path, dsn: str, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "slow_handler.py").write_text(HANDLER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_GO_FILE": str(tmp_path / "go"), "MQLITE_DSN": dsn}
    return subprocess.Popen(
        [sys.executable, "-m", "mqlite", "worker", "jobs", "--handler", "slow_handler:handle", *args],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def read_until(proc: subprocess.Popen[str], fragment: str, seen: list[str]) -> str:
    while True:
        line = read_line(proc)
        seen.append(line)
        if fragment in line:
            return line


def test_sigterm_finishes_the_message_in_hand_acknowledges_it_and_exits_0(
    tmp_path: Path, password_dsn: str, q: mqlite.Queue, admin
) -> None:
    q.push_many("jobs", ["one", "two", "three"])
    proc = start_worker(tmp_path, password_dsn, "--stop-timeout", "20")
    seen: list[str] = []
    try:
        started = read_until(proc, "started", seen)
        message_id = int(started.split()[1])
        proc.send_signal(signal.SIGTERM)
        read_until(proc, "SIGTERM received", seen)  # the handler is still running, the signal was seen
        assert counts(admin, "jobs") == (2, 1)
        (tmp_path / "go").touch()
        began = time.monotonic()
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - began < 20
    finally:
        if proc.poll() is None:
            proc.kill()
    seen += proc.stdout.read().splitlines() if proc.stdout else []
    assert f"finished {message_id}" in seen
    assert rows(admin, f"SELECT id FROM {TABLE} WHERE id = %s", message_id) == []  # acknowledged
    assert counts(admin, "jobs") == (2, 0)  # nothing lost, nothing left claimed
    assert any("stopped (signal): 1 processed" in line for line in seen)
    assert "hunter2secret" not in "\n".join(seen) and "Traceback" not in "\n".join(seen)


def test_a_second_signal_exits_at_once_and_recovery_returns_the_claim(
    tmp_path: Path, dsn: str, q: mqlite.Queue, admin
) -> None:
    q.push_many("jobs", ["one", "two"])
    proc = start_worker(tmp_path, dsn)
    seen: list[str] = []
    try:
        read_until(proc, "started", seen)
        proc.send_signal(signal.SIGTERM)
        read_until(proc, "SIGTERM received", seen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert counts(admin, "jobs") == (1, 1)  # the claim of the dead process is still there...
    wait_for(lambda: q.recover().dead_owner == 1, what="recovery of the dead worker's claim")
    assert counts(admin, "jobs") == (2, 0)  # ...until recovery puts it back
