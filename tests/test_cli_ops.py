"""The operator's commands through typer's CliRunner, and push/consume as real processes."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mqlite
from mqlite.cli import app

from .conftest import rows
from .helpers import ROOT, read_line

runner = CliRunner()
TABLE = "mqlite_messages"
PASSWORD_DSN = "mysql://app:hunter2secret@127.0.0.1:1/db"


def invoke(*args: str, input: str | bytes | None = None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def one_red_line(result, fragment: str) -> None:
    """Exit 2, and stderr is one `mqlite: …` line naming `fragment`, without traceback or password."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mqlite: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output and "hunter2secret" not in result.output


def ready(admin, queue: str) -> list[bytes]:
    return [bytes(b) for (b,) in rows(admin, f"SELECT body FROM {TABLE} WHERE queue = %s AND owner = 0 AND available_at <= NOW(6) ORDER BY id",
                                        queue)]


def fail_once(q: mqlite.Queue, queue: str, body: str) -> int:
    """A message whose first failure makes it failed (max_attempts=1)."""
    new_id = q.push(queue, body, max_attempts=1)
    with pytest.raises(RuntimeError), q.claim(queue) as m:
        assert m is not None and m.id == new_id
        raise RuntimeError(f"broken {body}")
    return new_id


# -- schema ---------------------------------------------------------------------------------------


def test_schema_status_before_and_after_apply(dsn: str) -> None:
    before = invoke("schema", "status", "--dsn", dsn)
    assert before.exit_code == 0 and "no schema applied yet" in before.output and "pending: 001_messages" in before.output
    invoke("schema", "apply", "--dsn", dsn)
    after = json.loads(invoke("schema", "status", "--dsn", dsn, "--json").output)
    assert after["version"] >= 1 and after["pending"] == [] and after["applied"][0]["name"] == "messages"
    text = invoke("schema", "status", "--dsn", dsn).output
    assert f"schema version {after['version']}" in text and "pending: none" in text


# -- push and pop ---------------------------------------------------------------------------------


def test_push_body_stdin_and_file(q: mqlite.Queue, dsn: str, admin, tmp_path: Path) -> None:
    assert int(invoke("push", "mail", "as argument", "--dsn", dsn).output) > 0
    assert invoke("push", "mail", "-", "--dsn", dsn, input=b"from\x00stdin\n").exit_code == 0
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"first\n\nsecond\r\nthird")
    many = invoke("push", "mail", "--file", str(lines), "--dsn", dsn)
    assert many.exit_code == 0 and many.output.startswith("pushed 3 messages to mail (ids ")
    ids = json.loads(invoke("push", "mail", "--file", "-", "--dsn", dsn, "--json", input="x\ny\n").output)["ids"]
    assert len(ids) == 2 and ids[1] == ids[0] + 1
    assert ready(admin, "mail") == [b"as argument", b"from\x00stdin\n", b"first", b"second", b"third", b"x", b"y"]


def test_push_refuses_body_and_file_together(q: mqlite.Queue, dsn: str, tmp_path: Path) -> None:
    one_red_line(invoke("push", "mail", "x", "--file", str(tmp_path / "f"), "--dsn", dsn), "not both")
    one_red_line(invoke("push", "mail", "--file", str(tmp_path / "missing"), "--dsn", dsn), "cannot read")
    one_red_line(invoke("push", "mail", "x", "--delay", "soon", "--dsn", dsn), "not a duration")


def test_push_delay_and_unique_key(q: mqlite.Queue, dsn: str) -> None:
    assert invoke("push", "mail", "later", "--delay", "1h", "--dsn", dsn).exit_code == 0
    assert q.stats().queues["mail"].delayed == 1 and q.pop("mail") is None
    first = invoke("push", "orders", "o42", "--unique-key", "order-42", "--dsn", dsn)
    assert first.exit_code == 0
    one_red_line(invoke("push", "orders", "o42", "--unique-key", "order-42", "--dsn", dsn), "Duplicate")


def test_pop_raw_writes_the_bytes_as_they_are(q: mqlite.Queue, dsn: str) -> None:
    body = bytes(range(256))
    q.push("bin", body)
    q.push("bin", "text")
    raw = invoke("pop", "bin", "--raw", "--dsn", dsn)
    assert raw.exit_code == 0 and raw.stdout_bytes == body
    assert json.loads(invoke("pop", "bin", "--json", "--dsn", dsn).output)["body"] == "text"
    assert invoke("pop", "bin", "--raw", "--dsn", dsn).exit_code == 1


