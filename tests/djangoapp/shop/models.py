from __future__ import annotations

from django.db import models


class Order(models.Model):
    ref = models.CharField(max_length=40, unique=True)

    class Meta:
        app_label = "shop"


class Receipt(models.Model):
    """What the worker's handler writes for each message it handles."""

    message_id = models.BigIntegerField(unique=True)
    body = models.CharField(max_length=200)
    connection_id = models.BigIntegerField()

    class Meta:
        app_label = "shop"
