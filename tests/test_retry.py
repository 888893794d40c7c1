"""The retry bound: transient errors are retried until `retry_for` after the call began, no later."""

from __future__ import annotations

import time

import pytest

from mqlite import retry
from mqlite.errors import DatabaseError, Unavailable


def test_no_try_starts_later_than_the_bound_after_the_first_began() -> None:
    tries: list[float] = []
    began = time.monotonic()

    def slow_and_failing() -> None:
        tries.append(time.monotonic() - began)
        time.sleep(0.4)  # each try takes this long before the connection is found lost
        raise Unavailable("lost connection")

    with pytest.raises(Unavailable):
        retry.call(retry.Policy(1.0), slow_and_failing)
    took = time.monotonic() - began
    assert len(tries) >= 2
    # The bound counts from the first try (which took 0.4 s), not from the first retry.
    assert max(tries) <= 1.0 + 0.05
    assert took <= 1.0 + 0.4 + 0.3, tries


def test_a_later_step_of_one_call_shares_its_bound() -> None:
    began = time.monotonic() - 5.0  # a call that began 5 s ago, with a 1 s bound
    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise Unavailable("lost connection")

    with pytest.raises(Unavailable):
        retry.call(retry.Policy(1.0), failing, started=began)
    assert calls == 1  # tried once, not retried: its bound had passed


def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise DatabaseError("syntax", code=1064)

    with pytest.raises(DatabaseError):
        retry.call(retry.Policy(5.0), refused)
    assert calls == 1
