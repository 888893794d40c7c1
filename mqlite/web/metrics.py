"""Prometheus metrics: a collector that reads `Queue.stats()` on every scrape.

    mqlite_up                                  1 when stats could be read, else 0 (and nothing else)
    mqlite_queue_depth{queue,state}            messages by state: ready, delayed, claimed, failed
    mqlite_processed_total{queue}              acknowledged/popped since the counters were reset
    mqlite_failed_total{queue}                 failed attempts since the counters were reset
    mqlite_oldest_ready_age_seconds{queue}     how long the oldest ready message has waited (0: none)
    mqlite_queue_paused{queue}                 1 while the queue is paused
    mqlite_http_waiting_requests               long-polls asleep in this server
    mqlite_http_claims_held                    HTTP claims whose lease this server enforces
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..config import redact
from ..queue import Queue, Stats

log = logging.getLogger("mqlite.web")

STATES = ("ready", "delayed", "claimed", "failed")


class StatsCollector(Collector):
    """Reads the queue's stats once per scrape; the server's own gauges come from `gauges()`."""

    def __init__(self, queue: Queue, gauges: Callable[[], dict[str, float]] | None = None) -> None:
        self._queue = queue
        self._gauges = gauges

    def describe(self) -> list[Metric]:
        return []  # registering must not read the database

    def collect(self) -> Iterator[Metric]:
        if self._gauges is not None:
            for name, value in self._gauges().items():
                yield GaugeMetricFamily(f"mqlite_http_{name}", _HELP[name], value=value)
        try:
            stats: Stats = self._queue.stats()
        except Exception as exc:
            log.warning("mqlite web: metrics could not read stats: %s", redact(str(exc), self._queue.settings))
            yield GaugeMetricFamily("mqlite_up", "Whether mqlite's stats could be read", value=0)
            return
        yield GaugeMetricFamily("mqlite_up", "Whether mqlite's stats could be read", value=1)
        depth = GaugeMetricFamily("mqlite_queue_depth", "Messages in the queue by state", labels=["queue", "state"])
        processed = CounterMetricFamily("mqlite_processed", "Messages acknowledged or popped", labels=["queue"])
        failed = CounterMetricFamily("mqlite_failed", "Failed attempts (nack, fail, recovery)", labels=["queue"])
        oldest = GaugeMetricFamily(
            "mqlite_oldest_ready_age_seconds", "Seconds the oldest ready message has waited (0: none ready)",
            labels=["queue"],
        )
        paused = GaugeMetricFamily("mqlite_queue_paused", "1 while the queue is paused", labels=["queue"])
        for name, s in stats.queues.items():
            for state in STATES:
                depth.add_metric([name, state], getattr(s, state))
            processed.add_metric([name], s.processed)
            failed.add_metric([name], s.failed_total)
            oldest.add_metric([name], s.oldest_age or 0.0)
            paused.add_metric([name], 1.0 if s.paused else 0.0)
        yield from (depth, processed, failed, oldest, paused)


_HELP = {
    "waiting_requests": "Long-poll requests waiting for a message in this server",
    "claims_held": "Claims handed out over HTTP whose lease this server enforces",
}


def registry(queue: Queue, gauges: Callable[[], dict[str, float]] | None = None) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding the stats collector."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StatsCollector(queue, gauges))
    return reg
