"""Bad input gets a typed error from mqlite.errors, never a driver exception or a password."""

from __future__ import annotations

import socket
import time

import pytest

import mqlite
from mqlite.config import Settings, parse_dsn
from mqlite.errors import (
    ConfigError,
    InvalidBody,
    InvalidName,
    MqliteError,
    PayloadTooLarge,
    SchemaMissing,
    Unavailable,
)

from .conftest import admin_connection, rows

SECRET = "s3cr3t-P@ss/word"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "dsn, fragment",
    [
        ("postgres://u@h/db", "scheme"),
        ("mysql://u@h:99999/db", "port"),
        ("mysql://u@h:abc/db", "port"),
        ("mysql://u@h:3306/", "database"),
        ("mysql://u@h/db?sslmode=require", "unknown DSN option"),
        ("mysql://u@h/db?connect_timeout=soon", "number"),
        ("mysql:///db", "no host"),
        ("not a dsn", "mysql://"),
    ],
)
def test_malformed_dsn_is_a_config_error(dsn: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        mqlite.Queue(dsn)


def test_dsn_forms_parse() -> None:
    s = parse_dsn("mysql://app:p%40ss%3Aw@db.example:3307/jobs?connect_timeout=2")
    assert (s.user, s.password, s.hosts, s.database, s.connect_timeout) == (
        "app", "p@ss:w", (("db.example", 3307),), "jobs", 2.0)
    s = parse_dsn("mysql:///jobs?unix_socket=/run/mysqld/mysqld.sock")
    assert s.unix_socket == "/run/mysqld/mysqld.sock" and s.database == "jobs"
    assert parse_dsn("mysql://a@h1,h2:3307/db").hosts == (("h1", 3306), ("h2", 3307))
    assert "p@ss" not in repr(parse_dsn("mysql://app:p%40ss@h/db"))
    assert parse_dsn(s.url()) == s


@pytest.mark.parametrize(
    "query, fragment",
    [
        ("ssl_mode=ON", "ssl_mode must be one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY"),
        ("ssl_mode=VERIFY_CA", "needs ssl_ca="),
        ("ssl_mode=VERIFY_IDENTITY", "needs ssl_ca="),
        ("ssl_ca=/nonexistent/ca.pem", "no readable file at /nonexistent/ca.pem"),
        ("ssl_ca=", "ssl_ca is empty"),
        ("ssl_cert={pem}", "ssl_cert and ssl_key go together"),
        ("ssl_key={pem}", "ssl_cert and ssl_key go together"),
        ("ssl_mode=DISABLED&ssl_ca={pem}", "DISABLED and TLS files"),
        ("ssl_mode=REQUIRED&ssl_mode=DISABLED", "ssl_mode is given twice"),
    ],
)
def test_bad_tls_options_are_config_errors(tmp_path, query: str, fragment: str) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not checked here beyond being a readable file")
    with pytest.raises(ConfigError, match=fragment):
        mqlite.Queue(f"mysql://u:{SECRET}@h/db?" + query.format(pem=pem))


def test_tls_options_parse_and_travel_with_the_settings(tmp_path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client cert.pem", "client-key.pem"))
    for f in (ca, cert, key):
        f.write_text("pem")
    s = parse_dsn(f"mysql://u:{SECRET}@h/db?ssl_mode=verify_identity&ssl_ca={ca}"
                  f"&ssl_cert={str(cert).replace(' ', '%20')}&ssl_key={key}&read_timeout=7")
    assert (s.ssl_mode, s.ssl_ca, s.ssl_cert, s.ssl_key) == ("VERIFY_IDENTITY", str(ca), str(cert), str(key))
    assert s.tls_enforced
    assert parse_dsn(s.url()) == s  # every option survives the round trip, timeouts too
    assert s.with_database("other") == parse_dsn(s.url().replace("/db?", "/other?"))
    kwargs = s.connect_kwargs()
    assert kwargs["ssl_mode"] == "VERIFY_IDENTITY"  # VERIFY_CA may be said otherwise: see config._driver_ssl_mode
    assert kwargs["ssl"] == {"ca": str(ca), "cert": str(cert), "key": str(key)}
    assert SECRET not in s.redacted() and f"ssl_ca={ca}" in s.redacted()
    # A CA given without a mode means the CA is checked, never a silently unverified connection.
    assert parse_dsn(f"mysql://u@h/db?ssl_ca={ca}").ssl_mode == "VERIFY_CA"
    plain = parse_dsn("mysql://u@h/db")
    assert plain.ssl_mode is None and not plain.tls_enforced
    assert "ssl_mode" not in plain.connect_kwargs() and "ssl" not in plain.connect_kwargs()
    assert not parse_dsn("mysql://u@h/db?ssl_mode=PREFERRED").tls_enforced


def test_missing_dsn_is_a_config_error(monkeypatch) -> None:
    monkeypatch.delenv("MQLITE_DSN", raising=False)
    with pytest.raises(ConfigError, match="MQLITE_DSN"):
        mqlite.Queue()


def test_unreachable_server_names_host_and_port_but_not_password() -> None:
    port = _closed_port()
    q = mqlite.Queue(f"mysql://app:{SECRET}@127.0.0.1:{port}/db", connect_timeout=2, retry_for=0)
    with pytest.raises(Unavailable) as info:
        q.push("x", b"y")
    assert f"127.0.0.1:{port}" in str(info.value)
    assert SECRET not in str(info.value) and "s3cr3t" not in repr(info.value)


def test_a_refused_first_connection_gives_up_after_first_connect_retry_for() -> None:
    port = _closed_port()
    started = time.monotonic()
    q = mqlite.Queue(f"mysql://app@127.0.0.1:{port}/db", retry_for=30, first_connect_retry_for=0.5)
    with pytest.raises(Unavailable, match="no connection to it has succeeded yet") as info:
        q.stats()
    took = time.monotonic() - started
    assert 0.5 <= took < 2.5, took  # retried for half a second (not 30), then given up
    assert not info.value.transient and f"127.0.0.1:{port}" in str(info.value)


def test_once_connected_a_refused_connection_stays_transient(dsn: str) -> None:
    """The first-connection bound does not shorten the retries through a later server restart."""
    q = mqlite.Queue(dsn, first_connect_retry_for=0)
    q.apply_schema()
    q.push("x", b"connected once")
    pool = q._pool
    pool.close()  # every connection closed: the next checkout connects anew
    pool._connector.kwargs = {**pool._connector.kwargs, "host": "127.0.0.1", "port": _closed_port()}
    pool._connector.kwargs.pop("unix_socket", None)
    with pytest.raises(Unavailable, match="cannot connect") as info:
        with pool.connection():
            pass
    assert info.value.transient  # retried for retry_for by the callers, as before
    assert "succeeded yet" not in str(info.value)


def test_wrong_password_is_unavailable_without_the_password(dsn: str) -> None:
    settings = parse_dsn(dsn)
    admin = admin_connection(dsn)
    admin.cursor().execute("CREATE USER IF NOT EXISTS 'mq_pw'@'%' IDENTIFIED BY 'right-one'")
    try:
        url = Settings("mq_pw", SECRET, settings.hosts, settings.database, settings.unix_socket).url()
        with pytest.raises(Unavailable) as info:
            mqlite.Queue(url, retry_for=0).push("x", b"y")
        assert "Access denied" in str(info.value)
        assert SECRET not in str(info.value)
        assert not info.value.transient
    finally:
        admin.cursor().execute("DROP USER IF EXISTS 'mq_pw'@'%'")
        admin.close()


def test_missing_table_says_run_schema_apply(dsn: str) -> None:
    q = mqlite.Queue(dsn)
    with pytest.raises(SchemaMissing, match="schema apply"):
        q.push("x", b"y")
    with pytest.raises(SchemaMissing):
        q.pop("x")
    q.close()


@pytest.mark.parametrize(
    "name",
    ["", "x" * 192, b"\xff\xfe", "bad\udcffsurrogate", 7, None],
)
def test_bad_queue_names_are_refused(q: mqlite.Queue, name: object) -> None:
    with pytest.raises(InvalidName):
        q.push(name, b"x")  # type: ignore[arg-type]
    with pytest.raises(InvalidName):
        q.pop(name)  # type: ignore[arg-type]


def test_longest_and_unicode_queue_names_work(q: mqlite.Queue) -> None:
    for name in ("x" * 191, "キュー🚀", "with space"):
        q.push(name, b"ok")
        assert q.pop(name).queue == name


@pytest.mark.parametrize("table", ["", "1abc", "a-b", "a;drop", "x" * 65, "`t`"])
def test_bad_table_names_are_refused(dsn: str, table: str) -> None:
    with pytest.raises(InvalidName):
        mqlite.Queue(dsn, table=table)


def test_unencodable_text_body_is_refused(q: mqlite.Queue) -> None:
    with pytest.raises(InvalidBody):
        q.push("x", "lone \udcff surrogate")
    assert q.size("x") == 0


def test_body_over_max_allowed_packet_is_refused_before_sending(q: mqlite.Queue, admin) -> None:
    (limit,) = rows(admin, "SELECT @@max_allowed_packet")[0]
    with pytest.raises(PayloadTooLarge):
        q.push("big", b"\0" * (limit + 1))
    # Escaping doubles NULs: this one is under the limit raw but not once escaped.
    with pytest.raises(PayloadTooLarge):
        q.push("big", b"\0" * (limit // 2 + 10))
    with pytest.raises(PayloadTooLarge):
        q.push_many("big", [b"small"] * 10 + [b"x" * (limit + 1)])
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    assert q.push("big", b"fits") > 0


def test_every_error_is_an_mqlite_error() -> None:
    for cls in (ConfigError, InvalidName, PayloadTooLarge, Unavailable, SchemaMissing, InvalidBody):
        assert issubclass(cls, MqliteError)


def test_a_push_waits_at_most_checkout_timeout_for_a_free_connection(dsn: str) -> None:
    with mqlite.Queue(dsn, pool_size=1, checkout_timeout=0.3) as q:
        q.apply_schema()
        q.push("jobs", "first")
        with q._pool.connection():  # the only connection, held
            began = time.monotonic()
            with pytest.raises(Unavailable, match="no free connection .* after 0.3s"):
                q.push("jobs", "blocked")
            assert 0.25 < time.monotonic() - began < 2  # the caller's bound, not retried past it
        assert q.push("jobs", "after") > 0  # the slot came back
        assert [m.text() for m in q.peek("jobs")] == ["first", "after"]
