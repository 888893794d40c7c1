"""`manage.py mqlite ...`: the `mqlite` command line on the project's database and table.

`--dsn` and `--table` default to what the `MQLITE` and `DATABASES` settings say, as for the
project's queue (an `MQLITE_DSN` in the environment does not redirect it); given on the command
line, they win.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mqlite.config import DSN_ENV

from ... import conf

# Django's own options, already acted on by manage.py before the command runs.
_DJANGO_OPTIONS = ("--settings", "--pythonpath")


class Command(BaseCommand):
    help = "The mqlite command line (mqlite --help) on this project's database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, help="an mqlite command and its arguments")

    def run_from_argv(self, argv: list[str]) -> None:
        # Everything after `manage.py mqlite` belongs to the mqlite CLI, --help included.
        prog = os.path.basename(argv[0])
        prog = "python -m django" if prog == "__main__.py" else prog  # as Django names itself
        raise SystemExit(_run(_without_django_options(argv[2:]), f"{prog} {argv[1]}"))

    def handle(self, *args: Any, **options: Any) -> None:  # call_command("mqlite", "stats", ...)
        code = _run(list(args), "mqlite")
        if code:
            raise CommandError(f"mqlite {' '.join(args)} exited with {code}", returncode=code)


def _without_django_options(args: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _DJANGO_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in _DJANGO_OPTIONS)):
            kept.append(arg)
    return kept


def _run(args: list[str], prog_name: str) -> int:
    import typer

    from mqlite.cli import app

    cfg = conf.config()
    dsn = cfg.dsn or conf.database_dsn(cfg.database)
    defaults = {"dsn": dsn, "table": cfg.table}
    command = typer.main.get_command(app)
    # The CLI reads MQLITE_DSN before any default: for this run it is the project's.
    saved = os.environ.get(DSN_ENV)
    os.environ[DSN_ENV] = dsn
    try:
        command.main(args=args, prog_name=prog_name, default_map=_default_map(command, defaults))
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    finally:
        if saved is None:
            os.environ.pop(DSN_ENV, None)
        else:
            os.environ[DSN_ENV] = saved
    return 0


def _default_map(command: Any, defaults: dict[str, str]) -> dict[str, Any]:
    """click's default_map giving every command (and group) that takes --dsn/--table the project's."""
    found: dict[str, Any] = {p.name: defaults[p.name] for p in command.params if p.name in defaults}
    for name, sub in getattr(command, "commands", {}).items():
        inner = _default_map(sub, defaults)
        if inner:
            found[name] = inner
    return found
