"""The `mqlite` command: parse, call the library, print. The only package that imports typer.

Exit status, for every command: 0 done; 1 nothing there or not all done (`pop` on an empty queue,
`consume` with failed messages, `worker` past its stop timeout, a declined `purge`); 2 an error,
printed as one red line (bad DSN, server unreachable, missing schema, unknown queue, bad option).

`app` holds the Typer app and the shared options; `render` everything printed; the commands are
grouped by what they act on: `messages`, `history` (cancel, history, replay), `queues`, `schedules`
(schedule add|list|remove, scheduler), `run` (consume, worker, web), `bench`, `schema`.
"""

from __future__ import annotations

from .app import UnknownQueue, UsageError, app, main

# Importing a command module registers its commands on `app`, in the order `mqlite --help` lists them.
# isort: off
from . import messages, history, queues, schedules, run, bench, schema  # noqa: F401
# isort: on

__all__ = ["UnknownQueue", "UsageError", "app", "main"]
