"""Peer queues for `--compare`: huey's `SqlHuey` on the same server, and RQ on a local Redis.

Both are optional (`pip install -e '.[peers]'`); when a module or the Redis server is missing,
`Skip` says why and the row is reported as skipped. Each peer gets stores of its own, named
after the run (huey's tables carry the run's prefix; RQ's keys contain the run's queue name),
and removes them afterwards. The peers are driven through their public APIs, as their users
would: `task(body)` / `huey.dequeue()`, `queue.enqueue(...)` / `Queue.dequeue_any(...)`.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..config import parse_dsn
from .drivers import SEED_CHUNK, Case, _Op, body, insert_rows
from .harness import Empty
from .reference_sql import huey_seed_statements

PEERS_HINT = "pip install -e '.[peers]'"


class Skip(Exception):
    """This row cannot run here; the message says why."""


def noop(data: bytes) -> None:
    """The task both peers enqueue (never executed by the benchmark)."""


# -- huey -------------------------------------------------------------------------


def _huey(case: Case, *, create_tables: bool) -> tuple[Any, Any]:
    """A `Huey` on `SqlStorage` whose tables are prefixed with the run's table name; and its task."""
    try:
        from huey import Huey
        from huey.contrib.sql_huey import SqlStorage
        from peewee import MySQLDatabase
    except ImportError as exc:
        raise Skip(f"{exc.name} not installed ({PEERS_HINT})") from None

    prefix = case.table

    class PrefixedStorage(SqlStorage):  # type: ignore[misc, valid-type]
        # huey names its tables kv, schedule, task, counter: never touch a real huey's tables.
        def create_models(self) -> Any:
            models = super().create_models()
            for model in models:
                model._meta.set_table_name(f"{prefix}_{model._meta.table_name}")
            task = models[2]
            # SqlStorage's explicit index on the task table captured the old table name: redo it.
            task._meta.indexes = [i for i in task._meta.indexes if not hasattr(i, "_table")]
            task.add_index(task.priority.desc(), task.id)
            return models

    kwargs = parse_dsn(case.dsn).connect_kwargs()
    database = kwargs.pop("database")
    db = MySQLDatabase(str(database), charset="utf8mb4", **kwargs)  # type: ignore[arg-type]
    huey = Huey(case.queue, results=False, storage_class=PrefixedStorage, database=db, create_tables=create_tables)
    return huey, huey.task(name="mqlite_bench_noop")(noop)


def huey_setup(case: Case, rows: int) -> int:
    """Create huey's tables and fill its queue with `rows` real task messages."""
    huey, task = _huey(case, create_tables=True)
    try:
        if rows <= 0:
            return 0
        message = huey.serialize_task(task.s(body(case.body_size)))
        st = huey_seed_statements(huey.storage.Task._meta.table_name)
        return insert_rows(case.dsn, st.insert_many, (case.queue, message), rows)
    finally:
        huey.storage.close()


def huey_teardown(case: Case) -> None:
    huey, _ = _huey(case, create_tables=False)
    huey.storage.drop_tables()
    huey.storage.close()


class HueyDriver:
    """huey's public API; peewee keeps one connection per thread."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.huey, self.task = _huey(case, create_tables=False)
        self._body = body(case.body_size)

    def prepare(self, clients: int) -> None:
        pass

    def worker(self, role: str, index: int) -> _Op:
        huey, task, data = self.huey, self.task, self._body
        huey.storage.database.connect(reuse_if_open=True)  # this thread's connection, before the clock
        close = huey.storage.database.close
        if role == "push":

            def push() -> int:
                task(data)
                return 1

            return _Op(push, close)
        if role == "pop":

            def pop() -> int:
                if huey.dequeue() is None:
                    raise Empty
                return 1

            return _Op(pop, close)
        raise ValueError(f"unknown huey role {role!r}")

    def samples(self) -> dict[str, list[float]]:
        return {}

    def close(self) -> None:
        self.huey.storage.close()


# -- RQ on Redis ------------------------------------------------------------------


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        host = parts.netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    return url


def _redis(url: str) -> Any:
    try:
        import redis
        import rq  # noqa: F401 - checked here so that a missing rq is a skip, not a crash later
    except ImportError as exc:
        raise Skip(f"{exc.name} not installed ({PEERS_HINT})") from None
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=60)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise Skip(f"no Redis server answers at {redact_url(url)} ({exc})") from None
    return client


def rq_setup(case: Case, rows: int) -> int:
    """Check Redis answers; enqueue `rows` jobs (pipelined) for the dequeue peer."""
    from rq import Queue as RQQueue

    client = _redis(case.redis_url)
    try:
        q = RQQueue(case.queue, connection=client)
        data = body(case.body_size)
        done = 0
        while done < rows:
            n = min(SEED_CHUNK, rows - done)
            with client.pipeline() as pipe:
                q.enqueue_many(
                    [RQQueue.prepare_data(noop, (data,), job_id=f"{case.queue}_s{done + i}") for i in range(n)],
                    pipeline=pipe,
                )
                pipe.execute()
            done += n
        return done
    finally:
        client.close()


def rq_teardown(case: Case) -> None:
    """Delete every key this run made: all contain the run's queue name."""
    try:
        client = _redis(case.redis_url)
    except Skip:
        return
    try:
        from rq import Queue as RQQueue

        client.srem(RQQueue.redis_queues_keys, RQQueue(case.queue, connection=client).key)
        keys = client.scan_iter(match=f"*{case.queue}*", count=1000)
        while batch := list(itertools.islice(keys, 1000)):
            client.delete(*batch)
    finally:
        client.close()


class RqDriver:
    """RQ's public API over one redis-py client (a thread-safe connection pool) per process."""

    def __init__(self, case: Case) -> None:
        from rq import Queue as RQQueue

        self.case = case
        self.client = _redis(case.redis_url)
        self.q = RQQueue(case.queue, connection=self.client)
        self._body = body(case.body_size)

    def prepare(self, clients: int) -> None:
        pass

    def worker(self, role: str, index: int) -> _Op:
        from rq import Queue as RQQueue

        q, client, data = self.q, self.client, self._body
        client.ping()  # one pooled connection per thread exists before the clock starts
        if role == "push":
            ids = (f"{self.case.queue}_{index}_{n}" for n in itertools.count())

            def enqueue() -> int:
                q.enqueue_call(noop, args=(data,), job_id=next(ids))
                return 1

            return _Op(enqueue)
        if role == "pop":

            def dequeue() -> int:
                if RQQueue.dequeue_any([q], None, connection=client) is None:
                    raise Empty
                return 1

            return _Op(dequeue)
        raise ValueError(f"unknown RQ role {role!r}")

    def samples(self) -> dict[str, list[float]]:
        return {}

    def close(self) -> None:
        self.client.close()