# -- peek and stats -------------------------------------------------------------------------------


def test_peek_shows_the_oldest_messages_without_taking_them(q: mqlite.Queue, dsn: str) -> None:
    q.push_many("mail", ["hello world", "line\nbreak", "x" * 500])
    table = invoke("peek", "mail", "--dsn", dsn)
    assert table.exit_code == 0
    assert "hello world" in table.output and "line\\nbreak" in table.output and "xxxx…" in table.output
    listed = json.loads(invoke("peek", "mail", "--limit", "2", "--json", "--dsn", dsn).output)
    assert [m["body"] for m in listed] == ["hello world", "line\nbreak"]
    assert listed[0]["attempts"] == 0 and listed[0]["owner"] == 0
    assert q.size("mail") == 3
    assert invoke("peek", "empty", "--dsn", dsn).output.strip() == "empty: no pending messages"


def test_peek_says_when_a_delayed_message_is_due(q: mqlite.Queue, dsn: str) -> None:
    q.push("mail", "later", delay=3600)
    q.push("mail", "now")
    table = invoke("peek", "mail", "--dsn", dsn)
    cells = {row[-1]: row for row in (
        [cell.strip() for cell in line.strip("│").split("│")] for line in table.output.splitlines() if "│" in line
    )}
    assert cells["now"][2] == "now", table.output
    due = cells["later"][2]
    assert due.startswith("in ") and due.endswith("m") and 55 < float(due[3:-1]) <= 60, table.output


def test_peek_failed_shows_the_last_error(q: mqlite.Queue, dsn: str) -> None:
    fail_once(q, "mail", "poison")
    table = invoke("peek", "mail", "--failed", "--dsn", dsn)
    assert table.exit_code == 0 and "poison" in table.output and "broken" in table.output
    (listed,) = json.loads(invoke("peek", "mail", "--failed", "--json", "--dsn", dsn).output)
    assert listed["attempts"] >= 1 and "broken poison" in listed["last_error"]


def test_stats_one_queue_table_and_json(q: mqlite.Queue, dsn: str) -> None:
    q.push_many("mail", ["a", "b"])
    q.push("sms", "c")
    table = invoke("stats", "--dsn", dsn)
    assert table.exit_code == 0 and "mail" in table.output and "sms" in table.output and "oldest ready" in table.output
    data = json.loads(invoke("stats", "mail", "--json", "--dsn", dsn).output)
    assert list(data["queues"]) == ["mail"] and data["queues"]["mail"]["ready"] == 2
    assert data["queues"]["mail"]["claimed"] == 0 and data["sees_all_connections"] is True
    unknown = json.loads(invoke("stats", "nope", "--json", "--dsn", dsn).output)["queues"]["nope"]
    assert unknown["ready"] == 0 and unknown["oldest_ready"] is None


def test_stats_watch_refreshes_count_times(q: mqlite.Queue, dsn: str) -> None:
    q.push("mail", "a")
    tables = invoke("stats", "--watch", "0.1", "--count", "2", "--dsn", dsn)
    assert tables.exit_code == 0 and tables.output.count("every 0.1s") == 2
    lines = invoke("stats", "--watch", "0.1", "--count", "3", "--json", "--dsn", dsn).output.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["queues"]["mail"]["ready"] == 1 for line in lines)


def test_stats_watch_stops_on_ctrl_c(q: mqlite.Queue, dsn: str) -> None:
    # A shell without job control starts background commands with SIGINT ignored, and children
    # inherit that (Python then installs no KeyboardInterrupt handler): give this one Ctrl-C back.
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqlite", "stats", "--watch", "0.1", "--json", "--dsn", dsn], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert "queues" in json.loads(read_line(proc))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


# -- purge, recover, retry ------------------------------------------------------------------------


def test_purge_asks_first_unless_yes(q: mqlite.Queue, dsn: str) -> None:
    q.push_many("mail", ["a", "b", "c"])
    declined = invoke("purge", "mail", "--dsn", dsn, input="n\n")
    assert declined.exit_code == 1 and q.size("mail") == 3
    assert "Delete the ready messages of queue 'mail'" in declined.stderr
    accepted = invoke("purge", "mail", "--dsn", dsn, input="y\n")
    assert accepted.exit_code == 0 and "purged 3 ready messages of mail" in accepted.stdout
    q.push("mail", "d")
    assert json.loads(invoke("purge", "mail", "--yes", "--json", "--dsn", dsn).output) == {
        "queue": "mail", "purged": 1, "what": "ready"}
    one_red_line(invoke("purge", "mail", "--older-than", "7d", "--yes", "--dsn", dsn), "add --failed")
    one_red_line(invoke("purge", "mail", "--failed", "--older-than", "a week", "--yes", "--dsn", dsn),
                 "not a duration")


