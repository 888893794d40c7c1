"""Property tests (Hypothesis) against the real server: any body round-trips byte for byte, and any
queue name, unique key or concurrency key is either accepted and round-trips or refused with
InvalidName, writing nothing.

Examples are derandomized (the same ones every run: a failure is a bug, never a fluke) and few
(the suite stays fast); `MQLITE_HYPOTHESIS_PROFILE=explore` runs many more, at random. Every
example goes to the server, so the deadline is a hang guard, not a speed check.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import mqlite
from mqlite.errors import Duplicate, InvalidBody, InvalidName, PayloadTooLarge
from mqlite.message import as_bytes
from mqlite.testing import ThrowawayServer

_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
          HealthCheck.large_base_example]
settings.register_profile("mqlite", max_examples=25, derandomize=True, database=None,
                          deadline=timedelta(seconds=60), suppress_health_check=_QUIET)
settings.register_profile("explore", max_examples=400, derandomize=False, database=None, deadline=None,
                          suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("MQLITE_HYPOTHESIS_PROFILE", "mqlite"))

# Bytes the driver escapes in a statement: a body made of them doubles in size on the wire.
ESCAPED = [b"\0", b"\\", b"'", b'"', b"\n", b"\r", b"\x1a"]


def _random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def bodies(max_size: int = 1 << 20) -> st.SearchStrategy[Any]:
    """Bytes of every kind and size up to `max_size`, and text (stored as UTF-8)."""
    return st.one_of(
        st.binary(max_size=min(max_size, 2048)),
        st.text(max_size=300),
        st.builds(_random_bytes, st.integers(0, max_size), st.integers(0, 2**32 - 1)),
        st.builds(lambda b, n: b * n, st.sampled_from(ESCAPED), st.integers(0, min(max_size, 1 << 17))),
        st.sampled_from([b"", b" ", b"\0", b"\xff" * 3, "é".encode(), b"\x00" * 255, b"x" * 65536]),
    )


def _stored(body: Any) -> bytes | None:
    """What the table keeps of `body`, or None if mqlite must refuse it (InvalidBody)."""
    try:
        return as_bytes(body)
    except InvalidBody:
        return None


def _count(q: mqlite.Queue) -> int:
    return sum(s.ready + s.delayed + s.claimed + s.failed for s in q.stats().queues.values())


@given(body=bodies())
def test_push_then_pop_round_trips_any_body(q: mqlite.Queue, body: Any) -> None:
    expected = _stored(body)
    if expected is None:
        with pytest.raises(InvalidBody):
            q.push("bodies", body)
        assert _count(q) == 0
        return
    new_id = q.push("bodies", body)
    m = q.pop("bodies")
    assert m is not None and m.id == new_id and m.body == expected


@given(body=bodies())
def test_push_then_claim_round_trips_any_body(q: mqlite.Queue, body: Any) -> None:
    expected = _stored(body)
    if expected is None:
        with pytest.raises(InvalidBody):
            q.push("bodies", body)
        return
    new_id = q.push("bodies", body)
    with q.claim("bodies") as m:
        assert m is not None and m.id == new_id and m.body == expected
    assert _count(q) == 0


@given(batch=st.lists(bodies(max_size=1 << 16), max_size=12))
def test_push_many_round_trips_every_body_in_order(q: mqlite.Queue, batch: list[Any]) -> None:
    expected = [_stored(b) for b in batch]
    if None in expected:
        with pytest.raises(InvalidBody):
            q.push_many("bodies", batch)
        assert _count(q) == 0  # one refused body: none of the batch is written
        return
    ids = q.push_many("bodies", batch)
    got = q.pop_many("bodies", max(1, len(batch)))
    assert [m.id for m in got] == ids and [m.body for m in got] == expected


def test_the_largest_bodies_round_trip_and_one_more_byte_is_refused() -> None:
    """The largest body that fits whatever its bytes (every byte escaped, twice its size on the
    wire) round-trips through push, push_many and claim; past what the packet holds, PayloadTooLarge
    is raised before anything is sent. On a server of its own with a 4 MB packet, so that the
    largest body is 2 MB (the suite's server allows 64 MB)."""
    with ThrowawayServer(extra_args=("--max-allowed-packet=4M",)) as server, mqlite.Queue(server.dsn) as q:
        q.apply_schema()
        q.push("warm", b"")  # the pool learns the server's max_allowed_packet
        packet = q._pool.server.max_allowed_packet
        assert packet == 4 << 20
        largest = (packet - 4096) // 2
        for body in (b"\0" * largest, _random_bytes(largest, 7)):
            new_id = q.push("big", body)
            assert q.pop("big").body == body
            (many_id,) = q.push_many("big", [body])
            with q.claim("big") as m:
                assert m.id == many_id > new_id and m.body == body
        with pytest.raises(PayloadTooLarge):
            q.push("big", b"\0" * (packet // 2 + 1))
        with pytest.raises(PayloadTooLarge):
            q.push_many("big", [b"ok", b"x" * packet])
        assert q.size("big") == 0 and q.stats().queues["big"].claimed == 0


# -- over HTTP -------------------------------------------------------------------------------------

MAX_BODY = 1 << 20  # the web API's default limit


@pytest.fixture
def client(q: mqlite.Queue) -> Any:
    pytest.importorskip("starlette", reason="the web extra is not installed")
    from starlette.testclient import TestClient

    from mqlite.web import create_app

    with TestClient(create_app(q, stats_ttl=0, lease_sweep=0.1), base_url="http://127.0.0.1") as c:
        yield c


@given(body=st.one_of(st.binary(max_size=2048),
                      st.builds(_random_bytes, st.integers(0, MAX_BODY + 4096), st.integers(0, 2**32 - 1))))
def test_http_push_then_pop_round_trips_any_body(client: Any, q: mqlite.Queue, body: bytes) -> None:
    pushed = client.post("/q/bodies", content=body, headers={"Content-Type": "application/octet-stream"})
    if len(body) > MAX_BODY:
        assert pushed.status_code == 413 and _count(q) == 0
        return
    assert pushed.status_code == 201, pushed.text
    got = client.get("/q/bodies")
    assert got.status_code == 200 and got.content == body
    assert got.headers["X-Mqlite-Id"] == str(pushed.json()["id"])


# -- names and keys --------------------------------------------------------------------------------

names = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=180, max_size=200),
    st.binary(max_size=60),
    st.sampled_from(["a", "a ", " a", "\0", "a\0", "\t", "ü", "😀" * 191, "x" * 191, "x" * 192, "a/b", "%s", "'"]),
    st.integers(), st.none(),
)


@given(name=names)
def test_any_queue_name_round_trips_or_is_refused_writing_nothing(q: mqlite.Queue, name: Any) -> None:
    try:
        new_id = q.push(name, b"x")
    except InvalidName:
        assert _count(q) == 0
        for verb in (q.pop, q.take, q.size, q.pause):
            with pytest.raises(InvalidName):
                verb(name)
        return
    stored = name.decode() if isinstance(name, bytes) else name
    assert q.size(name) == 1 and stored in q.stats().queues
    m = q.pop(name)
    assert m is not None and m.id == new_id and m.queue == stored
    assert q.pop(name) is None and _count(q) == 0


@given(first=names, second=names)
@example(first="a", second="a ")  # the server compares names with trailing spaces ignored
@example(first=b"a", second="a")
def test_two_accepted_queue_names_never_share_messages(q: mqlite.Queue, first: Any, second: Any) -> None:
    try:
        a = q.push(first, b"first")
        b = q.push(second, b"second")
    except InvalidName:
        for name in (first, second):  # the one that was accepted, if any
            try:
                q.purge(name)
            except InvalidName:
                pass
        assert _count(q) == 0
        return
    same = (first.decode() if isinstance(first, bytes) else first) == (
        second.decode() if isinstance(second, bytes) else second)
    got = [m.id for m in q.pop_many(first, 2)]
    assert got == ([a, b] if same else [a])
    if not same:
        assert [m.id for m in q.pop_many(second, 2)] == [b]


keys = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["k", "k ", " k", "\0", "K", "😀" * 191, "x" * 192, ""]),
    st.integers(), st.binary(max_size=10),
)


