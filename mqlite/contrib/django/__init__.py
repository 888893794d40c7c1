"""mqlite in a Django project: settings, schema by `migrate`, pushes that join `transaction.atomic()`.

    INSTALLED_APPS += ["mqlite.contrib.django"]
    MQLITE = {"DATABASE": "default", "TABLE": "mqlite_messages", "OPTIONS": {"pool_size": 10}}  # optional

    from mqlite.contrib.django import queue

    with transaction.atomic():
        order = Order.objects.create(...)
        queue.push("receipts", str(order.pk))   # commits with the order, or not at all

`python manage.py migrate` creates the messages table (the app's migration runs mqlite's own
`schema.apply`, so it is idempotent beside `mqlite schema apply`); `python manage.py mqlite_worker
QUEUE... --handler module:function` runs a Worker with Django set up; `python manage.py mqlite ...`
is the `mqlite` CLI on the project's database. Settings are read in `conf.py`.
"""

from __future__ import annotations

from typing import Any

from .queues import DjangoQueue, get_queue

__all__ = ["DjangoQueue", "get_queue", "queue"]


def __getattr__(name: str) -> Any:
    # `queue` is built on first use, from the settings as they are then (not at import time,
    # which happens while Django loads INSTALLED_APPS).
    if name == "queue":
        return get_queue()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