def test_purge_failed_older_than(q: mqlite.Queue, dsn: str) -> None:
    fail_once(q, "mail", "poison")
    kept = invoke("purge", "mail", "--failed", "--older-than", "7d", "--yes", "--dsn", dsn)
    assert kept.exit_code == 0 and "purged 0 failed messages" in kept.output
    gone = invoke("purge", "mail", "--failed", "--yes", "--dsn", dsn)
    assert gone.exit_code == 0 and "purged 1 failed message of mail" in gone.output


def test_recover_says_how_many_came_back_and_why(q: mqlite.Queue, dsn: str, admin) -> None:
    q.push_many("mail", ["a", "b"])
    # A claim by a session id that does not exist, made a second ago: its consumer died.
    admin.cursor().execute(
        f"UPDATE {TABLE} SET owner = 4000000000, owner_node = CRC32(CONCAT(@@hostname, ':', @@port)), "
        "claimed_at = NOW(6) - INTERVAL 1 SECOND, lease_until = NOW(6) + INTERVAL 1 HOUR WHERE queue = 'mail'"
    )
    text = invoke("recover", "--dsn", dsn)
    assert text.exit_code == 0
    assert text.output.startswith("recovered 2 messages (2 dead owner, 0 before restart, 0 lease expired)")
    data = json.loads(invoke("recover", "--json", "--dsn", dsn).output)
    assert data == {"recovered": 0, "dead_owner": 0, "before_restart": 0, "lease_expired": 0,
                    "sees_all_connections": True}
    assert q.size("mail") == 2


def test_retry_needs_a_choice_and_a_known_queue(q: mqlite.Queue, dsn: str) -> None:
    q.push("mail", "a")
    one_red_line(invoke("retry", "mail", "--dsn", dsn), "--id N")
    one_red_line(invoke("retry", "mail", "--id", "1", "--all", "--dsn", dsn), "--id N")
    one_red_line(invoke("retry", "nope", "--all", "--dsn", dsn), "UnknownQueue: no message of queue 'nope'")


def test_retry_puts_failed_messages_back(q: mqlite.Queue, dsn: str) -> None:
    first = fail_once(q, "mail", "one")
    fail_once(q, "mail", "two")
    by_id = invoke("retry", "mail", "--id", str(first), "--dsn", dsn)
    assert by_id.exit_code == 0 and by_id.output.startswith("1 failed message of mail back to ready")
    assert [m.id for m in q.peek("mail")] == [first]
    assert json.loads(invoke("retry", "mail", "--all", "--json", "--dsn", dsn).output)["retried"] == 1
    assert q.size("mail") == 2


# -- consume and worker ---------------------------------------------------------------------------

# Fails for bodies starting with "bad" (stderr says why); records what it saw for the others.
SCRIPT = (
    'body=$(cat); case "$body" in bad*) echo "trace line" >&2; echo "cannot do $body" >&2; exit 3;; esac; '
    'echo "$MQLITE_MESSAGE_ID $MQLITE_QUEUE $MQLITE_ATTEMPT $body" >> "$SEEN"'
)


def push_jobs(q: mqlite.Queue, bodies: list[str]) -> list[int]:
    return [q.push("jobs", b, max_attempts=1) for b in bodies]  # failed at once, to look at


def check_failures(q: mqlite.Queue, admin, failed_bodies: list[str]) -> None:
    failed = q.peek("jobs", failed=True)
    assert sorted(m.text() for m in failed) == sorted(failed_bodies)
    for m in failed:
        assert f"cannot do {m.text()}" in (m.last_error or "") and "status 3" in (m.last_error or "")
    assert q.size("jobs") == 0


