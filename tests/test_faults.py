"""The network between mqlite and the server fails: connections cut mid-statement, replies lost
after the server committed, stalls longer than the read timeout, every packet slow. Under each,
8 producers and 8 consumers run for MQLITE_FAULT_SECONDS (10 in `make test`, 20 in `make
test-faults`, whose figures docs/RELIABILITY.md records) through a fault-injecting
relay (tests/support/faults.py), and nothing acknowledged is lost, keyed pushes store one row,
no message is held by two consumers at once, no call hangs, and once the network heals the
consumers drain everything and the table ends empty (nothing left stuck by a fault)."""

from __future__ import annotations

import json
import os

import pytest

from .support import load
from .support.faults import FaultProxy

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("MQLITE_FAULT_SECONDS", "10"))
READ_TIMEOUT = 2  # the DSN's read_timeout: whole seconds (the driver's unit)
RETRY_FOR = 5.0
CONNECT_TIMEOUT = 2.0
# A call retries for RETRY_FOR, and its last try may then wait out a read, a reconnect and a
# write; a claim may first wait for the claim in flight before it. The margin covers those.
BOUND = READ_TIMEOUT + RETRY_FOR + 8.0

MODES = {
    "cut": dict(every=0.25),
    "lost_ack": dict(every=0.25),
    "stall": dict(every=1.0, stall_for=READ_TIMEOUT + 2.0),
    "slow": dict(delay=0.01),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_no_loss_no_double_hold_no_hang(mode: str, dsn: str, q, request) -> None:
    seed = sum(map(ord, mode))
    with FaultProxy(dsn, mode, seed=seed, **MODES[mode]) as proxy:
        proxy.start_faults()
        report = load.run(
            dsn, proxy.dsn(dsn, read_timeout=READ_TIMEOUT), SECONDS, seed=seed, heal=proxy.stop_faults,
            queue_options=dict(retry_for=RETRY_FOR, connect_timeout=CONNECT_TIMEOUT, recover_every=0.5,
                               max_attempts=1000),
        )
        faults = dict(proxy.counts)
    figures = {"mode": mode, "faults": faults, **report.summary()}
    print("\nfault figures:", json.dumps(figures))
    problems = report.problems(BOUND)
    assert not problems, f"{mode}: {problems}; {figures}"
    # The mode did what it says: faults were injected and the load got through them.
    assert mode == "slow" or faults.get(mode, 0) >= 5, faults
    assert report.handlings and report.keyed_returned and report.plain_returned
