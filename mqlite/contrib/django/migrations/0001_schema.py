"""mqlite's schema on `manage.py migrate`: the app's one migration runs mqlite's own schema.apply.

schema.apply records what it applied per table, so this is idempotent beside `mqlite schema
apply` (whichever runs first does the work). Schema files added by a later mqlite come with a new
migration here that runs the same function.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def apply_schema(apps: Any, schema_editor: Any) -> None:
    from mqlite.contrib.django.schema import apply_on

    apply_on(schema_editor.connection)


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    # atomic=False: the schema's DDL commits by itself in MySQL; an atomic() around it would lie.
    operations = [migrations.RunPython(apply_schema, migrations.RunPython.noop, atomic=False)]
