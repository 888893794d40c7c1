"""Integrations with task frameworks, each an optional extra; the core never imports them.

- `mqlite.contrib.kombu`: a kombu virtual transport, so Celery uses mqlite as its broker
  (`pip install 'mqlite[celery]'`).
- `mqlite.contrib.dramatiq`: `MqliteBroker`, a Dramatiq broker (`pip install 'mqlite[dramatiq]'`).
"""
