"""`manage.py mqlite_worker QUEUE... --handler module:function`: a Worker with Django set up.

Each message is handled between two `django.db.close_old_connections()`, as Django does around a
request: a connection past CONN_MAX_AGE, or broken by an error, is closed instead of reused.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connections

from mqlite.errors import MqliteError
from mqlite.message import Message
from mqlite.worker import Worker

from ...queues import forget_queue, get_queue


class Command(BaseCommand):
    help = "Consume QUEUE... (highest priority first), calling --handler module:function with each message."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queues", nargs="+", metavar="QUEUE")
        parser.add_argument("--handler", required=True, help="module:function called with each mqlite Message")
        parser.add_argument("--concurrency", type=int, default=1, help="handler threads (default 1)")
        parser.add_argument("--lease", type=float, default=30.0, help="seconds a claim is held without renewal")
        parser.add_argument("--max-messages", type=int, help="stop after this many messages")
        parser.add_argument("--max-seconds", type=float, help="stop after this many seconds")
        parser.add_argument("--until-empty", action="store_true", help="stop once every queue is empty")

    def handle(self, *args: Any, **options: Any) -> None:
        handler = _load(options["handler"])

        def handle(message: Message) -> Any:
            close_old_connections()
            try:
                return handler(message)
            finally:
                close_old_connections()

        try:
            worker = Worker(
                get_queue(), options["queues"], handle, concurrency=options["concurrency"], lease=options["lease"],
                max_messages=options["max_messages"], max_seconds=options["max_seconds"],
                until_empty=options["until_empty"],
            )
            result = worker.run()
        except (MqliteError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            forget_queue()  # closes it: counters written, claim sessions ended
            connections.close_all()
        self.stdout.write(f"{result.processed} processed, {result.failed} failed ({result.reason})")
        if not result.clean:
            raise CommandError(f"{result.abandoned} message(s) left claimed ({result.reason})", returncode=1)


def _load(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CommandError(f"--handler {spec!r} must look like module:function")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:
        raise CommandError(f"cannot load handler {spec!r}: {type(exc).__name__}: {exc}") from None
    if not callable(target):
        raise CommandError(f"handler {spec!r} is not callable")
    return target
