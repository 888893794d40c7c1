"""`Scheduler`: pushes the messages of due schedule ticks, however many schedulers run.

Every `interval` seconds a scheduler reads the schedules due (one statement, at most `batch` of
them; nothing more when none is due). For those it runs one transaction: an UPDATE that moves each
schedule's next_run_at on, conditional on the value it read, then one INSERT of their messages.
Of two schedulers that read the same ticks, the second one's UPDATE waits for the first's commit
and then matches fewer rows: it rolls back, so each tick is pushed once, with no leader. The
message's unique key, `schedule:<name>:<tick>`, also keeps a tick from being pushed twice while
its message waits in the queue.

Ticks missed while no scheduler ran: `catch_up="one"` pushes one message for all of them, at once;
`"none"` pushes one only if the latest missed tick is at most `LATE` seconds old. Either way the
schedule then waits for its first tick after now.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from . import retry, sql
from .errors import MqliteError
from .schedule import Schedule

log = logging.getLogger("mqlite.scheduler")

POLL = 0.5  # seconds between polls: the most a tick is late, and how soon adds and removes are seen
BATCH = 100  # schedules one poll handles at most
LATE = 60.0  # seconds: catch_up="none" still pushes a tick this late


class Scheduler:
    """Ticks the schedules of `queue`'s messages table: `tick()` once, or `run(stop)` until `stop` is set."""

    def __init__(self, queue: Any, *, interval: float = POLL, batch: int = BATCH) -> None:
        self.queue = queue
        self.interval = interval
        self.batch = batch
        self.pushed = 0  # messages pushed by this scheduler

    def tick(self) -> int:
        """One poll: pushes the messages of the ticks due; returns how many it pushed."""
        q = self.queue
        rows = q._fetch(sql.SCHEDULES_DUE, (q.table, self.batch))
        if not rows:
            return 0
        now = rows[0][-1]
        plans = []
        for row in rows:
            s = Schedule.from_row(row)
            try:
                plans.append((s, s.after(now), _pushes(s, now)))
            except (MqliteError, ImportError) as exc:  # e.g. a cron schedule where cronsim is missing
                log.error("schedule %r cannot tick: %s", s.name, exc)
        if not plans:
            return 0
        plans.sort(key=lambda p: p[0].name)  # every scheduler locks the rows in one order
        return int(retry.call(q._policy, lambda: self._claim_and_push(plans)))

    def _claim_and_push(self, plans: list[tuple[Schedule, datetime, bool]]) -> int:
        q = self.queue
        advance = [v for s, nxt, _ in plans for v in (s.name, nxt)]
        advance += [q.table, *(v for s, _, _ in plans for v in (s.name, s.next_run_at))]
        messages = [
            v for s, _, push in plans if push
            for v in (s.queue, s.body, s.priority, f"schedule:{s.name}:{s.next_run_at.isoformat()}Z", s.max_attempts)
        ]
        with q._pool.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql.START_TRANSACTION)
                if cur.execute(sql.advance_schedules(len(plans)), advance) != len(plans):
                    conn.rollback()  # another scheduler claimed some of these ticks first
                    return 0
                if messages:
                    cur.execute(sql.push_ticks(q._sql, len(messages) // 5), messages)
                conn.commit()
            finally:
                cur.close()
        pushed = len(messages) // 5
        self.pushed += pushed
        for name in sorted({s.queue for s, _, push in plans if push}):
            q.doorbell.ring(name)  # committed: wake their idle consumers
        return pushed

    def run(self, stop: threading.Event) -> None:
        """Poll every `interval` seconds until `stop` is set; errors are logged, never raised."""
        while not stop.is_set():
            full = False
            try:
                full = self.tick() >= self.batch
            except MqliteError as exc:
                log.warning("scheduler poll failed: %s", exc)
            if not full:
                stop.wait(self.interval)


def _pushes(s: Schedule, now: datetime) -> bool:
    """Whether the due tick(s) of `s` push a message now (see catch_up in the module's docstring)."""
    late = timedelta(seconds=LATE)
    if s.catch_up == "one" or now - s.next_run_at <= late:  # next_run_at is the first tick due
        return True
    return s.after(now - late) <= now  # a later tick due, recent enough


def start(queue: Any, stop: threading.Event, *, interval: float = POLL) -> threading.Thread:
    """A daemon thread running a Scheduler of `queue` until `stop` is set."""
    thread = threading.Thread(target=Scheduler(queue, interval=interval).run, args=(stop,), name="mqlite-scheduler",
                              daemon=True)
    thread.start()
    return thread
