"""mqlite.contrib.django with real Django (its MySQL backend over mysqlclient) on the real server:
pushes that join transaction.atomic(), settings, `migrate`, and the management commands."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import mqlite
from mqlite import schema
from mqlite.config import parse_dsn

from .conftest import admin_connection, rows
from .helpers import ROOT

SETTINGS = "tests.djangoapp.settings"


@pytest.fixture(scope="session")
def django_dsn(server_dsn: str) -> Iterator[str]:
    """Django configured in this process, once, on a database of its own with `migrate` run."""
    name = f"mqlite_t_django_{uuid.uuid4().hex[:8]}"
    admin = admin_connection(server_dsn)
    admin.cursor().execute(f"CREATE DATABASE `{name}`")
    dsn = parse_dsn(server_dsn).with_database(name).url()
    os.environ["MQLITE_TEST_DJANGO_DSN"] = dsn
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    # Settings are loaded now; later subprocesses of other tests must not inherit a Django project
    # (Celery, for one, sets Django up in its workers when DJANGO_SETTINGS_MODULE is set).
    del os.environ["MQLITE_TEST_DJANGO_DSN"], os.environ["DJANGO_SETTINGS_MODULE"]
    try:
        yield dsn
    finally:
        from django.db import connections

        from mqlite.contrib.django.queues import forget_queue

        forget_queue()
        connections.close_all()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture
def dj(django_dsn: str) -> Iterator[Any]:
    """A clean slate in the Django database; yields an admin connection to it."""
    conn = admin_connection(django_dsn)
    for table in ("shop_order", "shop_receipt", "mqlite_messages", "mqlite_keys"):
        conn.cursor().execute(f"DELETE FROM {table}")
    yield conn
    conn.close()


def place_order(ref: str, *, fail: bool = False) -> None:
    """A view's work: write the order and enqueue its receipt, in one transaction."""
    from django.db import transaction

    from mqlite.contrib.django import queue
    from tests.djangoapp.shop.models import Order

    with transaction.atomic():
        Order.objects.create(ref=ref)
        queue.push("receipts", f"receipt for {ref}")
        if fail:
            raise RuntimeError("the view failed after pushing")


def test_a_committed_view_stores_the_order_and_its_message(dj: Any) -> None:
    place_order("A-1")
    assert rows(dj, "SELECT ref FROM shop_order") == [("A-1",)]
    assert rows(dj, "SELECT body FROM mqlite_messages") == [(b"receipt for A-1",)]


