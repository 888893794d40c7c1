"""Recurring schedules: `Queue.schedule`, `unschedule`, `schedules`, and when each ticks.

A schedule pushes its body to its queue at each tick: of a cron expression (read by `cronsim`,
the `cron` extra) in the schedule's time zone, so that DST moves the ticks as the wall clock
does, or of `every` seconds (multiples of it since the Unix epoch, whatever the time zone).
Schedules live in `mqlite_schedules` (schema/006); the ticking is scheduler.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from . import sql
from .base import QueueCore
from .config import check_count, check_priority, check_queue, check_schedule_name
from .errors import ConfigError
from .message import Body, as_bytes

CatchUp = Literal["one", "none"]
CATCH_UPS = ("one", "none")
MAX_EVERY = 366 * 86400.0  # seconds
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class Schedule:
    """One recurring schedule; `next_run_at` and `last_run_at` are UTC (naive, as stored)."""

    name: str
    queue: str
    body: bytes
    cron: str | None
    every: float | None
    timezone: str
    priority: int
    max_attempts: int | None
    catch_up: CatchUp
    next_run_at: datetime
    last_run_at: datetime | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Schedule:
        """Build from a row of `sql.SCHEDULE_COLUMNS`."""
        name, queue, body, cron, every_us, tz, priority, attempts, catch_up, next_run, last_run = row[:11]
        every = None if every_us is None else int(every_us) / 1e6
        return cls(name, queue, bytes(body), cron, every, tz, int(priority), attempts, catch_up, next_run, last_run)

    def after(self, when: datetime) -> datetime:
        """The first tick strictly after `when` (UTC, naive)."""
        return next_tick(self.cron, self.every, self.timezone, when)


def zone(name: object) -> Any:
    """The zoneinfo time zone called `name`; ConfigError when there is none."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not name:
        raise ConfigError(f"timezone must be a time zone name such as 'Europe/Paris', not {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}") from None


def next_tick(cron: str | None, every: float | None, tz: str, when: datetime) -> datetime:
    """The first tick after `when` (UTC, naive) of a cron expression in `tz`, or of `every` seconds."""
    if every is not None:
        step = round(every * 1e6)
        elapsed = (when - _EPOCH) // timedelta(microseconds=1)
        return _EPOCH + timedelta(microseconds=(elapsed // step + 1) * step)
    assert cron is not None
    from cronsim import CronSim

    local = when.replace(tzinfo=timezone.utc).astimezone(zone(tz))
    ticks = CronSim(cron, local)
    while True:
        # In the repeated hour of a fall-back, cronsim may answer the wall time's first pass, an
        # hour before `when`: a past tick would be due again at once. Skip to one after `when`.
        found: datetime = next(ticks).astimezone(timezone.utc).replace(tzinfo=None)
        if found > when:
            return found


def check_timing(cron: object, every: object, tz: object) -> tuple[str | None, float | None]:
    """The schedule's cron expression or period, checked (ConfigError when malformed)."""
    zone(tz)
    if (cron is None) == (every is None):
        raise ConfigError("give cron= or every=, not both and not neither")
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every):
            raise ConfigError(f"every must be a number of seconds, not {every!r}")
        if not 0 < every <= MAX_EVERY or round(every * 1e6) < 1:
            raise ConfigError(f"every must be more than 0 and at most {MAX_EVERY:.0f} seconds, got {every}")
        return None, float(every)
    if not isinstance(cron, str) or not cron.strip() or len(cron) > 255:
        raise ConfigError(f"cron must be a cron expression such as '*/5 * * * *', not {cron!r}")
    try:
        from cronsim import CronSim, CronSimError
    except ImportError:
        raise ConfigError("cron schedules need the cronsim package: pip install 'mqlite[cron]'") from None
    try:
        next(CronSim(cron, datetime.now(timezone.utc)))
    except (CronSimError, StopIteration, ValueError) as exc:
        raise ConfigError(f"malformed cron expression {cron!r}: {exc or 'it never fires'}") from None
    return cron, None


class Scheduling(QueueCore):
    def schedule(
        self,
        name: str,
        queue: str,
        body: Body,
        *,
        cron: str | None = None,
        every: float | None = None,
        timezone: str = "UTC",
        priority: int = 0,
        max_attempts: int | None = None,
        catch_up: CatchUp = "one",
    ) -> Schedule:
        """Add (or replace) the schedule `name`: push `body` to `queue` at each tick of `cron` (in
        `timezone`) or of `every` seconds. Replacing keeps the next tick unless the timing changed.

        Ticks missed while no scheduler ran become one message when a scheduler next runs
        (`catch_up="one"`), or none (`"none"`: only a tick less than `scheduler.LATE` seconds old
        is pushed). Bad input raises ConfigError / InvalidName before anything is written.
        """
        label = check_schedule_name(name)
        target = check_queue(queue)
        data = as_bytes(body)
        expression, period = check_timing(cron, every, timezone)
        rank = check_priority(priority)
        limit = None if max_attempts is None else check_count(max_attempts)
        if catch_up not in CATCH_UPS:
            raise ConfigError(f"catch_up must be 'one' or 'none', not {catch_up!r}")
        now = self._fetch(sql.SERVER_UTC, ())[0][0]
        first = next_tick(expression, period, timezone, now)
        every_us = None if period is None else round(period * 1e6)
        self._execute(sql.SCHEDULE_UPSERT, (
            self.table, label, target, data, expression, every_us, timezone, rank, limit, catch_up, first,
            expression, every_us, timezone, first,
            target, data, expression, every_us, timezone, rank, limit, catch_up,
        ))
        return next(s for s in self.schedules() if s.name == label)

    def unschedule(self, name: str) -> bool:
        """Remove the schedule `name`; False if there was none. Schedulers stop within one poll."""
        return bool(self._execute(sql.SCHEDULE_DELETE, (self.table, check_schedule_name(name))))

    def schedules(self) -> list[Schedule]:
        """Every schedule of this messages table, by name."""
        return [Schedule.from_row(r) for r in self._fetch(sql.SCHEDULE_LIST, (self.table,))]
