"""The Django app: `INSTALLED_APPS += ["mqlite.contrib.django"]`."""

from __future__ import annotations

from django.apps import AppConfig


class MqliteConfig(AppConfig):
    name = "mqlite.contrib.django"
    label = "mqlite"
    verbose_name = "mqlite"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from .queues import forget_queue

        def changed(setting: str, **kwargs: object) -> None:
            if setting in ("MQLITE", "DATABASES"):
                forget_queue()  # built again from the new settings on next use

        setting_changed.connect(changed, weak=False, dispatch_uid="mqlite-settings")
