"""docker/ cannot run here (no Docker): check that its files parse and carry the settings mqlite needs."""

from __future__ import annotations

import importlib.util
import inspect
import re
import shlex
from datetime import datetime

import yaml

from mqlite.config import parse_dsn
from mqlite.message import Message
from mqlite.testing import ThrowawayServer

from .helpers import ROOT

DOCKER = ROOT / "docker"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def flags(command: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in command if arg.startswith("--") and "=" in arg)


def test_mysql_runs_row_binlogs_and_the_packet_size_mqlite_is_tested_with() -> None:
    mysql = compose()["services"]["mysql"]
    assert mysql["image"].startswith("mysql:8.0")
    settings = flags(mysql["command"])
    assert settings["binlog-format"] == "ROW"
    tested_with = re.search(r"--max-allowed-packet=(\w+)", inspect.getsource(ThrowawayServer)).group(1)
    assert settings["max-allowed-packet"] == tested_with == "64M"
    assert "mysql-data:/var/lib/mysql" in mysql["volumes"]
    assert mysql["healthcheck"]["test"][0] == "CMD-SHELL" and "mysqladmin ping" in mysql["healthcheck"]["test"][1]


def test_services_share_one_dsn_that_matches_the_database_user() -> None:
    doc = compose()
    env = doc["services"]["mysql"]["environment"]
    for name in ("schema", "worker"):
        service = doc["services"][name]
        dsn = parse_dsn(service["environment"]["MQLITE_DSN"].replace("${MQLITE_PASSWORD:-change-me}", "pw"))
        assert (dsn.user, dsn.database, dsn.hosts) == (env["MYSQL_USER"], env["MYSQL_DATABASE"], (("mysql", 3306),))
        assert env["MYSQL_PASSWORD"] == "${MQLITE_PASSWORD:-change-me}"
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    grants = (DOCKER / "initdb" / "01-mqlite-grants.sql").read_text()
    assert f"GRANT PROCESS ON *.* TO '{env['MYSQL_USER']}'@'%'" in grants
    assert "./initdb:/docker-entrypoint-initdb.d:ro" in doc["services"]["mysql"]["volumes"]


def test_schema_is_applied_once_before_the_worker_starts() -> None:
    services = compose()["services"]
    schema, worker = services["schema"], services["worker"]
    assert schema["command"] == ["mqlite", "schema", "apply"] and schema["restart"] == "no"
    assert schema["depends_on"] == {"mysql": {"condition": "service_healthy"}}
    assert worker["depends_on"] == {"schema": {"condition": "service_completed_successfully"}}
    command = worker["command"]
    assert command[:2] == ["mqlite", "worker"] and "--handler" in command
    stop_timeout = float(command[command.index("--stop-timeout") + 1])
    assert worker["stop_signal"] == "SIGTERM" and float(worker["stop_grace_period"].rstrip("s")) > stop_timeout


def test_dockerfile_builds_a_worker_image_with_the_example_handler() -> None:
    lines = [ln.strip() for ln in (DOCKER / "Dockerfile").read_text().splitlines() if ln.strip()]
    assert sum(ln.startswith("FROM python:3") for ln in lines) == 2  # build stage, then a slim runtime
    assert lines[-1] == 'CMD ["mqlite", "worker", "--help"]'
    text = "\n".join(lines)
    assert "libmariadb-dev" in text and "libmariadb3" in text and "STOPSIGNAL SIGTERM" in text
    assert "COPY schema ./schema" in text and "USER mqlite" in text
    assert "COPY docker/handlers.py ./" in text and "WORKDIR /app" in text
    handler = compose()["services"]["worker"]["command"]
    module = handler[handler.index("--handler") + 1].split(":")[0]
    assert (DOCKER / f"{module}.py").exists()
    for path in ("pyproject.toml", "README.md", "mqlite", "schema"):
        assert (ROOT / path).exists()
    assert ".venv" in shlex.split((ROOT / ".dockerignore").read_text())


def test_the_example_handler_takes_a_message(capsys) -> None:
    spec = importlib.util.spec_from_file_location("example_handlers", DOCKER / "handlers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.handle(Message(7, "emails", b'{"to": "ada@example.com"}', datetime.now()))
    assert capsys.readouterr().out == "emails #7: {'to': 'ada@example.com'}\n"