def test_consume_acknowledges_successes_and_records_failures(
    q: mqlite.Queue, dsn: str, admin, tmp_path: Path, monkeypatch
) -> None:
    seen = tmp_path / "seen.txt"
    monkeypatch.setenv("SEEN", str(seen))
    ids = push_jobs(q, ["ok1", "bad1", "ok2", "bad2", "ok3"])
    result = invoke("consume", "jobs", "--exec", SCRIPT, "--dsn", dsn)
    assert result.exit_code == 1
    assert "jobs: 3 acknowledged, 2 failed (queue empty)" in result.stdout
    assert "cannot do bad1" in result.stderr  # the command's stderr is passed through, and logged
    assert f"message {ids[1]} of queue 'jobs' failed (attempt 1): CommandFailed: command exited with status 3: " \
           "trace line | cannot do bad1" in result.stderr
    assert seen.read_text().splitlines() == [f"{ids[0]} jobs 1 ok1", f"{ids[2]} jobs 1 ok2", f"{ids[4]} jobs 1 ok3"]
    check_failures(q, admin, ["bad1", "bad2"])


def test_consume_exit_0_limits_and_empty_queue(q: mqlite.Queue, dsn: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEEN", str(tmp_path / "seen.txt"))
    empty = invoke("consume", "jobs", "--exec", SCRIPT, "--json", "--dsn", dsn)
    assert empty.exit_code == 0 and json.loads(empty.stdout)["stopped"] == "empty"
    q.push_many("jobs", ["a", "b", "c"])
    two = invoke("consume", "jobs", "--exec", SCRIPT, "--max-messages", "2", "--dsn", dsn)
    assert two.exit_code == 0 and "2 acknowledged, 0 failed (--max-messages reached)" in two.stdout
    none = invoke("consume", "jobs", "--exec", SCRIPT, "--max-seconds", "0", "--dsn", dsn)
    assert none.exit_code == 0 and "0 acknowledged" in none.stdout and q.size("jobs") == 1


def test_worker_command_runs_a_python_handler(q: mqlite.Queue, dsn: str, admin, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "self_stopping.py").write_text(
        "import os, signal\nseen = []\n"
        "def handle(message):\n"
        "    seen.append(message.text())\n"
        "    if len(seen) == 3:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)  # as systemd would\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    q.push_many("low", ["c"])
    q.push_many("high", ["a", "b"])
    result = invoke("worker", "high", "low", "--handler", "self_stopping:handle", "--concurrency", "1", "--dsn", dsn)
    assert result.exit_code == 0, result.output
    import self_stopping  # type: ignore[import-not-found]

    assert self_stopping.seen == ["a", "b", "c"]
    assert "SIGTERM received" in result.stderr and "stopped (signal): 3 processed, 0 failed" in result.stderr
    assert rows(admin, f"SELECT COUNT(*) FROM {TABLE}") == [(0,)]


def test_worker_command_refuses_a_bad_handler(q: mqlite.Queue, dsn: str) -> None:
    one_red_line(invoke("worker", "jobs", "--handler", "nosuchmodule:handle", "--dsn", dsn), "No module named")
    one_red_line(invoke("worker", "jobs", "--handler", "json", "--dsn", dsn), "module:function")
    one_red_line(invoke("worker", "jobs", "--handler", "json:nope", "--dsn", dsn), "AttributeError")
    one_red_line(invoke("worker", "jobs", "--handler", "json:loads", "--log-level", "loud", "--dsn", dsn), "log-level")


# -- real processes -------------------------------------------------------------------------------


def mqlite_process(*args: str, input: str | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "mqlite", *args], input=input, capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_push_as_a_process_from_stdin_and_the_environment(q: mqlite.Queue, dsn: str, admin) -> None:
    one = mqlite_process("push", "mail", input="piped body", env={"MQLITE_DSN": dsn})
    assert one.returncode == 0 and int(one.stdout) > 0
    many = mqlite_process("push", "mail", "--file", "-", "--json", "--dsn", dsn, input="a\nb\nc\n")
    assert many.returncode == 0 and len(json.loads(many.stdout)["ids"]) == 3
    assert ready(admin, "mail") == [b"piped body", b"a", b"b", b"c"]


def test_consume_as_a_process_with_failing_commands(q: mqlite.Queue, dsn: str, admin, tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    push_jobs(q, ["bad0", "ok1", "ok2", "bad3"])
    done = mqlite_process("consume", "jobs", "--exec", SCRIPT, "--json", env={"MQLITE_DSN": dsn, "SEEN": str(seen)})
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {"queue": "jobs", "processed": 2, "failed": 2, "abandoned": 0,
                                       "stopped": "empty"}
    assert [line.split()[-1] for line in seen.read_text().splitlines()] == ["ok1", "ok2"]
    assert done.stderr.count("CommandFailed") == 2 and "Traceback" not in done.stderr
    check_failures(q, admin, ["bad0", "bad3"])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["consume", "jobs", "--exec", "true", "--dsn", PASSWORD_DSN], "Unavailable: cannot connect to 127.0.0.1:1"),
        (["worker", "jobs", "--handler", "json:loads", "--dsn", PASSWORD_DSN], "Unavailable"),
        (["stats", "--watch", "1", "--dsn", PASSWORD_DSN], "Unavailable"),
        (["recover", "--dsn", PASSWORD_DSN], "Unavailable"),
        (["schema", "status", "--dsn", "mysql://app:hunter2secret@127.0.0.1:1"], "ConfigError"),
    ],
)
def test_bad_dsn_is_one_red_line(args: list[str], fragment: str) -> None:
    done = mqlite_process(*args)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mqlite: ") and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr and "hunter2secret" not in done.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_command_whose_first_connection_is_refused_says_so_at_once() -> None:
    port = _closed_port()
    started = time.monotonic()
    done = mqlite_process("stats", "--dsn", f"mysql://app:hunter2secret@127.0.0.1:{port}/x")
    took = time.monotonic() - started
    assert done.returncode == 2 and f"Unavailable: cannot connect to 127.0.0.1:{port}" in done.stderr, done.stderr
    assert "no connection to it has succeeded yet" in done.stderr
    assert took < 4, took  # about a second of retries and the interpreter's start, not retry_for's 10 s


