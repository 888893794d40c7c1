"""The README's Transactions snippets (```py blocks, which need an app around them) run as written,
given the app's objects: a DB-API connection, a SQLAlchemy engine and models."""

from __future__ import annotations

import re
from typing import Any

import MySQLdb
from sqlalchemy import create_engine
from sqlalchemy.orm import Mapped, Session, mapped_column

import mqlite
from mqlite.config import parse_dsn

from .conftest import rows
from .helpers import ROOT
from .test_txn_push import APP_TABLE
from .test_txn_sqlalchemy import Base, Order, engine_url


class Receipt(Base):
    __tablename__ = "receipts"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int]


def snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Transactions", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```py\n(.*?)```", section, re.S)


def test_the_transactions_snippets_run(q: mqlite.Queue, dsn: str, admin: Any) -> None:
    dbapi, sqlalchemy, django, ack = snippets()
    assert "INSTALLED_APPS" in django  # run by tests/test_django.py's view and handler
    admin.cursor().execute(APP_TABLE)
    kwargs = parse_dsn(dsn).connect_kwargs()
    exec(dbapi.replace("MySQLdb.connect(...)", "MySQLdb.connect(**kwargs)"), {"MySQLdb": MySQLdb, "kwargs": kwargs, "q": q})
    assert rows(admin, "SELECT ref FROM orders") == [("A-1",)]
    assert [m.body for m in q.peek("receipts")] == [b"order A-1"]

    engine = create_engine(engine_url(dsn))
    try:
        admin.cursor().execute("DROP TABLE orders")
        Base.metadata.create_all(engine)
        exec(sqlalchemy, {"engine": engine, "Order": Order, "q": q})
        assert rows(admin, "SELECT ref FROM orders") == [("A-1",)]
        q.purge("receipts")
        q.push("receipts", b"42")
        exec(ack, {"engine": engine, "Receipt": Receipt, "Session": Session, "q": q})
        assert rows(admin, "SELECT order_id FROM receipts") == [(42,)]
        assert q.peek("receipts") == []
    finally:
        engine.dispose()
