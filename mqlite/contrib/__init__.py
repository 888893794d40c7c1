"""Integrations with task frameworks, each an optional extra; the core never imports them.

- `mqlite.contrib.kombu`: a kombu virtual transport, so Celery uses mqlite as its broker
  (`pip install 'mqlite[celery]'`).
- `mqlite.contrib.dramatiq`: `MqliteBroker`, a Dramatiq broker (`pip install 'mqlite[dramatiq]'`).
- `mqlite.contrib.django`: a Django app (settings, schema by `migrate`, pushes and acks that join
  `transaction.atomic()`, `manage.py mqlite_worker`) (`pip install 'mqlite[django]'`).

SQLAlchemy needs no integration: pass a `Session` or `Connection` as `connection=` (`mqlite.txn`).
"""
