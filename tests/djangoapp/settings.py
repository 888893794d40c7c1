"""Django settings for the tests: the database comes from MQLITE_TEST_DJANGO_DSN (Django's MySQL
backend over mysqlclient); MQLITE_TEST_DJANGO_TABLE, if set, names the messages table."""

from __future__ import annotations

import os

from mqlite.config import parse_dsn

_db = parse_dsn(os.environ["MQLITE_TEST_DJANGO_DSN"])
_host, _port = _db.hosts[0]

SECRET_KEY = "mqlite-tests"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["mqlite.contrib.django", "tests.djangoapp.shop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": _db.database,
        "USER": _db.user,
        "PASSWORD": _db.password,
        "HOST": _host,
        "PORT": str(_port),
    }
}
if os.environ.get("MQLITE_TEST_DJANGO_TABLE"):
    MQLITE = {"TABLE": os.environ["MQLITE_TEST_DJANGO_TABLE"]}
