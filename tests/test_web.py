"""`mqlite web`: every route through Starlette's TestClient against the real server, and the
command as a process. Auth, bad input and oversized bodies are checked to write nothing."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install 'mqlite[web]'")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import mqlite  # noqa: E402
from mqlite.cli import app as cli_app  # noqa: E402
from mqlite.testing.web import free_port, start_web, stop_web  # noqa: E402
from mqlite.web import create_app  # noqa: E402
from mqlite.web.runner import WebError, check_bind  # noqa: E402
from mqlite.worker import Worker  # noqa: E402

from .conftest import rows  # noqa: E402
from .helpers import ROOT, wait_for  # noqa: E402

BASE = "http://127.0.0.1"
TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

@pytest.fixture
def app(q: mqlite.Queue) -> Any:
    return create_app(q, stats_ttl=0, lease_sweep=0.1)

@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE) as c:
        yield c

def count(admin: Any, where: str = "1") -> int:
    return int(rows(admin, f"SELECT COUNT(*) FROM mqlite_messages WHERE {where}")[0][0])

def claim_json(client: TestClient, queue: str, **params: Any) -> dict[str, Any]:
    r = client.post(f"/q/{queue}/claim", params=params)
    assert r.status_code == 200, r.text
    return r.json()

# -- push, pop, claim, settle -------------------------------------------------------------------

def test_push_pop_round_trip_keeps_bytes_and_says_204_when_empty(client: TestClient) -> None:
    body = b'{"to": "ada"}\x00\xff binary too'
    r = client.post("/q/emails", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    new_id = r.json()["id"]
    assert r.json() == {"id": new_id, "queue": "emails"}
    got = client.get("/q/emails")
    assert got.status_code == 200 and got.content == body
    assert got.headers["X-Mqlite-Id"] == str(new_id) and got.headers["X-Mqlite-Attempts"] == "0"
    empty = client.get("/q/emails")
    assert empty.status_code == 204 and empty.content == b"" and "X-Mqlite-Paused" not in empty.headers
    assert client.get("/stats/emails").json()["processed"] == 1

def test_push_delay_unique_key_and_max_attempts(client: TestClient, admin: Any) -> None:
    assert client.post("/q/later", content=b"x", params={"delay": "60"}).status_code == 201
    assert client.get("/q/later").status_code == 204
    assert client.get("/stats/later").json()["delayed"] == 1

    first = client.post("/q/orders", content=b"order 42", params={"unique_key": "order-42"})
    assert first.status_code == 201
    dup = client.post("/q/orders", content=b"order 42 again", params={"unique_key": "order-42"})
    assert dup.status_code == 409
    assert dup.json()["error"] == "duplicate" and dup.json()["existing_id"] == first.json()["id"]
    same = client.post("/q/orders", content=b"again", params={"unique_key": "order-42", "if_exists": "ignore"})
    assert same.status_code == 201 and same.json()["id"] == first.json()["id"]
    assert count(admin, "queue = 'orders'") == 1

    client.post("/q/once", content=b"one try", params={"max_attempts": "1"})
    c = claim_json(client, "once")
    assert c["max_attempts"] == 1
    assert client.post(f"/messages/{c['id']}/nack", json={"receipt": c["receipt"], "error": "nope"}).status_code == 200
    assert client.get("/stats/once").json()["failed"] == 1

def test_claim_ack_round_trip(client: TestClient, admin: Any) -> None:
    pushed = client.post("/q/jobs", content="résumé".encode()).json()["id"]
    c = claim_json(client, "jobs", lease="60")
    assert c["id"] == pushed and c["body"] == "résumé" and c["encoding"] == "utf-8"
    assert c["attempts"] == 0 and c["lease"] == 60 and c["queue"] == "jobs"
    assert client.get("/stats/jobs").json()["claimed"] == 1
    assert client.post("/q/jobs/claim").status_code == 204  # the only message is claimed
    ack = client.post(f"/messages/{pushed}/ack", headers={"X-Mqlite-Receipt": c["receipt"]})
    assert ack.status_code == 200 and ack.json() == {"id": pushed, "done": "ack"}
    assert count(admin) == 0
    again = client.post(f"/messages/{pushed}/ack", json={"receipt": c["receipt"]})
    assert again.status_code == 409 and again.json()["error"] == "claim_gone"
    assert client.get("/stats/jobs").json()["processed"] == 1

def test_a_queue_named_in_utf8_round_trips_with_the_receipt_in_a_header(client: TestClient) -> None:
    client.post("/q/%C3%A9t%C3%A9", content=b"summer")  # /q/été
    c = claim_json(client, "été")
    assert c["queue"] == "été" and c["receipt"].endswith(".été")
    r = client.post(f"/messages/{c['id']}/ack", headers={"X-Mqlite-Receipt": c["receipt"].encode("utf-8")})
    assert r.status_code == 200, r.text
    assert client.get("/stats/%C3%A9t%C3%A9").json()["processed"] == 1


def test_claim_body_is_base64_when_not_utf8_or_asked(client: TestClient) -> None:
    client.post("/q/bin", content=b"\xff\x00\x01")
    c = claim_json(client, "bin")
    assert c["encoding"] == "base64" and base64.b64decode(c["body"]) == b"\xff\x00\x01"
    client.post("/q/bin", content=b"plain")
    c = claim_json(client, "bin", encoding="base64")
    assert c["encoding"] == "base64" and base64.b64decode(c["body"]) == b"plain"

def test_nack_keeps_the_error_then_failed_retry_and_purge(client: TestClient, admin: Any) -> None:
    client.post("/q/work", content=b"flaky", params={"max_attempts": "2"})
    c = claim_json(client, "work")
    r = client.post(f"/messages/{c['id']}/nack", json={"receipt": c["receipt"], "error": "first", "delay": 0})
    assert r.status_code == 200 and r.json()["done"] == "nack"
    c = claim_json(client, "work")
    assert c["attempts"] == 1
    client.post(f"/messages/{c['id']}/nack", json={"receipt": c["receipt"], "error": "ValueError: second"})
    stats = client.get("/stats/work").json()
    assert stats["failed"] == 1 and stats["failed_total"] == 2 and stats["ready"] == 0
    listed = client.get("/q/work/failed").json()["messages"]
    assert [(m["id"], m["attempts"], m["last_error"], m["body_preview"]) for m in listed] == [
        (c["id"], 2, "ValueError: second", "flaky")
    ]
    retried = client.post("/q/work/failed/retry", params={"id": str(c["id"])})
    assert retried.json() == {"queue": "work", "retried": 1}
    assert client.get("/q/work").content == b"flaky"

    client.post("/q/work", content=b"doomed")
    c = claim_json(client, "work")
    assert client.post(f"/messages/{c['id']}/fail", json={"receipt": c["receipt"], "error": "bad input"}).status_code == 200
    assert client.get("/q/work/failed").json()["messages"][0]["last_error"] == "bad input"
    assert client.post("/q/work/failed/purge", params={"older_than": "3600"}).json()["purged"] == 0
    assert client.post("/q/work/failed/purge").json() == {"queue": "work", "purged": 1}
    assert count(admin) == 0

def test_release_and_extend(client: TestClient, app: Any) -> None:
    client.post("/q/slow", content=b"long job")
    c = claim_json(client, "slow", lease="0.5")
    r = client.post(f"/messages/{c['id']}/extend", json={"receipt": c["receipt"], "lease": 120})
    assert r.status_code == 200
    # Past the first lease, the server's keeper must not take back an extended claim.
    assert app.state.leases.expired(now=time.monotonic() + 60) == []
    r = client.post(f"/messages/{c['id']}/release", json={"receipt": c["receipt"]})
    assert r.status_code == 200 and len(app.state.leases) == 0
    c = claim_json(client, "slow")
    assert c["attempts"] == 0  # a release counts no attempt

def test_checkpoint_survives_a_release(client: TestClient, app: Any) -> None:
    client.post("/q/import", content=b"big file")
    c = claim_json(client, "import", lease="0.5")
    assert (c["cursor"], c["progress"]) == (None, None)
    saved = {"receipt": c["receipt"], "cursor": "row 3000", "progress": 0.5, "lease": 120}
    assert client.post(f"/messages/{c['id']}/checkpoint", json=saved).status_code == 200
    assert app.state.leases.expired(now=time.monotonic() + 60) == []  # the checkpoint renewed the lease
    bad = client.post(f"/messages/{c['id']}/checkpoint", json={"receipt": c["receipt"], "cursor": 5})
    assert bad.status_code == 400
    client.post(f"/messages/{c['id']}/release", json={"receipt": c["receipt"]})
    again = claim_json(client, "import")
    assert (again["cursor"], again["progress"]) == ("row 3000", 0.5)


def test_concurrency_key_holds_back_a_second_message(client: TestClient) -> None:
    for n in (1, 2):
        r = client.post("/q/charges", content=b"charge %d" % n, params={"concurrency_key": "acct-7", "max_running": "1"})
        assert r.status_code == 201
    first = claim_json(client, "charges")
    assert client.post("/q/charges/claim").status_code == 204  # acct-7 already has one running
    client.post(f"/messages/{first['id']}/ack", json={"receipt": first["receipt"]})
    assert claim_json(client, "charges")["body"] == "charge 2"
    assert client.post("/q/charges", content=b"x", params={"max_running": "2"}).status_code == 400


def test_an_unsettled_http_claim_comes_back_after_its_lease(client: TestClient) -> None:
    client.post("/q/orphans", content=b"client died")
    c = claim_json(client, "orphans", lease="0.3")
    # The claim is owned by the server's live session: only the server's lease keeper returns it.
    wait_for(lambda: client.get("/stats/orphans").json()["claimed"] == 0, timeout=10, what="the lease keeper")
    late = client.post(f"/messages/{c['id']}/ack", json={"receipt": c["receipt"]})
    assert late.status_code == 409
    # Back (after the backoff) with one failed attempt counted. The count may still be on its way to
    # the database from the keeper's thread (counters are written in batches): wait for it.
    wait_for(lambda: client.get("/stats/orphans").json()["failed_total"] == 1, timeout=10, what="the failure count")
    stats = client.get("/stats/orphans").json()
    assert stats["ready"] + stats["delayed"] == 1 and stats["claimed"] == 0

def test_settle_refuses_bad_receipts(client: TestClient, admin: Any) -> None:
    client.post("/q/jobs", content=b"a")
    client.post("/q/jobs", content=b"b")
    c = claim_json(client, "jobs")
    other = claim_json(client, "jobs")
    cases = [
        ({}, 400, "no_receipt"),
        ({"receipt": "garbage"}, 400, "bad_receipt"),
        ({"receipt": other["receipt"]}, 400, "bad_receipt"),
        ({"receipt": c["receipt"], "error": 5}, 400, "bad_parameter"),
    ]
    for data, status, code in cases:
        r = client.post(f"/messages/{c['id']}/nack", json=data)
        assert (r.status_code, r.json()["error"]) == (status, code), data
    assert client.post(f"/messages/{c['id']}/ack", content=b"[1]").json()["error"] == "bad_json"
    assert client.post(f"/messages/{c['id']}/explode", json={"receipt": c["receipt"]}).status_code == 404
    assert count(admin, "owner <> 0") == 2  # both still claimed, untouched

# -- long polls ------------------------------------------------------------------------------------

def _get_in_thread(client: TestClient, url: str, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        out["response"] = client.get(url, **kwargs)
        out["seconds"] = time.monotonic() - start

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out

def test_long_poll_on_an_empty_queue_waits_then_says_204(client: TestClient) -> None:
    start = time.monotonic()
    r = client.get("/q/idle", params={"wait": "0.4"})
    elapsed = time.monotonic() - start
    assert r.status_code == 204 and 0.4 <= elapsed < 5

@pytest.mark.parametrize("via", ["library", "http"])
def test_long_poll_returns_as_soon_as_a_message_arrives(client: TestClient, app: Any, q: mqlite.Queue, via: str) -> None:
    t, out = _get_in_thread(client, "/q/inbox", params={"wait": "20"})
    wait_for(lambda: app.state.arrivals.waiting == 1, timeout=10, what="the long-poll to wait")
    pushed = time.monotonic()
    if via == "library":  # another Queue's push: rings the doorbell (else found by the next poll, <= 0.5 s)
        q.push("inbox", b"hello")
    else:  # a push through this server wakes the waiters at once
        client.post("/q/inbox", content=b"hello")
    t.join(timeout=15)
    assert not t.is_alive()
    assert out["response"].status_code == 200 and out["response"].content == b"hello"
    assert time.monotonic() - pushed < 3 and out["seconds"] < 10

def test_waiting_long_polls_hold_no_database_connection(dsn: str, admin: Any) -> None:
    database = dsn.rsplit("/", 1)[1]
    with mqlite.Queue(dsn, pool_size=2) as small:
        small.apply_schema()
        with TestClient(create_app(small, stats_ttl=0), base_url=BASE) as client:
            waiters = [_get_in_thread(client, "/q/inbox", params={"wait": "20"}) for _ in range(8)]
            wait_for(lambda: client.app.state.arrivals.waiting == 8, timeout=15, what="8 long-polls to wait")
            sessions = count_sessions(admin, database)
            # pool 2 + claim 2 + admin 1 + the doorbell's listening session (mqlite/wake.py)
            assert sessions <= 6, f"{sessions} sessions for 8 waiting requests"
            # The pool of 2 is free for other requests meanwhile; each push wakes a waiter.
            for i in range(8):
                assert client.post("/q/inbox", content=b"m%d" % i).status_code == 201
            bodies = []
            for t, out in waiters:
                t.join(timeout=15)
                bodies.append(out["response"].content)
            assert sorted(bodies) == sorted(b"m%d" % i for i in range(8))

def count_sessions(admin: Any, database: str) -> int:
    return int(rows(admin, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s", database)[0][0])

# -- pause ---------------------------------------------------------------------------------------

def test_pause_stops_pop_claim_and_workers_but_not_pushes(client: TestClient, q: mqlite.Queue) -> None:
    r = client.post("/control/jobs/pause")
    assert r.status_code == 200 and r.json() == {"queue": "jobs", "paused": True}
    assert client.post("/q/jobs", content=b"waits").status_code == 201
    popped = client.get("/q/jobs")
    assert popped.status_code == 204 and popped.headers["X-Mqlite-Paused"] == "true"
    assert client.post("/q/jobs/claim").status_code == 204
    handled: list[bytes] = []
    worker = Worker(q, ["jobs"], lambda m: handled.append(m.body), until_empty=True, handle_signals=False, idle_max=0.1)
    assert worker.run().processed == 0 and handled == []
    stats = client.get("/stats/jobs").json()
    assert stats["paused"] is True and stats["ready"] == 1
    assert client.post("/control/jobs/resume").json() == {"queue": "jobs", "paused": False}
    assert client.get("/q/jobs").content == b"waits"
    assert client.post("/control/jobs/explode").status_code == 404

# -- stats and metrics -----------------------------------------------------------------------------

def test_stats_routes(client: TestClient) -> None:
    client.post("/q/a", content=b"1")
    client.post("/q/a", content=b"2", params={"delay": "30"})
    client.post("/q/b", content=b"3")
    claim_json(client, "b")
    everything = client.get("/stats").json()
    assert set(everything["queues"]) == {"a", "b"} and isinstance(everything["sees_all_connections"], bool)
    a = everything["queues"]["a"]
    assert (a["ready"], a["delayed"], a["claimed"], a["failed"], a["paused"]) == (1, 1, 0, 0, False)
    assert a["oldest_age"] >= 0 and a["oldest_ready"]
    assert client.get("/stats/b").json()["claimed"] == 1
    missing = client.get("/stats/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_queue"

def test_metrics_parse_with_prometheus_client(client: TestClient) -> None:
    client.post("/q/jobs", content=b"1")
    client.post("/q/jobs", content=b"2")
    client.get("/q/jobs")
    client.post("/control/idle/pause")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    assert samples[("mqlite_up", ())] == 1
    assert samples[("mqlite_queue_depth", (("queue", "jobs"), ("state", "ready")))] == 1
    assert samples[("mqlite_queue_depth", (("queue", "jobs"), ("state", "failed")))] == 0
    assert samples[("mqlite_processed_total", (("queue", "jobs"),))] == 1
    assert samples[("mqlite_failed_total", (("queue", "jobs"),))] == 0
    assert samples[("mqlite_oldest_ready_age_seconds", (("queue", "jobs"),))] >= 0
    assert samples[("mqlite_queue_paused", (("queue", "idle"),))] == 1
    assert ("mqlite_http_waiting_requests", ()) in samples

# -- security: auth, bad input, size, cross-site, escaping, secrets ----------------------------

def test_with_a_token_every_write_needs_it_and_failures_write_nothing(q: mqlite.Queue, admin: Any) -> None:
    q.push("jobs", b"already here")
    with TestClient(create_app(q, token=TOKEN, stats_ttl=0, loopback_only=False), base_url="http://mq.example.com") as client:
        writes = [
            ("POST", "/q/jobs"), ("GET", "/q/jobs"), ("POST", "/q/jobs/claim"),
            ("POST", "/control/jobs/pause"), ("POST", "/q/jobs/failed/retry"), ("POST", "/q/jobs/failed/purge"),
            ("POST", "/messages/1/ack"), ("POST", "/messages/1/nack"),
        ]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}):
            for method, url in writes:
                r = client.request(method, url, content=b"intruder", headers=headers)
                assert r.status_code == 401, (method, url, headers)
                assert r.json()["error"] == "unauthorized" and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert [r[0] for r in rows(admin, "SELECT body FROM mqlite_messages")] == [b"already here"]
        assert not q.is_paused("jobs") and count(admin, "owner <> 0") == 0
        # Reads stay open; the page says the buttons need the token.
        assert client.get("/stats").status_code == 200 and client.get("/metrics").status_code == 200
        assert 'data-auth="required"' in client.get("/").text
        # The right token, any Host (a server with a token may sit behind a name).
        assert client.post("/q/jobs", content=b"ok", headers=AUTH).status_code == 201
        assert client.get("/q/jobs", headers=AUTH).content == b"already here"

def test_a_non_ascii_token_works(q: mqlite.Queue) -> None:
    token = "clé-секрет"
    with TestClient(create_app(q, token=token), base_url=BASE) as client:
        bearer = {"Authorization": b"Bearer " + token.encode("utf-8")}
        assert client.post("/q/jobs", content=b"x", headers=bearer).status_code == 201
        assert client.post("/q/jobs", content=b"x", headers={"Authorization": b"Bearer cl\xc3"}).status_code == 401


def test_bad_input_gets_a_json_4xx_and_writes_nothing(client: TestClient, admin: Any) -> None:
    client.post("/q/jobs", content=b"keep me")
    cases = [
        ("POST", "/nope", {}, 404, "not_found"),
        ("GET", "/q", {}, 404, "not_found"),
        ("DELETE", "/q/jobs", {}, 405, "method_not_allowed"),
        ("HEAD", "/q/jobs", {}, 405, None),  # would pop: refused, the message stays
        ("POST", "/q/" + "x" * 192, {}, 400, "bad_queue_name"),
        ("POST", "/q/jobs", {"delay": "soon"}, 400, "bad_parameter"),
        ("POST", "/q/jobs", {"delay": "-1"}, 400, "bad_parameter"),
        ("POST", "/q/jobs", {"delay": "nan"}, 400, "bad_parameter"),
        ("POST", "/q/jobs", {"delay": "inf"}, 400, "bad_parameter"),
        ("POST", "/q/jobs", {"max_attempts": "0"}, 400, "bad_parameter"),
        ("POST", "/q/jobs", {"max_attempts": "two"}, 400, "bad_parameter"),
        ("POST", "/q/jobs", {"unique_key": "k" * 192}, 400, "bad_parameter"),
        ("POST", "/q/jobs", {"if_exists": "replace"}, 400, "bad_parameter"),
        ("POST", "/q/jobs", {"dealy": "5"}, 400, "unknown_parameter"),
        ("GET", "/q/jobs", {"wait": "31"}, 400, "bad_parameter"),
        ("GET", "/q/jobs", {"wait": "later"}, 400, "bad_parameter"),
        ("POST", "/q/jobs/claim", {"lease": "0"}, 400, "bad_parameter"),
        ("POST", "/q/jobs/claim", {"encoding": "hex"}, 400, "bad_parameter"),
        ("POST", "/q/jobs/failed/retry", {"id": "one"}, 400, "bad_parameter"),
        ("POST", "/q/jobs/failed/purge", {"older_than": "-5"}, 400, "bad_parameter"),
        ("GET", "/q/jobs/failed", {"limit": "100000"}, 400, "bad_parameter"),
        ("POST", "/messages/abc/ack", {}, 404, "not_found"),
    ]
    for method, url, params, status, code in cases:
        r = client.request(method, url, params=params, content=b"junk")
        assert r.status_code == status, (method, url, params, r.text)
        if code is not None:
            assert r.headers["content-type"] == "application/json" and r.json()["error"] == code, (url, params)
    assert [r[0] for r in rows(admin, "SELECT body FROM mqlite_messages")] == [b"keep me"]
    assert count(admin, "owner <> 0") == 0

def test_oversized_bodies_get_413_and_write_nothing(q: mqlite.Queue, admin: Any) -> None:
    with TestClient(create_app(q, max_body=100), base_url=BASE) as client:
        assert client.post("/q/jobs", content=b"x" * 100).status_code == 201
        declared = client.post("/q/jobs", content=b"x" * 101)
        assert declared.status_code == 413 and declared.json()["error"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            for _ in range(10):
                yield b"y" * 50

        streamed = client.post("/q/jobs", content=chunks())
        assert streamed.status_code == 413 and streamed.json()["error"] == "payload_too_large"
    assert count(admin) == 1

def test_without_a_token_cross_site_writes_and_foreign_hosts_are_refused(client: TestClient, admin: Any) -> None:
    client.post("/q/jobs", content=b"keep me")
    evil = [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ]
    for headers in evil:
        for method, url in (("POST", "/q/jobs"), ("GET", "/q/jobs"), ("POST", "/q/jobs/failed/purge"),
                            ("POST", "/control/jobs/pause")):
            r = client.request(method, url, content=b"csrf", headers=headers)
            assert r.status_code == 403 and r.json()["error"] == "cross_site", (method, url, headers)
    # DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own Host.
    rebound = client.get("/stats", headers={"Host": "evil.example"})
    assert rebound.status_code == 421 and rebound.json()["error"] == "bad_host"
    assert [r[0] for r in rows(admin, "SELECT body FROM mqlite_messages")] == [b"keep me"]
    # The page's own requests: same origin.
    same = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/control/jobs/pause", headers=same).status_code == 200
    assert client.get("/stats", headers={"Host": "localhost:8080"}).status_code == 200

def test_page_escapes_bodies_errors_and_queue_names(client: TestClient, q: mqlite.Queue) -> None:
    queue = '<img src=x onerror="alert(2)">'
    q.push(queue, b"<script>alert(1)</script>")
    m = q.take(queue)
    assert m is not None
    q.fail(m, "<script>alert('error')</script>")
    q.push("plain", b"<b>bold?</b>")
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    for raw in ("<script>alert(1)</script>", "<script>alert('error')</script>", '<img src=x onerror="alert(2)">'):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert html.count("<script") == 1  # the page's own status.js, nothing inline
    assert "script-src 'self'" in r.headers["content-security-policy"]
    js = client.get("/static/status.js").text
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js

def test_the_dsn_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    secret = "pa55-Secret-w0rd"
    down = mqlite.Queue(f"mysql://mq:{secret}@127.0.0.1:{port}/nowhere", retry_for=0, connect_timeout=1)
    with TestClient(create_app(down, stats_ttl=0), base_url=BASE) as client:
        responses = [
            client.get("/stats"), client.get("/"), client.post("/q/jobs", content=b"x"), client.get("/q/jobs"),
            client.get("/metrics"), client.post("/control/jobs/pause"), client.get("/q/jobs/failed"),
        ]
    for r in responses:
        assert secret not in r.text and secret not in str(r.headers)
    assert responses[0].status_code == 503 and responses[0].json()["error"] == "unavailable"
    assert "mqlite_up 0.0" in responses[4].text
    assert secret not in caplog.text
    down.close()

def test_consumed_queues_are_bounded(q: mqlite.Queue) -> None:
    with TestClient(create_app(q, max_queues=2), base_url=BASE) as client:
        assert client.get("/q/a").status_code == 204
        assert client.post("/q/b/claim").status_code == 204
        third = client.get("/q/c")
        assert third.status_code == 429 and third.json()["error"] == "too_many_queues"
        assert client.get("/q/a").status_code == 204  # known queues still work

# -- the command ------------------------------------------------------------------------------------

def test_bind_rules() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(WebError, match="MQLITE_WEB_TOKEN"):
            check_bind(host, None)
        check_bind(host, "s3cret")

def test_web_refuses_a_public_bind_without_a_token(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQLITE_WEB_TOKEN", raising=False)
    result = CliRunner().invoke(cli_app, ["web", "--host", "0.0.0.0", "--dsn", dsn])
    assert result.exit_code == 2
    assert "refusing to listen on '0.0.0.0' without a token" in result.output

def test_web_without_the_extra_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from mqlite.cli import main; sys.argv = ['mqlite', 'web']; main()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'mqlite[web]'" in lines[0] and "starlette" in lines[0]

def test_the_core_never_imports_the_web_packages() -> None:
    code = (
        "import sys, mqlite, mqlite.cli, mqlite.worker, mqlite.web\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'prometheus_client', "
        "'jinja2', 'httpx'})\n"
        "print(','.join(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""

def test_web_command_serves_and_stops_on_sigterm(server_dsn: str, dsn: str) -> None:
    mqlite.Queue(dsn).apply_schema()
    port = free_port()
    proc = start_web(dsn, port, env={"MQLITE_WEB_TOKEN": TOKEN})
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/q/jobs", body=b"over http")
        refused = conn.getresponse()
        assert refused.status == 401 and b"unauthorized" in refused.read()
        conn.request("POST", "/q/jobs", body=b"over http", headers=AUTH)
        r = conn.getresponse()
        assert r.status == 201, r.read()
        r.read()
        conn.request("GET", "/q/jobs?wait=1", headers=AUTH)
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"over http")
        # Listening on loopback, token or not, it answers only to loopback names (no DNS rebinding).
        conn.request("GET", "/stats", headers={"Host": f"evil.example:{port}"})
        r = conn.getresponse()
        assert (r.status, r.read()) == (421, b'{"error":"bad_host","message":"this server answers only to its own host names"}')
    finally:
        out = stop_web(proc)
    assert proc.returncode == 0, out
    assert "mqlite web on http://127.0.0.1:%d/" % port in out and TOKEN not in out

def test_web_command_with_an_unreachable_server_is_one_line_without_the_password() -> None:
    secret = "pa55-Secret-w0rd"
    result = CliRunner().invoke(cli_app, ["web", "--port", str(free_port()), "--dsn",
                                          f"mysql://mq:{secret}@127.0.0.1:1/nowhere?connect_timeout=1"])
    assert result.exit_code == 2 and "Unavailable" in result.output and secret not in result.output


def test_web_command_refuses_a_table_without_schema(dsn: str) -> None:
    result = CliRunner().invoke(cli_app, ["web", "--port", str(free_port()), "--dsn", dsn])
    assert result.exit_code == 2 and "mqlite schema apply" in result.output

