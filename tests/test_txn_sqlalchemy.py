"""push(..., connection=…) with SQLAlchemy 2.x: ORM Sessions and Connections on the real server, over
mysqlclient (mysql+mysqldb://) and PyMySQL (mysql+pymysql://)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import String, create_engine, func, select
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session, sessionmaker

import mqlite
from mqlite.config import parse_dsn
from mqlite.errors import Duplicate

from .conftest import rows


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)


def engine_url(dsn: str, driver: str = "mysqldb") -> URL:
    s = parse_dsn(dsn)
    host, port = s.hosts[0]
    return URL.create(f"mysql+{driver}", username=s.user, password=s.password or None, host=host, port=port,
                      database=s.database, query={"charset": "utf8mb4"})


@pytest.fixture(params=["mysqldb", "pymysql"])
def engine(request: pytest.FixtureRequest, q: mqlite.Queue, dsn: str) -> Iterator[Engine]:
    eng = create_engine(engine_url(dsn, request.param))
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


def orders(admin) -> list[str]:
    return [ref for (ref,) in rows(admin, "SELECT ref FROM orders ORDER BY id")]


def test_push_in_a_session_commits_with_the_orm_writes(q: mqlite.Queue, engine: Engine, admin) -> None:
    make = sessionmaker(engine)
    with make.begin() as session:
        session.add(Order(ref="A-1"))
        new_id = q.push("receipts", b"order A-1", connection=session)
        assert q.size("receipts") == 0
    assert orders(admin) == ["A-1"]
    message = q.pop("receipts")
    assert message is not None and message.id == new_id


def test_a_session_rolled_back_by_an_exception_takes_the_message_back(
    q: mqlite.Queue, engine: Engine, admin
) -> None:
    with pytest.raises(RuntimeError):
        with Session(engine) as session, session.begin():
            session.add(Order(ref="B-1"))
            q.push("receipts", b"order B-1", connection=session)
            q.push_many("receipts", [b"b", b"c"], connection=session)
            raise RuntimeError("the view failed")
    assert orders(admin) == [] and q.size("receipts") == 0


def test_duplicate_in_a_session_leaves_it_usable(q: mqlite.Queue, engine: Engine, admin) -> None:
    with Session(engine) as session, session.begin():
        session.add(Order(ref="C-1"))
        first = q.push("mail", b"first", unique_key="C-1", connection=session)
        with pytest.raises(Duplicate) as caught:
            q.push("mail", b"again", unique_key="C-1", connection=session)
        assert caught.value.existing_id == first
        session.add(Order(ref="C-2"))
        assert session.scalar(select(func.count()).select_from(Order)) == 2  # autoflush works on
    assert orders(admin) == ["C-1", "C-2"] and q.size("mail") == 1


def test_push_on_a_connection_from_engine_begin(q: mqlite.Queue, engine: Engine, admin) -> None:
    with engine.begin() as conn:
        conn.execute(Order.__table__.insert().values(ref="D-1"))
        q.push("receipts", b"order D-1", connection=conn)
    assert orders(admin) == ["D-1"] and q.size("receipts") == 1


def test_a_connection_without_a_transaction_gets_one_its_commit_ends(q: mqlite.Queue, engine: Engine) -> None:
    with engine.connect() as conn:
        q.push("receipts", b"committed", connection=conn)
        assert conn.in_transaction()  # begun as SQLAlchemy's autobegin would
        conn.commit()
    with engine.connect() as conn:
        q.push("receipts", b"never committed", connection=conn)
    # closed without commit(): SQLAlchemy rolled it back
    assert [m.body for m in q.peek("receipts")] == [b"committed"]


def test_a_keyed_push_in_a_session_is_promoted_at_its_commit(dsn: str, engine: Engine) -> None:
    with mqlite.Queue(dsn, recover_every=0) as q:  # no housekeeping: the commit hook alone promotes
        with Session(engine) as session:
            with session.begin():
                q.push("exports", b"rolled back", concurrency_key="u", connection=session)
                session.rollback()
            with session.begin():
                new_id = q.push("exports", b"kept", concurrency_key="u", connection=session)
        message = q.take("exports")
        assert message is not None and message.id == new_id


def test_a_scoped_session_is_its_current_session(q: mqlite.Queue, engine: Engine, admin) -> None:
    scoped = scoped_session(sessionmaker(engine))
    try:
        scoped.add(Order(ref="E-1"))
        q.push("receipts", b"order E-1", connection=scoped)
        scoped.commit()
    finally:
        scoped.remove()
    assert orders(admin) == ["E-1"] and q.size("receipts") == 1


def test_another_dialect_is_a_type_error(q: mqlite.Queue, tmp_path) -> None:
    eng = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    try:
        with eng.connect() as conn:
            with pytest.raises(TypeError, match="mysql\\+mysqldb:// and mysql\\+pymysql://"):
                q.push("x", b"x", connection=conn)
    finally:
        eng.dispose()