def test_wait_keeps_retrying_a_refused_first_connection_that_long() -> None:
    port = _closed_port()
    started = time.monotonic()
    done = mqlite_process("recover", "--wait", "2.5", "--dsn", f"mysql://app@127.0.0.1:{port}/x")
    took = time.monotonic() - started
    assert done.returncode == 2 and f"cannot connect to 127.0.0.1:{port}" in done.stderr, done.stderr
    assert 2.5 <= took < 10, took


@pytest.mark.parametrize(
    "args",
    [
        ["consume", "jobs", "--exec", "true"],
        ["worker", "jobs", "--handler", "json:loads"],
        ["peek", "jobs"],
        ["stats"],
        ["purge", "jobs", "--yes"],
        ["retry", "jobs", "--all"],
        ["recover"],
    ],
)
def test_missing_schema_is_one_red_line(args: list[str], dsn: str) -> None:
    done = mqlite_process(*args, env={"MQLITE_DSN": dsn})
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "mqlite schema apply" in lines[0], done.stderr


def test_unknown_queue_in_retry_is_one_red_line(q: mqlite.Queue, dsn: str) -> None:
    q.push("mail", "a")
    done = mqlite_process("retry", "nope", "--all", env={"MQLITE_DSN": dsn})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        "mqlite: UnknownQueue: no message of queue 'nope' in table mqlite_messages (queues there: mail)"
    )


def test_every_help_reads_well() -> None:
    top = invoke("--help")
    assert top.exit_code == 0
    commands = ["push", "pop", "peek", "stats", "purge", "retry", "recover", "consume", "worker", "bench", "schema"]
    for name in commands:
        assert name in top.output
    for args in [[c] for c in commands if c != "schema"] + [["schema", "apply"], ["schema", "status"]]:
        page = invoke(*args, "--help")
        assert page.exit_code == 0 and "Usage:" in page.output and "--dsn" in page.output, args
    assert "MQLITE_ATTEMPT" in invoke("consume", "--help").output
    assert "module:function" in invoke("worker", "--help").output


def test_the_readme_cron_line_and_systemd_unit_parse() -> None:
    text = (ROOT / "README.md").read_text()
    cron = next(ln for ln in text.splitlines() if ln.startswith("* * * * *"))
    exec_start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    # The options parse; what fails here is the server (cron) or the handler module (unit), as it should.
    for line, fragment in ((cron, "Unavailable"), (exec_start, "cannot load handler 'app.tasks:handle'")):
        words = shlex.split(line)
        args = words[next(i for i, w in enumerate(words) if w.endswith("/mqlite")) + 1 :]
        one_red_line(invoke(*args, "--dsn", PASSWORD_DSN), fragment)


def test_pause_and_resume(q: mqlite.Queue, dsn: str) -> None:
    q.push("mail", b"x")
    assert invoke("pause", "mail", "--dsn", dsn).output == "mail: paused\n"
    assert q.is_paused("mail") and q.pop("mail") is None
    assert json.loads(invoke("stats", "--json", "--dsn", dsn).output)["queues"]["mail"]["paused"] is True
    assert json.loads(invoke("resume", "mail", "--json", "--dsn", dsn).output) == {"queue": "mail", "paused": False}
    assert q.pop("mail").body == b"x"
