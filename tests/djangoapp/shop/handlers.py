"""Handlers the worker command is started with in the tests."""

from __future__ import annotations

from django.db import connection

from mqlite.message import Message

from .models import Receipt


def record(message: Message) -> None:
    """Write a Receipt naming the message and the database session that wrote it."""
    with connection.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        (session,) = cur.fetchone()
    Receipt.objects.create(message_id=message.id, body=message.text(), connection_id=session)


def record_in_transaction(message: Message) -> None:
    """The exactly-once pattern: the handler's writes and the acknowledgement in one transaction."""
    from django.db import transaction

    with transaction.atomic():
        record(message)
        message.ack()  # inside atomic(), the project's queue joins Django's transaction