@given(key=keys, other=keys)
@example(key="k", other="k ")
@example(key="k", other="K")
def test_any_unique_key_round_trips_or_is_refused_writing_nothing(q: mqlite.Queue, key: Any, other: Any) -> None:
    try:
        new_id = q.push("keyed", b"x", unique_key=key)
    except InvalidName:
        assert _count(q) == 0
        return
    with pytest.raises(Duplicate) as again:
        q.push("keyed", b"y", unique_key=key)
    assert again.value.existing_id == new_id
    assert q.push("keyed", b"z", unique_key=key, if_exists="ignore") == new_id
    try:
        other_id = q.push("keyed", b"other", unique_key=other)
    except InvalidName:
        other_id = None
    except Duplicate:
        assert other == key  # a distinct accepted key never collides
        other_id = None
    (m, *rest) = q.pop_many("keyed", 3)
    assert m.id == new_id and m.unique_key == key and m.body == b"x"
    assert [r.id for r in rest] == ([] if other_id is None else [other_id])
    assert _count(q) == 0


@given(key=keys)
def test_any_concurrency_key_round_trips_or_is_refused_writing_nothing(q: mqlite.Queue, key: Any) -> None:
    try:
        new_id = q.push("capped", b"x", concurrency_key=key, max_running=1)
    except InvalidName:
        assert _count(q) == 0
        return
    with q.claim("capped") as m:
        assert m is not None and m.id == new_id and m.concurrency_key == key
    assert _count(q) == 0
