"""A minimal Django project for the Django integration tests (settings, one app with models)."""
