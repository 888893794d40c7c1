"""TLS to the server: a throwaway server started with `tls=True` (certificates made for it: a CA of
its own and a server certificate for 127.0.0.1 and localhost), a second, unrelated CA made here,
and an account created `REQUIRE SSL`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import MySQLdb
import pytest

import mqlite
from mqlite.config import parse_dsn
from mqlite.errors import CertificateRejected, TlsRequired
from mqlite.testing import ThrowawayServer
from mqlite.testing.certs import CertificateAuthority, TlsFiles

from .conftest import admin_connection, rows

pytest.importorskip("cryptography", reason="making test certificates needs the cryptography package")

USER, PASSWORD = "mq_tls", "tls-pw"


@dataclass
class TlsServer:
    server: ThrowawayServer
    files: TlsFiles  # the server's certificate and key, and the CA that signed them
    other_ca: Path  # a CA that signed nothing of this server's

    def dsn(self, query: str = "", *, user: str = USER, password: str = PASSWORD) -> str:
        return f"mysql://{user}:{password}@127.0.0.1:{self.server.port}/test" + (f"?{query}" if query else "")


def start_tls_server(directory: Path, hosts: tuple[str, ...]) -> TlsServer:
    other = CertificateAuthority.create(directory, "an unrelated CA", stem="other-ca")
    server = ThrowawayServer(tls=True, tls_hosts=hosts)
    assert server.tls is not None and server.ca_path == server.tls.ca
    server.start()
    root = MySQLdb.connect(unix_socket=server.socket, user="root")
    try:
        cur = root.cursor()
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s REQUIRE SSL", (USER, PASSWORD))
        cur.execute(f"GRANT ALL ON *.* TO {USER}@'%'")
    finally:
        root.close()
    return TlsServer(server, server.tls, other.path)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    srv = start_tls_server(tmp_path_factory.mktemp("tls"), ("localhost", "127.0.0.1"))
    try:
        yield srv
    finally:
        srv.server.stop()


def test_required_connects_over_tls_and_stats_reports_the_cipher(tls: TlsServer) -> None:
    with mqlite.Queue(tls.dsn("ssl_mode=REQUIRED")) as q:
        q.apply_schema()
        q.push("tls", "over TLS")
        stats = q.stats()
        assert stats.tls_cipher and stats.tls_cipher == _cipher_of(tls.dsn("ssl_mode=REQUIRED"))
        assert stats.queues["tls"].ready == 1
        assert q.pop("tls").body == b"over TLS"


def _cipher_of(dsn: str) -> str:
    conn = MySQLdb.connect(**parse_dsn(dsn).connect_kwargs())
    try:
        ((_, cipher),) = rows(conn, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return str(cipher)
    finally:
        conn.close()


def test_the_throwaway_servers_own_dsn_verifies_it(tls: TlsServer) -> None:
    assert "ssl_mode=VERIFY_IDENTITY" in tls.server.dsn
    with mqlite.Queue(tls.server.dsn) as q:
        q.apply_schema()
        assert q.stats().tls_cipher


def test_stats_reports_no_cipher_for_a_session_without_tls(tls: TlsServer) -> None:
    root = f"mysql://root@127.0.0.1:{tls.server.port}/test?ssl_mode=DISABLED"  # root is not REQUIRE SSL
    with mqlite.Queue(root) as q:
        q.apply_schema()
        assert q.stats().tls_cipher is None


def test_every_kind_of_connection_goes_over_tls(tls: TlsServer) -> None:
    """The account refuses plain connections, so each of these working proves TLS on its connection."""
    with mqlite.Queue(tls.dsn(f"ssl_mode=VERIFY_IDENTITY&ssl_ca={quote(str(tls.files.ca))}"), pool_size=2) as q:
        q.apply_schema()  # schema
        q.push_many("every", [b"a", b"b", b"c"])  # pool
        with q.claim("every") as m:  # claim session, then the grouped acknowledgement
            assert m is not None and m.body == b"a"
        assert q.pop("every").body == b"b"  # the pop's own session
        assert q.size("every") == 1
        assert q.stats().tls_cipher


def test_the_web_app_connects_over_tls(tls: TlsServer) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from mqlite.web import create_app

    with mqlite.Queue(tls.dsn("ssl_mode=REQUIRED")) as q:
        q.apply_schema()
        with TestClient(create_app(q, stats_ttl=0), base_url="http://127.0.0.1") as client:
            assert client.post("/q/web", content=b"hello").status_code == 201
            got = client.get("/q/web")
            assert got.status_code == 200 and got.content == b"hello"


def test_the_dramatiq_broker_connects_over_tls(tls: TlsServer) -> None:
    pytest.importorskip("dramatiq")
    from mqlite.contrib.dramatiq import MqliteBroker

    broker = MqliteBroker(tls.dsn("ssl_mode=REQUIRED"))
    try:
        broker.mq.apply_schema()
        broker.declare_queue("default")
        assert broker.mq.stats().tls_cipher
    finally:
        broker.close()


def test_an_account_that_requires_tls_is_refused_without_it_with_a_typed_error(tls: TlsServer) -> None:
    started = time.monotonic()
    with pytest.raises(TlsRequired, match=r"requires TLS for user 'mq_tls'.*ssl_mode=") as caught:
        with mqlite.Queue(tls.dsn()) as q:
            q.push("never", "sent")
    assert not caught.value.transient
    assert isinstance(caught.value, mqlite.errors.Unavailable)  # still caught by `except Unavailable`
    assert PASSWORD not in str(caught.value)
    assert time.monotonic() - started < 5  # refused at once, not retried for retry_for


def test_the_same_account_with_a_wrong_password_is_not_called_a_tls_problem(tls: TlsServer) -> None:
    with pytest.raises(mqlite.errors.Unavailable, match="1045") as caught:
        with mqlite.Queue(tls.dsn(password="wrong")) as q:
            q.push("never", "sent")
    assert not isinstance(caught.value, TlsRequired)


@pytest.mark.parametrize("mode", ["VERIFY_CA", "VERIFY_IDENTITY"])
def test_verifying_against_the_wrong_ca_is_a_certificate_error(tls: TlsServer, mode: str) -> None:
    started = time.monotonic()
    with pytest.raises(CertificateRejected, match=f"certificate check of ssl_mode={mode} against ssl_ca=") as caught:
        with mqlite.Queue(tls.dsn(f"ssl_mode={mode}&ssl_ca={quote(str(tls.other_ca))}")) as q:
            q.push("never", "sent")
    assert str(tls.other_ca) in str(caught.value)
    assert not caught.value.transient
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("mode", ["VERIFY_CA", "VERIFY_IDENTITY"])
def test_verifying_against_the_right_ca_connects(tls: TlsServer, mode: str) -> None:
    with mqlite.Queue(tls.dsn(f"ssl_mode={mode}&ssl_ca={quote(str(tls.files.ca))}")) as q:
        q.apply_schema()
        assert q.stats().tls_cipher


def test_required_refuses_a_server_that_offers_no_tls(server_dsn: str) -> None:
    settings = parse_dsn(server_dsn)
    conn = admin_connection(server_dsn)
    try:
        ((_, have_ssl),) = rows(conn, "SHOW VARIABLES LIKE 'have_ssl'")
    finally:
        conn.close()
    if have_ssl == "YES":
        pytest.skip("the suite's server offers TLS")
    required = settings.url() + ("&" if "?" in settings.url() else "?") + "ssl_mode=REQUIRED"
    with pytest.raises(TlsRequired, match="does not offer TLS"):
        with mqlite.Queue(required) as q:
            q.stats()


def test_verify_identity_checks_the_host_name_and_verify_ca_does_not(tmp_path: Path) -> None:
    """A certificate that names another host: VERIFY_CA (the chain only, as MySQL defines it, on
    either client library) connects; VERIFY_IDENTITY refuses, naming the host name check."""
    srv = start_tls_server(tmp_path, ("db.example",))
    try:
        ca = quote(str(srv.files.ca))
        with mqlite.Queue(srv.dsn(f"ssl_mode=VERIFY_CA&ssl_ca={ca}")) as q:
            q.apply_schema()
            assert q.stats().tls_cipher
        with pytest.raises(CertificateRejected, match="host name check of ssl_mode=VERIFY_IDENTITY.*127.0.0.1"):
            with mqlite.Queue(srv.dsn(f"ssl_mode=VERIFY_IDENTITY&ssl_ca={ca}")) as q:
                q.stats()
    finally:
        srv.server.stop()


def test_mqlite_stats_shows_the_cipher(tls: TlsServer) -> None:
    from typer.testing import CliRunner

    from mqlite.cli import app

    dsn = tls.dsn("ssl_mode=REQUIRED")
    with mqlite.Queue(dsn) as q:
        q.apply_schema()
    cipher = _cipher_of(dsn)
    shown = CliRunner().invoke(app, ["stats", "--dsn", dsn])
    assert shown.exit_code == 0, shown.output
    assert f"connection: TLS, {cipher}" in shown.output
    as_json = CliRunner().invoke(app, ["stats", "--json", "--dsn", dsn])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["tls_cipher"] == cipher
    plain = CliRunner().invoke(app, ["stats", "--dsn", f"mysql://root@127.0.0.1:{tls.server.port}/test?ssl_mode=DISABLED"])
    assert plain.exit_code == 0 and "connection: not encrypted" in plain.output