def test_a_rolled_back_view_stores_neither(dj: Any) -> None:
    with pytest.raises(RuntimeError):
        place_order("B-1", fail=True)
    assert rows(dj, "SELECT COUNT(*) FROM shop_order") == [(0,)]
    assert rows(dj, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_inside_atomic_the_message_is_invisible_until_the_commit(dj: Any) -> None:
    from django.db import transaction

    from mqlite.contrib.django import queue

    with transaction.atomic():
        queue.push("receipts", "pending")
        queue.push_many("receipts", ["one", "two"])
        assert rows(dj, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    assert rows(dj, "SELECT COUNT(*) FROM mqlite_messages") == [(3,)]


def test_a_rolled_back_savepoint_takes_its_push_with_it(dj: Any) -> None:
    from django.db import transaction

    from mqlite.contrib.django import queue
    from tests.djangoapp.shop.models import Order

    with transaction.atomic():
        Order.objects.create(ref="C-1")
        queue.push("receipts", "outer")
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                queue.push("receipts", "inner")
                raise RuntimeError
    assert rows(dj, "SELECT body FROM mqlite_messages") == [(b"outer",)]


def test_outside_atomic_the_push_uses_mqlites_own_connection(dj: Any) -> None:
    from django.db import connection

    from mqlite.contrib.django import queue

    connection.close()
    queue.push("receipts", "at once")
    assert connection.connection is None  # Django's connection was never opened for it
    assert rows(dj, "SELECT body FROM mqlite_messages") == [(b"at once",)]


def test_a_plain_queue_joins_django_given_its_connection(dj: Any, django_dsn: str) -> None:
    from django.db import connection, transaction

    with mqlite.Queue(django_dsn) as q:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                q.push("receipts", "rolled back", connection=connection)
                raise RuntimeError
        with transaction.atomic():
            q.push("receipts", "kept", connection=connection)
        q.push("receipts", "autocommit", connection=connection)  # outside atomic: commits at once
    assert [b for (b,) in rows(dj, "SELECT body FROM mqlite_messages ORDER BY id")] == [b"kept", b"autocommit"]


def test_a_keyed_push_is_promoted_when_django_commits(dj: Any) -> None:
    from django.db import transaction
    from django.test import override_settings

    from mqlite.contrib.django import get_queue

    with override_settings(MQLITE={"OPTIONS": {"recover_every": 0}}):  # no housekeeping
        q = get_queue()
        assert q.recover_every == 0
        with transaction.atomic():
            new_id = q.push("exports", "export", concurrency_key="user:7")
        message = q.take("exports")
        assert message is not None and message.id == new_id
    assert get_queue().recover_every != 0  # built again from the restored settings


def test_a_push_in_a_transaction_doomed_by_an_error_is_refused(dj: Any) -> None:
    from django.db import IntegrityError, transaction
    from django.db.transaction import TransactionManagementError

    from mqlite.contrib.django import queue
    from tests.djangoapp.shop.models import Order

    with transaction.atomic():
        Order.objects.create(ref="D-1")
        try:
            Order.objects.create(ref="D-1")  # caught inside the same atomic block: Django will roll back
        except IntegrityError:
            pass
        with pytest.raises(TransactionManagementError):
            queue.push("receipts", "never")
        transaction.set_rollback(True)
    assert rows(dj, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]


def test_an_ack_inside_atomic_commits_with_the_handlers_writes(dj: Any) -> None:
    from django.db import transaction

    from mqlite.contrib.django import queue
    from tests.djangoapp.shop.models import Order

    queue.push_many("jobs", ["kept", "undone"])
    kept, undone = queue.take("jobs"), queue.take("jobs")
    with transaction.atomic():
        Order.objects.create(ref="G-1")
        kept.ack()  # joins Django's transaction
        assert rows(dj, "SELECT COUNT(*) FROM mqlite_messages WHERE id = %s", kept.id) == [(1,)]
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            Order.objects.create(ref="G-2")
            undone.ack()
            raise RuntimeError
    assert rows(dj, "SELECT id FROM mqlite_messages") == [(undone.id,)]  # still claimed, comes back
    assert rows(dj, "SELECT ref FROM shop_order") == [("G-1",)]
    queue._counters.flush()
    assert queue.stats().queues["jobs"].processed == 1  # counted at the commit, not for the rollback


def test_call_command_runs_the_cli_on_the_projects_database(dj: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from django.core.management import CommandError, call_command

    call_command("mqlite", "push", "emails", "from call_command")
    assert rows(dj, "SELECT queue, body FROM mqlite_messages") == [("emails", b"from call_command")]
    call_command("mqlite", "schema", "status", "--json")
    assert '"table": "mqlite_messages"' in capsys.readouterr().out
    with pytest.raises(CommandError, match="exited with 2"):
        call_command("mqlite", "push", "", "no queue name")


def test_settings_are_checked(django_dsn: str) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from mqlite.contrib.django import conf

    assert conf.config() == conf.Config()  # no MQLITE setting: the default alias and table
    for wrong, says in [({"TABEL": "x"}, "unknown keys"), ({"OPTIONS": {"size": 1}}, "unknown keys"),
                        ({"DATABASE": "other"}, "not in DATABASES"), ({"TABLE": "bad-name"}, "TABLE"),
                        ("default", "must be a dict")]:
        with override_settings(MQLITE=wrong):
            with pytest.raises(ImproperlyConfigured, match=says):
                conf.config()


def test_the_dsn_comes_from_djangos_database_settings(django_dsn: str) -> None:
    from django.db import connections

    from mqlite.contrib.django import conf

    assert conf.database_dsn("default") == django_dsn
    db = connections["default"].settings_dict
    saved = dict(db)
    try:
        db.update(HOST="/run/mysqld/mysqld.sock", PASSWORD="s3cr/t", USER="app", PORT="")
        settings = parse_dsn(conf.database_dsn("default"))
        assert (settings.unix_socket, settings.user, settings.password) == ("/run/mysqld/mysqld.sock", "app", "s3cr/t")
        assert "s3cr" not in settings.redacted()
    finally:
        db.clear()
        db.update(saved)


# -- manage.py, in subprocesses, each on a fresh database ------------------------------------------


def manage(dsn: str, *args: str, table: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": SETTINGS, "MQLITE_TEST_DJANGO_DSN": dsn}
    env["MQLITE_DSN"] = "mysql://nobody@127.0.0.1:1/elsewhere"  # the project's settings decide, not this
    if table:
        env["MQLITE_TEST_DJANGO_TABLE"] = table
    return subprocess.run([sys.executable, "-m", "django", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_migrate_applies_the_schema_idempotently_beside_the_cli(dsn: str, admin: Any) -> None:
    done = manage(dsn, "migrate")
    assert done.returncode == 0, done.stderr
    assert "Applying mqlite.0001_schema... OK" in done.stdout
    with mqlite.Queue(dsn) as q:
        assert q.schema_status().version == schema.latest_version()
        q.push("x", b"the table works")
    assert rows(admin, "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()") \
        == [("mqlite_push",)]
    again = manage(dsn, "mqlite", "schema", "apply")
    assert again.returncode == 0 and "already at version" in again.stdout, again.stdout + again.stderr
    assert manage(dsn, "migrate").returncode == 0
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_schema_version") == [(len(schema.migrations()),)]


def test_migrate_after_the_cli_applied_the_schema_does_nothing_more(dsn: str, admin: Any) -> None:
    with mqlite.Queue(dsn) as q:
        q.apply_schema()
        q.push("x", b"kept")
    done = manage(dsn, "migrate")
    assert done.returncode == 0, done.stderr
    assert rows(admin, "SELECT body FROM mqlite_messages") == [(b"kept",)]


def test_the_mqlite_command_passes_through_with_the_projects_database_and_table(dsn: str, admin: Any) -> None:
    assert manage(dsn, "migrate", table="shop_jobs").returncode == 0
    pushed = manage(dsn, "mqlite", "push", "emails", "hello", table="shop_jobs")
    assert pushed.returncode == 0, pushed.stderr
    assert rows(admin, "SELECT queue, body FROM shop_jobs") == [("emails", b"hello")]
    status = manage(dsn, "mqlite", "schema", "status", "--json", "--settings", SETTINGS, table="shop_jobs")
    assert status.returncode == 0 and '"table": "shop_jobs"' in status.stdout, status.stdout + status.stderr
    helped = manage(dsn, "mqlite", "--help")
    assert helped.returncode == 0 and "python -m django mqlite" in helped.stdout
    wrong = manage(dsn, "mqlite", "pop", "no such queue" * 20)
    assert wrong.returncode == 2 and "queue name" in wrong.stderr


def test_the_worker_command_handles_messages_with_fresh_connections(dsn: str, admin: Any) -> None:
    assert manage(dsn, "migrate").returncode == 0
    with mqlite.Queue(dsn) as q:
        ids = q.push_many("receipts", ["r1", "r2", "r3"])
        q.push("other", b"not consumed")
    done = manage(dsn, "mqlite_worker", "receipts", "--handler", "tests.djangoapp.shop.handlers:record",
                  "--until-empty", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3 processed, 0 failed (empty)" in done.stdout
    written = rows(admin, "SELECT message_id, body, connection_id FROM shop_receipt ORDER BY message_id")
    assert [(m, b) for m, b, _ in written] == list(zip(ids, ["r1", "r2", "r3"], strict=True))
    # close_old_connections() between messages (CONN_MAX_AGE=0): each message had its own session.
    assert len({c for _, _, c in written}) == 3
    assert rows(admin, "SELECT queue FROM mqlite_messages") == [("other",)]


def test_the_worker_command_with_a_handler_that_acks_in_its_transaction(dsn: str, admin: Any) -> None:
    assert manage(dsn, "migrate").returncode == 0
    with mqlite.Queue(dsn) as q:
        ids = q.push_many("receipts", ["r1", "r2", "r3", "r4"])
    done = manage(dsn, "mqlite_worker", "receipts", "--handler",
                  "tests.djangoapp.shop.handlers:record_in_transaction", "--until-empty", "--concurrency", "2")
    assert done.returncode == 0 and "4 processed, 0 failed (empty)" in done.stdout, done.stdout + done.stderr
    assert sorted(m for (m,) in rows(admin, "SELECT message_id FROM shop_receipt")) == ids
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(0,)]
    assert rows(admin, "SELECT processed FROM mqlite_queues WHERE queue = 'receipts'") == [(4,)]


def test_the_worker_command_stops_after_max_messages_and_refuses_a_bad_handler(dsn: str, admin: Any) -> None:
    assert manage(dsn, "migrate").returncode == 0
    with mqlite.Queue(dsn) as q:
        q.push_many("receipts", ["r1", "r2", "r3"])
    done = manage(dsn, "mqlite_worker", "receipts", "--handler", "tests.djangoapp.shop.handlers:record",
                  "--max-messages", "2")
    assert done.returncode == 0 and "2 processed, 0 failed (max_messages)" in done.stdout, done.stderr
    bad = manage(dsn, "mqlite_worker", "receipts", "--handler", "tests.djangoapp.shop.handlers:nothing",
                 "--until-empty")
    assert bad.returncode == 1 and "cannot load handler" in bad.stderr
    assert rows(admin, "SELECT COUNT(*) FROM mqlite_messages") == [(1,)]
