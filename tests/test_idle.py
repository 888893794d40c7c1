"""`IdleWait`: the backoff every consumer (Worker, Dramatiq, kombu, web long-poll) waits with on an empty queue."""

from __future__ import annotations

import threading
import time

import pytest

from mqlite.idle import IdleWait


def test_pauses_double_up_to_the_cap_and_reset_after_a_message() -> None:
    idle = IdleWait(0.01, 0.08)
    assert [idle.pause() for _ in range(6)] == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]
    idle.reset()
    assert [idle.pause() for _ in range(2)] == [0.01, 0.02]


def test_a_limit_shortens_one_pause_without_changing_the_backoff() -> None:
    idle = IdleWait(0.1, 1.0)
    assert idle.pause(limit=0.05) == 0.05
    assert idle.pause(limit=-1.0) == 0.0  # a deadline already past: no wait at all
    assert idle.pause() == 0.4


def test_a_cap_below_the_first_pause_wins() -> None:
    idle = IdleWait(0.01, 0.0)
    assert [idle.pause() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_negative_waits_are_refused() -> None:
    with pytest.raises(ValueError):
        IdleWait(-1.0, 1.0)


def test_wait_ends_early_when_woken_and_says_so() -> None:
    idle = IdleWait(30.0, 30.0)
    wake = threading.Event()
    threading.Timer(0.05, wake.set).start()
    began = time.monotonic()
    assert idle.wait(wake) is True
    assert time.monotonic() - began < 10.0  # not the 30 s pause


def test_wait_without_a_wake_up_sleeps_the_pause_and_reports_a_timeout() -> None:
    idle = IdleWait(0.02, 0.02)
    began = time.monotonic()
    assert idle.wait() is False
    assert time.monotonic() - began >= 0.02


def test_sleep_is_the_one_place_a_wake_up_mechanism_replaces() -> None:
    slept: list[float] = []

    class Recording(IdleWait):
        def sleep(self, seconds: float, wake: threading.Event | None = None) -> bool:
            slept.append(seconds)
            return True

    idle = Recording(0.01, 0.04)
    assert [idle.wait(limit=0.03) for _ in range(3)] == [True, True, True]
    assert slept == [0.01, 0.02, 0.03]
