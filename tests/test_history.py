"""Per-queue history: a row for every way a message ends, replay, pruning, and refusals."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

import mqlite
import mqlite.history
from mqlite.cli import app
from mqlite.errors import ConfigError
from mqlite.failure import Backoff

from .conftest import rows
from .helpers import wait_for

runner = CliRunner()


def outcomes(q: mqlite.Queue, queue: str = "jobs") -> list[tuple[bytes, str]]:
    return sorted((e.body, e.outcome) for e in q.history(queue, limit=1000))


def test_every_way_a_message_ends_leaves_one_row(q: mqlite.Queue, admin) -> None:
    q.keep_history("jobs", days=3)
    q.push_many("jobs", [b"claimed", b"many-1", b"many-2", b"popped"])
    with q.claim("jobs") as m:
        assert m.body == b"claimed"
    assert q.ack_many(q.take_many("jobs", 2)) == 2
    assert q.pop("jobs").body == b"popped"
    q.push("jobs", b"nacked")
    for _ in range(q.max_attempts):  # nacked until no attempt is left
        assert q.nack(q.take("jobs"), RuntimeError("boom"), delay=0)
    q.push("jobs", b"failed")
    q.fail(q.take("jobs"), "given up")
    purged, cancelled = q.push_many("jobs", [b"purged", b"cancelled"])
    assert q.cancel("jobs", cancelled) == "cancelled (was ready)"
    assert q.purge("jobs") == 1
    assert q.purge_failed("jobs") == 2
    found = outcomes(q)
    assert found == sorted([
        (b"claimed", "acked"), (b"many-1", "acked"), (b"many-2", "acked"), (b"popped", "popped"),
        (b"nacked", "failed"), (b"failed", "failed"), (b"purged", "purged"), (b"cancelled", "cancelled"),
        (b"nacked", "purged"), (b"failed", "purged"),
    ]), found
    nacked = q.history("jobs", outcome="failed", limit=10)
    by_body = {e.body: e for e in nacked}
    assert by_body[b"nacked"].attempts == q.max_attempts and "boom" in (by_body[b"nacked"].last_error or "")
    assert by_body[b"failed"].attempts == 1 and by_body[b"failed"].last_error == "given up"
    acked = q.history("jobs", outcome="acked", limit=1)[0]
    assert acked.first_claimed_at is not None and acked.first_claimed_at >= acked.created_at
    assert acked.finished_at >= acked.first_claimed_at and acked.duration is not None and acked.duration >= 0
    assert acked.worker and acked.worker.endswith(":" + str(__import__("os").getpid()))
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_a_queue_without_history_writes_none_and_a_setting_turned_off_elsewhere_holds(
    q: mqlite.Queue, dsn: str, admin
) -> None:
    q.push("plain", b"x")
    assert q.pop("plain") is not None
    q.keep_history("jobs")
    q.push_many("jobs", [b"a", b"b"])
    assert q.pop("jobs").body == b"a"
    other = mqlite.Queue(dsn)
    other.keep_history("jobs", None)  # q's cached setting still says on, for up to 5 s
    assert q._history.on("jobs")
    assert q.pop("jobs").body == b"b"
    other.close()
    assert rows(admin, "SELECT queue, outcome, body FROM mqlite_history") == [("jobs", "popped", b"a")]


def test_an_ack_in_the_callers_transaction_records_in_it(q: mqlite.Queue, dsn: str, admin) -> None:
    import MySQLdb

    from mqlite.config import parse_dsn

    q.keep_history("jobs")
    q.push_many("jobs", [b"rolled back", b"committed"])
    conn = MySQLdb.connect(**parse_dsn(dsn).connect_kwargs())
    m = q.take("jobs")
    q.ack(m, connection=conn)
    conn.rollback()
    assert q.history("jobs") == []
    q.ack(q.take("jobs"), connection=conn)
    conn.commit()
    conn.close()
    assert [e.body for e in q.history("jobs")] == [b"committed"]


def test_replay_of_failed_messages_pushes_copies(q: mqlite.Queue) -> None:
    q.keep_history("jobs")
    q.push_many("jobs", [b"ok", b"bad-1", b"bad-2"])
    for _ in range(3):
        with q.claim("jobs") as m:
            if m.body != b"ok":
                m.fail("broken")
    ids = q.replay("jobs", since=timedelta(hours=1), outcome="failed", to="again")
    assert len(ids) == 2
    assert [m.body for m in q.pop_many("again", 10)] == [b"bad-1", b"bad-2"]
    assert [m.body for m in q.pop_many("jobs", 10)] == []  # the failed originals stay failed
    assert len(q.replay("jobs", since=3600, outcome="succeeded")) == 1 and q.pop("jobs").body == b"ok"
    assert q.replay("jobs", since=0) == []  # nothing finished in the future


def test_pruning_deletes_rows_past_the_queues_days_in_housekeeping(dsn: str, admin, monkeypatch) -> None:
    monkeypatch.setattr(mqlite.history, "PRUNE_SLICE", 100)
    q = mqlite.Queue(dsn, recover_every=0.01, backoff=Backoff())
    q.apply_schema()
    q.keep_history("jobs", days=2)
    q.keep_history("other", days=30)
    cur = admin.cursor()
    old = ("INSERT INTO mqlite_history (table_name, queue, finished_at, id, outcome, attempts, created_at, body) "
           "VALUES ('mqlite_messages', %s, NOW(6) - INTERVAL %s DAY - INTERVAL %s MICROSECOND, %s, 'acked', 1, "
           "NOW(6) - INTERVAL 40 DAY, 'x')")
    # More than two slices past 2 days, some rows within them, and a queue keeping longer.
    cur.executemany(old, [("jobs", 3 if i < 1_100 else 1, i, i + 1) for i in range(1_200)])
    cur.execute(old, ("other", 3, 0, 1))
    admin.commit()
    assert q.pop("jobs") is None  # an idle consumer: recovery and pruning run
    assert rows(admin, "SELECT queue, COUNT(*) FROM mqlite_history GROUP BY queue ORDER BY queue") == [
        ("jobs", 100), ("other", 1)]
    assert q.prune_history() == 0
    q.close()


def test_bad_input_is_refused_with_typed_errors(q: mqlite.Queue, dsn: str) -> None:
    for days in (0, -1, "7", 7.5, True, 70_000):
        with pytest.raises(ConfigError):
            q.keep_history("jobs", days)  # type: ignore[arg-type]
    with pytest.raises(mqlite.errors.InvalidName):
        q.keep_history("", 7)
    for options in ({"outcome": "won"}, {"outcome": 5}, {"outcome": [["acked"]]}, {"since": -1}, {"since": "1h"}, {"limit": 0}):
        with pytest.raises(ConfigError):
            q.history("jobs", **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        q.replay("jobs", since=3600, outcome="nope")
    done = runner.invoke(app, ["history", "jobs", "--outcome", "won", "--dsn", dsn])
    assert done.exit_code == 2 and "ConfigError" in done.output and len(done.output.strip().splitlines()) == 1
    done = runner.invoke(app, ["replay", "jobs", "--since", "soon", "--dsn", dsn])
    assert done.exit_code == 2 and "UsageError" in done.output


def test_cli_history_enable_show_json_and_replay(q: mqlite.Queue, dsn: str) -> None:
    done = runner.invoke(app, ["history", "enable", "jobs", "--days", "3", "--dsn", dsn])
    assert done.exit_code == 0 and "kept 3 days" in done.output
    assert q.history_days("jobs") == 3
    q.push("jobs", b"payload")
    with q.claim("jobs") as m:
        m.fail("nope")
    done = runner.invoke(app, ["history", "jobs", "--outcome", "failed", "--json", "--dsn", dsn])
    entries = json.loads(done.output)["history"]
    assert done.exit_code == 0 and [(e["body"], e["outcome"], e["last_error"]) for e in entries] == [
        ("payload", "failed", "nope")]
    done = runner.invoke(app, ["history", "jobs", "--dsn", dsn])
    assert done.exit_code == 0 and "failed" in done.output
    done = runner.invoke(app, ["replay", "jobs", "--since", "1h", "--outcome", "failed", "--to", "fixed",
                               "--dsn", dsn])
    assert done.exit_code == 0 and "replayed 1 message onto fixed" in done.output
    assert q.pop("fixed").body == b"payload"
    done = runner.invoke(app, ["replay", "jobs", "--since", "1h", "--json", "--dsn", dsn])  # failed by default
    assert done.exit_code == 0 and len(json.loads(done.output)["ids"]) == 1
    done = runner.invoke(app, ["replay", "jobs", "--since", "1h", "--outcome", "succeeded", "--dsn", dsn])
    assert done.exit_code == 0 and "replayed 0 messages" in done.output
    done = runner.invoke(app, ["history", "disable", "jobs", "--dsn", dsn])
    q._history.invalidate()  # else seen within ending.SETTINGS_TTL
    assert done.exit_code == 0 and q.history_days("jobs") is None


def test_http_history_and_the_status_page_list(q: mqlite.Queue) -> None:
    from starlette.testclient import TestClient

    from mqlite.web import create_app

    q.keep_history("jobs")
    q.push("jobs", b"seen on the page")
    assert q.pop("jobs") is not None
    with TestClient(create_app(q), base_url="http://127.0.0.1") as client:
        got = client.get("/q/jobs/history?outcome=popped")
        assert got.status_code == 200 and got.json()["history_days"] == 7
        assert [m["body_preview"] for m in got.json()["messages"]] == ["seen on the page"]
        assert client.get("/q/jobs/history?outcome=won").status_code == 400
        assert "seen on the page" in client.get("/").text


def test_claims_recovery_gives_up_are_recorded(q: mqlite.Queue, admin) -> None:
    q.keep_history("jobs")
    out_of_attempts = q.push("jobs", b"dies", max_attempts=1)
    cancelling = q.push("jobs", b"cancelled, then dies")
    held = q.take_many("jobs", 2)
    assert {m.id for m in held} == {out_of_attempts, cancelling}
    q.cancel("jobs", cancelling)
    for (owner,) in rows(admin, "SELECT DISTINCT owner FROM mqlite_messages WHERE owner <> 0"):
        admin.cursor().execute(f"KILL {int(owner)}")  # the claim session dies with its claims
    back: list[int] = []  # the KILL takes effect a moment later: until then the session still looks alive
    wait_for(lambda: sum(back.append(q.recover().dead_owner) or back) >= 2, what="recovery of the killed claims")
    assert sum(back) == 2
    assert outcomes(q) == [(b"cancelled, then dies", "cancelled"), (b"dies", "failed")]
    assert all("owner session gone" in (e.last_error or "") for e in q.history("jobs"))
    assert len(q.peek("jobs", failed=True)) == 2  # both stay failed in the table, not retried


def test_a_popped_message_given_back_loses_its_history_row(q: mqlite.Queue, dsn: str) -> None:
    q.keep_history("jobs")
    q.push("jobs", b"back")
    m = q.pop("jobs")
    assert [e.outcome for e in q.history("jobs")] == ["popped"]
    q.give_back([m])  # its caller never got it: back in the table, same id, not ended
    assert q.history("jobs") == [] and q.pop("jobs").id == m.id
    assert [e.id for e in q.history("jobs")] == [m.id]
    done = runner.invoke(app, ["history", "enable", "--dsn", dsn])
    assert done.exit_code == 2 and "give the queue" in done.output


def test_without_history_the_hot_path_runs_the_plain_statements(q: mqlite.Queue, monkeypatch) -> None:
    import mqlite.ending
    import mqlite.protocol

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("a history statement group ran for a queue without history")

    for module, name in ((mqlite.ending, "ack_many"), (mqlite.ending, "fail"), (mqlite.protocol, "group")):
        monkeypatch.setattr(module, name, refused)
    q.push_many("plain", [b"a", b"b", b"c", b"d"])
    with q.claim("plain"):
        pass
    assert q.ack_many(q.take_many("plain", 1)) == 1
    assert q.pop("plain").body == b"c"
    q.fail(q.take("plain"), "no")
    assert q._history.all() == {}  # one settings read served all of them


def test_first_claimed_at_is_the_first_claims_time(q: mqlite.Queue) -> None:
    q.keep_history("jobs")
    q.push("jobs", b"twice")
    first = q.take("jobs")
    q.nack(first, "again", delay=0)
    second = q.take("jobs")
    assert q.ack(second)
    (entry,) = q.history("jobs")
    assert entry.first_claimed_at == first.claimed_at and second.claimed_at > first.claimed_at
    assert entry.attempts == 2 and entry.last_error == "again"
