"""Recurring schedules: one message per tick however many schedulers run, catching up by at most
one after a scheduler was down, DST through zoneinfo, bad input refused before anything is written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

import mqlite
from mqlite.cli import app as cli_app
from mqlite.errors import ConfigError, InvalidName
from mqlite.schedule import next_tick
from mqlite.scheduler import Scheduler

from .conftest import rows
from .helpers import ROOT, wait_for

pytest.importorskip("cronsim")


def scheduler_process(dsn: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "mqlite", "scheduler", "--interval", "0.2", "--dsn", dsn],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def tick_of(m: mqlite.Message, name: str = "beat") -> datetime:
    """The tick a message was pushed for, from its unique key `schedule:<name>:<tick>Z`."""
    prefix = f"schedule:{name}:"
    assert m.unique_key is not None and m.unique_key.startswith(prefix) and m.unique_key.endswith("Z")
    return datetime.fromisoformat(m.unique_key[len(prefix):-1])


def pop_all(q: mqlite.Queue, queue: str) -> list[mqlite.Message]:
    got = []
    while (m := q.pop(queue)) is not None:
        got.append(m)
    return got


def test_two_scheduler_processes_push_each_tick_once(q: mqlite.Queue, dsn: str) -> None:
    q.schedule("beat", "ticks", "tick", every=1)
    procs = [scheduler_process(dsn), scheduler_process(dsn)]
    try:
        seen = wait_for(lambda: pop_all(q, "ticks"), timeout=20, what="the first tick")
        start = time.monotonic()
        # Consumed as they come, so the unique key (which holds only while a message waits) is
        # not what keeps a tick from being pushed twice: the conditional UPDATE is.
        while time.monotonic() - start < 5.5:
            seen += pop_all(q, "ticks")
            time.sleep(0.05)  # pacing the reads of a 5 s window, not waiting for an event
        assert all(p.poll() is None for p in procs)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=30) for p in procs]
    assert codes == [0, 0], [p.stderr.read() for p in procs if p.stderr]
    ticks = [tick_of(m) for m in seen]
    assert len(ticks) == len(set(ticks)), ticks
    window = [t for t in ticks if t < ticks[0] + timedelta(seconds=5)]  # the ticks of 5 s
    assert 4 <= len(window) <= 6, ticks
    # In order; a gap of 2 s would be a poll more than a second late on a loaded machine, its
    # missed tick caught up by one message (the window's count allows for it).
    assert ticks == sorted(ticks) and all(b - a <= timedelta(seconds=2) for a, b in zip(ticks, ticks[1:], strict=False))


def test_a_killed_scheduler_catches_up_by_at_most_one_message(q: mqlite.Queue, dsn: str, admin) -> None:
    q.schedule("beat", "ticks", "tick", every=1)
    proc = scheduler_process(dsn)
    try:
        seen = wait_for(lambda: pop_all(q, "ticks"), timeout=20, what="the first tick")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed = rows(admin, "SELECT UTC_TIMESTAMP(6)")[0][0]
        time.sleep(3.5)  # the scheduler stays down for three ticks or more
        proc = scheduler_process(dsn)
        restarted = rows(admin, "SELECT UTC_TIMESTAMP(6)")[0][0]

        def ticked_since_restart() -> bool:
            seen.extend(pop_all(q, "ticks"))
            return any(tick_of(m) > restarted for m in seen)

        wait_for(ticked_since_restart, timeout=20, what="the restarted scheduler's first regular tick")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    ticks = [tick_of(m) for m in seen]
    missed = [t for t in ticks if killed.replace(microsecond=0) < t <= restarted]
    assert len(missed) <= 1, (ticks, killed, restarted)
    assert len(ticks) == len(set(ticks))
    assert any(t > restarted for t in ticks)  # and it goes on ticking


def test_catch_up_one_or_none_after_long_downtime(q: mqlite.Queue, admin) -> None:
    q.schedule("one", "c", "x", every=3600)
    q.schedule("none", "c", "y", every=3600, catch_up="none")
    admin.cursor().execute("UPDATE mqlite_schedules SET next_run_at = UTC_TIMESTAMP() - INTERVAL 5 HOUR")
    admin.commit()
    assert Scheduler(q).tick() == 1
    assert [m.text() for m in pop_all(q, "c")] == ["x"]
    now = rows(admin, "SELECT UTC_TIMESTAMP(6)")[0][0]
    assert all(s.next_run_at > now for s in q.schedules())
    assert Scheduler(q).tick() == 0  # nothing due any more


def test_a_poll_takes_a_batch_and_a_lost_race_pushes_nothing(q: mqlite.Queue, admin) -> None:
    for i in range(7):
        q.schedule(f"s{i}", "b", f"m{i}", every=60, priority=i % 3 - 1, max_attempts=2)
    admin.cursor().execute("UPDATE mqlite_schedules SET next_run_at = UTC_TIMESTAMP() - INTERVAL 1 SECOND")
    admin.commit()
    assert Scheduler(q, batch=5).tick() == 5 and Scheduler(q, batch=5).tick() == 2
    got = pop_all(q, "b")
    assert sorted(m.text() for m in got) == [f"m{i}" for i in range(7)]
    assert [m.priority for m in got] == sorted(m.priority for m in got) and {m.max_attempts for m in got} == {2}
    # A scheduler whose poll read ticks another one pushed meanwhile: its UPDATE matches fewer rows.
    admin.cursor().execute("UPDATE mqlite_schedules SET next_run_at = UTC_TIMESTAMP() - INTERVAL 1 SECOND")
    admin.commit()
    late = Scheduler(q)
    due = q._fetch(mqlite.sql.SCHEDULES_DUE, (q.table, 100))
    assert Scheduler(q).tick() == 7
    q._fetch = lambda statement, params: due  # type: ignore[method-assign]  # what `late` read before
    assert late.tick() == 0
    del q._fetch
    assert len(pop_all(q, "b")) == 7


def test_adding_again_keeps_the_next_tick_unless_the_timing_changed(q: mqlite.Queue) -> None:
    first = q.schedule("s", "q", "a", cron="0 3 * * *")
    again = q.schedule("s", "q", "b", cron="0 3 * * *", priority=4)
    assert again.next_run_at == first.next_run_at and again.body == b"b" and again.priority == 4
    moved = q.schedule("s", "q", "b", cron="0 3 * * *", timezone="Asia/Tokyo")
    assert moved.next_run_at != first.next_run_at
    assert [s.name for s in q.schedules()] == ["s"]
    assert q.unschedule("s") and not q.unschedule("s") and q.schedules() == []


def test_cron_ticks_follow_the_time_zone_through_dst() -> None:
    paris = "Europe/Paris"
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer (DST began 2026-03-29).
    assert next_tick("0 9 * * *", None, paris, datetime(2026, 3, 28, 12)) == datetime(2026, 3, 29, 7)
    assert next_tick("0 9 * * *", None, paris, datetime(2026, 3, 27, 12)) == datetime(2026, 3, 28, 8)
    # 02:30 does not exist on the spring-forward night: the tick comes right after the gap, once.
    assert next_tick("30 2 * * *", None, paris, datetime(2026, 3, 28, 12)) == datetime(2026, 3, 29, 1)
    assert next_tick("30 2 * * *", None, paris, datetime(2026, 3, 29, 1)) == datetime(2026, 3, 30, 0, 30)
    # every= ignores the wall clock: multiples of the period since the epoch.
    assert next_tick(None, 3600, paris, datetime(2026, 3, 29, 1, 59)) == datetime(2026, 3, 29, 2)
    assert next_tick(None, 1.5, "UTC", datetime(1970, 1, 1, 0, 0, 1)) == datetime(1970, 1, 1, 0, 0, 1, 500000)


@pytest.mark.parametrize(("kwargs", "error", "fragment"), [
    ({"cron": "61 * * * *"}, ConfigError, "malformed cron"),
    ({"cron": "not cron"}, ConfigError, "malformed cron"),
    ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, ConfigError, "unknown time zone"),
    ({"every": 0}, ConfigError, "every must be more than 0"),
    ({"every": -5}, ConfigError, "every must be more than 0"),
    ({"every": float("nan")}, ConfigError, "every must be a number"),
    ({}, ConfigError, "give cron= or every="),
    ({"cron": "* * * * *", "every": 1}, ConfigError, "give cron= or every="),
    ({"every": 1, "priority": 40000}, ConfigError, "priority"),
    ({"every": 1, "catch_up": "all"}, ConfigError, "catch_up"),
    ({"every": 1, "max_attempts": 0}, ValueError, "max_attempts"),
    ({"every": 1, "name": ""}, InvalidName, "schedule name is empty"),
    ({"every": 1, "name": "x" * 129}, InvalidName, "at most 128"),
    ({"every": 1, "queue": "bad "}, InvalidName, "space"),
])
def test_bad_input_is_refused_and_nothing_written(q: mqlite.Queue, kwargs: dict[str, Any], error: type,
                                                   fragment: str) -> None:
    args = {"name": "s", "queue": "q", **kwargs}
    with pytest.raises(error, match=fragment):
        q.schedule(args.pop("name"), args.pop("queue"), "body", **args)
    assert q.schedules() == []


def test_cli_schedule_add_list_remove_and_a_bad_cron_is_one_red_line(q: mqlite.Queue, dsn: str) -> None:
    runner = CliRunner()
    added = runner.invoke(cli_app, ["schedule", "add", "nightly", "reports", "run", "--cron", "0 3 * * *",
                                    "--timezone", "Europe/Paris", "--priority", "-1", "--dsn", dsn])
    assert added.exit_code == 0 and "next tick" in added.output, added.output
    assert runner.invoke(cli_app, ["schedule", "add", "beat", "t", "x", "--every", "30s", "--dsn", dsn]).exit_code == 0
    listed = runner.invoke(cli_app, ["schedule", "list", "--json", "--dsn", dsn])
    assert '"name": "beat"' in listed.output and '"every": 30.0' in listed.output and '"priority": -1' in listed.output
    bad = subprocess.run([sys.executable, "-m", "mqlite", "schedule", "add", "b", "t", "x", "--cron", "61 * * * *",
                          "--dsn", dsn], capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "malformed cron" in lines[0], bad.stderr
    assert runner.invoke(cli_app, ["schedule", "remove", "beat", "--dsn", dsn]).exit_code == 0
    assert runner.invoke(cli_app, ["schedule", "remove", "beat", "--dsn", dsn]).exit_code == 1
    assert [s.name for s in q.schedules()] == ["nightly"]


def test_a_worker_with_the_scheduler_runs_the_ticks(q: mqlite.Queue) -> None:
    q.schedule("beat", "w", "tick", every=1)
    handled: list[str] = []
    worker = mqlite.Worker(q, ["w"], lambda m: handled.append(m.text()), scheduler=True, handle_signals=False,
                           max_messages=2, max_seconds=30, idle_max=0.1)
    result = worker.run()
    assert handled == ["tick", "tick"] and result.clean


def test_a_poll_is_one_statement_and_a_due_batch_a_fixed_few(q: mqlite.Queue, admin, monkeypatch) -> None:
    """The speed rule: one statement per poll when nothing is due, and the same five (poll, START,
    UPDATE, INSERT, COMMIT) for one due schedule or fifty."""
    sent: list[str] = []
    checkout = q._pool.connection

    class Counting:
        def __init__(self, raw: Any) -> None:
            self.raw = raw

        def cursor(self) -> Any:
            cur = self.raw.cursor()
            execute = cur.execute

            def counted(statement: str, params: Any = None) -> Any:
                if "IS_USED_LOCK" not in statement:  # the doorbell's look-up after a push (wake.py), cached
                    sent.append(statement.split()[0].upper())
                return execute(statement, params)

            cur.execute = counted
            return cur

        def commit(self) -> None:
            sent.append("COMMIT")
            self.raw.commit()

        def rollback(self) -> None:
            sent.append("ROLLBACK")
            self.raw.rollback()

    class Checkout:
        def __enter__(self) -> Counting:
            self.inner = checkout()
            return Counting(self.inner.__enter__())

        def __exit__(self, *exc: Any) -> Any:
            return self.inner.__exit__(*exc)

    for due in (1, 50):
        for i in range(due):
            q.schedule(f"s{due}-{i}", "n", "x", every=60)
        admin.cursor().execute("UPDATE mqlite_schedules SET next_run_at = UTC_TIMESTAMP() - INTERVAL 1 SECOND")
        admin.commit()
        monkeypatch.setattr(q._pool, "connection", Checkout)
        sent.clear()
        assert Scheduler(q).tick() == due
        assert sent == ["SELECT", "START", "UPDATE", "INSERT", "COMMIT"], sent
        sent.clear()
        assert Scheduler(q).tick() == 0 and sent == ["SELECT"]
        monkeypatch.setattr(q._pool, "connection", checkout)
        for i in range(due):
            q.unschedule(f"s{due}-{i}")
    assert len(pop_all(q, "n")) == 51


def test_catch_up_none_still_pushes_a_tick_that_is_only_a_little_late(q: mqlite.Queue, admin) -> None:
    q.schedule("recent", "c", "x", every=3600, catch_up="none")
    admin.cursor().execute("UPDATE mqlite_schedules SET next_run_at = UTC_TIMESTAMP(6) - INTERVAL 2 SECOND")
    admin.commit()
    assert Scheduler(q).tick() == 1 and [m.text() for m in pop_all(q, "c")] == ["x"]


def test_a_cron_tick_asked_for_in_the_repeated_hour_of_a_fall_back_is_after_it() -> None:
    # New York falls back on 2026-11-01: 01:00-01:59 runs twice (EDT, 05:00-05:59 UTC, then EST,
    # 06:00-06:59 UTC). Asked at 01:30 EST (06:30 UTC), the next "45 1 * * *" is not 01:45 EDT (05:45
    # UTC, an hour before, already ticked): a past tick would be due again at once. The daily tick
    # is the first pass's, once.
    ny = "America/New_York"
    for when in (datetime(2026, 11, 1, 6, 0), datetime(2026, 11, 1, 6, 30), datetime(2026, 11, 1, 6, 44)):
        assert next_tick("45 1 * * *", None, ny, when) > when
        assert next_tick("30 1 * * *", None, ny, when) > when
    assert next_tick("45 1 * * *", None, ny, datetime(2026, 11, 1, 6, 30)) == datetime(2026, 11, 2, 6, 45)
    assert next_tick("45 1 * * *", None, ny, datetime(2026, 11, 1, 5, 0)) == datetime(2026, 11, 1, 5, 45)


def test_a_poll_in_the_repeated_hour_of_a_fall_back_pushes_its_ticks(q: mqlite.Queue, admin) -> None:
    # A poll at 01:10 EST (06:10 UTC) with a New York "45 1 * * *" tick due from 01:45 EDT (05:45 UTC,
    # missed meanwhile) next to another due schedule: both push once, and the cron one moves on to the next
    # day (it used to "move on" to 05:45 again: due again at every poll, its tick pushed again each time
    # its message had been taken, until the repeated hour passed).
    q.schedule("beat", "dst", "cron", cron="45 1 * * *", timezone="America/New_York")
    q.schedule("other", "dst", "every", every=60)
    cur = admin.cursor()
    cur.execute("UPDATE mqlite_schedules SET next_run_at = %s WHERE name = 'beat'", (datetime(2026, 11, 1, 5, 45),))
    cur.execute("UPDATE mqlite_schedules SET next_run_at = UTC_TIMESTAMP() - INTERVAL 1 SECOND WHERE name = 'other'")
    admin.commit()
    due = [(*row[:-1], datetime(2026, 11, 1, 6, 10)) for row in q._fetch(mqlite.sql.SCHEDULES_DUE, (q.table, 100))]
    assert len(due) == 2
    q._fetch = lambda statement, params: due  # type: ignore[method-assign]  # as if the poll ran then
    try:
        assert Scheduler(q).tick() == 2
    finally:
        del q._fetch
    assert sorted(m.text() for m in pop_all(q, "dst")) == ["cron", "every"]
    assert {s.name: s.next_run_at for s in q.schedules()}["beat"] == datetime(2026, 11, 2, 6, 45)
