"""The benchmark harness: the CLI's JSON, the reference strategies, processes, sweeps, and the harness itself."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading

import pytest
from typer.testing import CliRunner

from mqlite import bench
from mqlite.bench import drivers, harness, plot, procs, sustained
from mqlite.bench.harness import Bound, Empty, Group
from mqlite.bench.reference_sql import reference_statements
from mqlite.cli import app
from mqlite.errors import ConfigError

from .conftest import admin_connection, rows

runner = CliRunner()

RESULT_FIELDS = {f.name for f in dataclasses.fields(bench.Result)}
RATIO_FIELDS = {f.name for f in dataclasses.fields(bench.Ratio)}
GOAL_FIELDS = {f.name for f in dataclasses.fields(bench.Goal)}
CONFIG_FIELDS = {
    "run_id", "started_at", "dsn", "server", "clients", "seconds", "messages", "cap_s", "body_size", "batch",
    "backlog", "scenarios", "processes", "compare", "api", "history", "redis_url", "machine", "duration_s",
    "queues", "rate", "find_max", "workers", "worker_threads",
}


def run_bench(*args: str) -> dict:
    result = runner.invoke(app, ["bench", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def leftover_tables(dsn: str) -> list[str]:
    """The benchmark's own tables (mqb_*) still in the database, and their schema version rows."""
    conn = admin_connection(dsn)
    try:
        found = [r[0] for r in rows(conn, "SHOW TABLES")]
        versions = rows(conn, "SELECT table_name FROM mqlite_schema_version") if "mqlite_schema_version" in found else []
    finally:
        conn.close()
    return [t for t in found if t.startswith("mqb_")] + [f"version row {v[0]}" for v in versions if v[0].startswith("mqb_")]


def by_key(report: dict) -> dict[tuple[str, str, int], dict]:
    return {(r["scenario"], r["strategy"], r["clients"]): r for r in report["results"]}


# -- the CLI on a real server -------------------------------------------------------


def test_all_scenarios_json_has_every_field(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--seconds", "1", "--clients", "4", "--scenario", "all", "--backlog", "20000")
    assert report["format"] == bench.FORMAT
    assert set(report["config"]) == CONFIG_FIELDS
    assert report["config"]["clients"] == [4] and report["config"]["seconds"] == 1
    assert [r["scenario"] for r in report["results"]] == list(bench.SCENARIOS)
    for r in report["results"]:
        assert set(r) == RESULT_FIELDS, r["scenario"]
        assert r["strategy"] == "mqlite" and r["kind"] == "mqlite" and r["clients"] == 4
        assert r["skipped"] is None and r["errors"] == 0, r
        assert r["messages"] > 0 and r["rate"] > 0 and 0.5 < r["seconds"] < 30
        assert 0 <= r["p50_ms"] <= r["p99_ms"]
        assert r["client_cpu_s"] >= 0 and r["lock_waits"] >= 0
    rows_ = by_key(report)
    for consuming in ("pop", "claim"):
        r = rows_[(consuming, "mqlite", 4)]
        assert r["backlog"] == 20000 and r["messages"] <= 20000
    mixed = rows_[("mixed", "mqlite", 4)]
    assert mixed["pushed"] > 0 and 0 < mixed["consumed"] <= mixed["pushed"]
    assert mixed["backlog"] == mixed["pushed"] - mixed["consumed"]
    assert 0 <= mixed["e2e_p50_ms"] <= mixed["e2e_p99_ms"] and isinstance(mixed["kept_up"], bool)
    assert rows_[("push", "mqlite", 4)]["pushed"] is None  # mixed-only fields stay null elsewhere
    assert all(set(r) == RATIO_FIELDS for r in report["ratios"])
    claim_vs_pop = [r for r in report["ratios"] if (r["numerator"], r["denominator"]) == ("claim/mqlite", "pop/mqlite")]
    assert len(claim_vs_pop) == 1 and claim_vs_pop[0]["ratio"] > 0
    goals = {g["id"]: g for g in report["goals"]}
    assert all(set(g) == GOAL_FIELDS for g in report["goals"])
    assert set(goals) == {g[0] for g in bench.report.GOALS}
    assert goals["claim_vs_pop"]["value"] == claim_vs_pop[0]["ratio"]
    assert goals["push_p99_ms"]["value"] == rows_[("push", "mqlite", 4)]["p99_ms"]
    assert goals["pop_vs_naive"]["value"] is None and goals["pop_vs_naive"]["met"] is None  # no --compare
    assert leftover_tables(dsn) == []


def test_compare_runs_references_and_prints_ratios(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--messages", "300", "--clients", "3", "--scenario", "push,pop", "--compare")
    rows_ = by_key(report)
    strategies = {(r["scenario"], r["strategy"]) for r in report["results"]}
    assert strategies == {
        ("push", "mqlite"), ("push", "raw-insert"), ("push", "huey"), ("push", "rq"),
        ("pop", "mqlite"), ("pop", "bare-group-claim"), ("pop", "naive-pop"), ("pop", "skip-locked"),
        ("pop", "huey"), ("pop", "rq"),
    }
    server = report["config"]["server"]
    for r in report["results"]:
        if r["skipped"]:
            # Only the optional peers, or SKIP LOCKED on an old server, may be missing.
            assert r["strategy"] in ("huey", "rq") or ("SKIP LOCKED" in r["skipped"] and r["strategy"] == "skip-locked")
            assert r["messages"] == 0
            continue
        # Count mode: every row handles exactly its messages, the consumers from a backlog of as many.
        assert r["messages"] == 300 and r["errors"] == 0, r
        if r["scenario"] == "pop":
            assert r["backlog"] == 300
    assert not rows_[("push", "raw-insert", 3)]["skipped"] and not rows_[("pop", "naive-pop", 3)]["skipped"]
    assert "MariaDB" not in server or not rows_[("pop", "skip-locked", 3)]["skipped"]
    ratios = {(r["numerator"], r["denominator"]): r for r in report["ratios"]}
    push, insert = rows_[("push", "mqlite", 3)], rows_[("push", "raw-insert", 3)]
    assert ratios[("push/mqlite", "push/raw-insert")]["ratio"] == round(push["rate"] / insert["rate"], 3)
    assert ratios[("push/mqlite", "push/raw-insert")]["goal"] == 0.8
    assert ("pop/mqlite", "pop/naive-pop") in ratios and ("pop/mqlite", "push/raw-insert") in ratios
    assert ratios[("pop/mqlite", "pop/bare-group-claim")]["goal"] == 0.8
    peers_ok = {s for s in ("huey", "rq") if not rows_[("push", s, 3)]["skipped"]}
    assert {k[1].split("/")[1] for k in ratios if k[1].split("/")[1] in ("huey", "rq")} == peers_ok
    assert leftover_tables(dsn) == []
    if "rq" in peers_ok:
        import redis

        client = redis.Redis.from_url(bench.DEFAULT_REDIS_URL)
        assert list(client.scan_iter(match=f"*mqb-{report['config']['run_id']}*")) == []


def test_api_async_runs_the_asyncio_rows_beside_the_sync_ones_with_the_loop_lag(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--messages", "300", "--clients", "4", "--scenario", "push,claim",
                       "--api", "async", "--compare", "--redis-url", "redis://127.0.0.1:1")
    rows_ = by_key(report)
    assert report["config"]["api"] == "async"
    for scenario in ("push", "claim"):
        sync, tasks = rows_[(scenario, "mqlite", 4)], rows_[(scenario, "mqlite-async", 4)]
        assert sync["loop_lag_p99_ms"] is None  # threads: no loop to measure
        assert tasks["messages"] == 300 and tasks["errors"] == 0 and tasks["processes"] == 1, tasks
        assert tasks["loop_lag_p99_ms"] is not None and tasks["loop_lag_max_ms"] >= tasks["loop_lag_p99_ms"]
        assert tasks["idle_lag_p99_ms"] is not None and tasks["idle_lag_max_ms"] >= tasks["idle_lag_p99_ms"]
        native = rows_[(scenario, "asyncmy-native", 4)]
        assert native["skipped"] or (native["messages"] == 300 and native["errors"] == 0), native
    ratios = {(r["numerator"], r["denominator"]): r for r in report["ratios"]}
    vs_sync = ratios[("claim/mqlite-async", "claim/mqlite")]
    assert vs_sync["goal"] == 0.8
    tasks_rate, threads_rate = rows_[("claim", "mqlite-async", 4)]["rate"], rows_[("claim", "mqlite", 4)]["rate"]
    assert vs_sync["ratio"] == round(tasks_rate / threads_rate, 3)
    goals = {g["id"]: g for g in report["goals"]}
    assert goals["loop_lag_max_ms"]["value"] == max(rows_[(s, "mqlite-async", 4)]["loop_lag_max_ms"]
                                                    for s in ("push", "claim"))
    assert goals["async_push_vs_sync"]["value"] == ratios[("push/mqlite-async", "push/mqlite")]["ratio"]
    assert leftover_tables(dsn) == []
    plain = run_bench("--dsn", dsn, "--messages", "50", "--clients", "2", "--scenario", "push")
    assert {r["strategy"] for r in plain["results"]} == {"mqlite"}
    assert not any(g["id"].startswith(("loop_lag", "async_")) for g in plain["goals"])


def test_compare_table_shows_rates_and_ratios(dsn: str) -> None:
    result = runner.invoke(
        app, ["bench", "--dsn", dsn, "--messages", "200", "--clients", "2", "--scenario", "push", "--compare",
              "--redis-url", "redis://127.0.0.1:1"],
        catch_exceptions=False,
        # Wide enough that Rich never wraps a note: its column width depends on the measured figures.
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "raw-insert" in result.stdout and "mqlite ÷ this" in result.stdout and "(≥0.8)" in result.stdout
    assert "skipped: no Redis server answers at redis://127.0.0.1:1" in result.stdout
    assert "push ≥ 0.8× raw INSERT" in result.stdout  # the goals table
    assert "goals at 64 clients and 100-byte bodies" in result.stdout  # this run used 2 clients


def test_processes_split_the_clients_and_sum(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--messages", "400", "--clients", "4", "--processes", "2", "--scenario", "push,pop")
    for r in report["results"]:
        assert r["processes"] == 2 and r["messages"] == 400 and r["errors"] == 0, r
    assert leftover_tables(dsn) == []


def test_queues_adds_round_robin_rows_and_their_ratio(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--messages", "200", "--clients", "4", "--scenario", "push,pop,claim",
                       "--queues", "5")
    rows_ = by_key(report)
    for scenario in ("push", "pop", "claim"):
        one, many = rows_[(scenario, "mqlite", 4)], rows_[(scenario, "mqlite-5q", 4)]
        assert one["queues"] is None and many["queues"] == 5
        assert many["messages"] == 200 and many["errors"] == 0, many
    assert rows_[("pop", "mqlite-5q", 4)]["backlog"] == 200  # 40 in each of the 5 queues
    ratios = {(r["numerator"], r["denominator"]): r for r in report["ratios"]}
    assert ratios[("pop/mqlite-5q", "pop/mqlite")]["goal"] == 0.7
    goals = {g["id"]: g for g in report["goals"]}
    assert goals["pop_5_queues"]["value"] == ratios[("pop/mqlite-5q", "pop/mqlite")]["ratio"]
    assert leftover_tables(dsn) == []


def test_drain_runs_worker_processes_until_every_message_is_acknowledged(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--scenario", "drain", "--messages", "300", "--workers", "2",
                       "--worker-threads", "2")
    [row] = report["results"]
    assert (row["scenario"], row["strategy"], row["processes"], row["clients"]) == ("drain", "mqlite-worker", 2, 4)
    assert row["messages"] == 300 and row["backlog"] == 300 and row["drained"] and row["rate"] > 0
    assert row["client_cpu_s"] > 0
    goals = {g["id"]: g for g in report["goals"]}
    assert goals["drain_rate"]["value"] == row["rate"] and goals["drain_rate"]["target"] == 10_000
    assert leftover_tables(dsn) == []


def test_mixed_at_a_fixed_rate_measures_push_to_handler(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--scenario", "mixed", "--rate", "100", "--seconds", "1", "--workers", "1",
                       "--worker-threads", "2")
    [row] = report["results"]
    assert row["strategy"] == "mqlite-worker" and row["target_rate"] == 100
    assert 90 <= row["pushed"] <= 101 and row["consumed"] == row["pushed"] and row["unhandled"] == 0
    assert 0 < row["e2e_p50_ms"] <= row["e2e_p99_ms"] and isinstance(row["kept_up"], bool)
    assert row["backlog_trend"] is not None
    assert leftover_tables(dsn) == []


def test_find_max_searches_the_rate_kept_up_against_claim_alone(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--scenario", "mixed", "--find-max", "--seconds", "0.5", "--messages", "300",
                       "--workers", "1", "--worker-threads", "2")
    alone, *paced = report["results"]
    assert alone["strategy"] == "mqlite-worker-claim-alone" and alone["messages"] == 300 and alone["rate"] > 0
    # The report rounds rates; the search used the unrounded figure.
    assert paced[0]["target_rate"] == pytest.approx(alone["rate"] / 2, abs=0.1)
    assert 3 <= len(paced) <= 2 + sustained.SEARCH_STEPS
    kept = [r["target_rate"] for r in paced if r["kept_up"]]
    goals = {g["id"]: g for g in report["goals"]}
    best = goals["mixed_max_vs_claim_alone"]["value"]
    assert best == (pytest.approx(max(kept) / alone["rate"], abs=0.002) if kept else None)
    assert goals["mixed_p99_at_half_ms"]["value"] == paced[0]["e2e_p99_ms"]
    assert leftover_tables(dsn) == []


def test_wakeup_measures_push_to_handler_with_an_idle_worker_process(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--scenario", "wakeup", "--messages", "5", "--gaps", "0.02-0.05",
                       "--idle-seconds", "1", "--idle-max", "0.2")
    assert report["config"]["messages"] == 5 and report["config"]["gap_max"] == 0.05
    rows = {r["strategy"]: r for r in report["results"]}
    assert set(rows) == {"mqlite", "no-ring"}
    for r in rows.values():
        assert (r["received"], r["duplicates"], r["error"]) == (5, 0, None)
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] and r["idle_statements_per_s"] > 0
    assert rows["mqlite"]["p50_ms"] < 200  # woken by the doorbell, not by the worker's polling
    assert leftover_tables(dsn) == []


def test_sweep_runs_each_client_count(dsn: str) -> None:
    report = run_bench("--dsn", dsn, "--messages", "120", "--sweep", "2,1", "--scenario", "pop,mixed")
    assert report["config"]["clients"] == [1, 2]
    got = [(r["scenario"], r["clients"], r["skipped"] is None) for r in report["results"]]
    assert got == [("pop", 1, True), ("mixed", 1, False), ("pop", 2, True), ("mixed", 2, True)]
    mixed = by_key(report)[("mixed", "mqlite", 2)]
    # Count mode: producers push exactly 120, consumers take exactly those, nothing is left (and
    # "kept up" has no meaning when the run waits for the consumers to finish).
    assert (mixed["pushed"], mixed["consumed"], mixed["backlog"], mixed["kept_up"]) == (120, 120, 0, None)


def test_reference_plans_walk_the_head_and_a_sorting_plan_is_caught(dsn: str) -> None:
    # A locking read over a filesort locks every row of the queue first (it aborted a server here):
    # the references must walk their index, and a plan that sorts must be detected before it runs.
    drivers.create_reference_table(dsn, "mqb_plan")
    try:
        assert drivers.seed_reference(dsn, "mqb_plan", "q", 3000, 100) == 3000
        rs = reference_statements("mqb_plan")
        assert drivers.sorting_plan(dsn, rs.naive_claim, ("q",)) is None
        assert drivers.sorting_plan(dsn, rs.skip_locked_take, ("q",)) is None
        sorting = rs.skip_locked_take.replace("ORDER BY id", "ORDER BY created_at")
        assert "filesort" in (drivers.sorting_plan(dsn, sorting, ("q",)) or "").lower()
    finally:
        drivers.drop_reference_table(dsn, "mqb_plan")
    assert leftover_tables(dsn) == []


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--seconds", "1", "--messages", "5"], "not both"),
        (["--scenario", "pop,nope"], "unknown scenario 'nope'"),
        (["--sweep", "1,x"], "--sweep wants"),
        (["--plot", "out.png"], "give --sweep too"),
        (["--api", "trio"], "must be one of sync, async"),
        (["--rate", "100", "--scenario", "pop"], "pace the mixed scenario"),
        (["--rate", "100", "--find-max", "--scenario", "mixed"], "--rate or --find-max"),
    ],
)
def test_bad_options_fail_before_running(args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["bench", "--dsn", "mysql://nobody@127.0.0.1:1/none", *args])
    assert result.exit_code == 2
    assert fragment in " ".join(result.output.split())


def test_plot_without_matplotlib_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[plot\]'"):
        plot.require()
    result = runner.invoke(app, ["bench", "--dsn", "mysql://nobody@127.0.0.1:1/none", "--sweep", "1,2", "--plot", "x.png"])
    assert result.exit_code == 2 and "matplotlib is not installed" in result.output


def test_sweep_plot_draws_a_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    report = bench.Report(config={"server": "test", "body_size": 100, "seconds": 1, "messages": None})
    for clients, rate in ((1, 1000.0), (8, 6000.0), (64, 20000.0)):
        report.results.append(bench.Result("pop", "mqlite", "mqlite", clients, 1, rate=rate, messages=int(rate)))
        report.results.append(bench.Result("pop", "naive-pop", "sql", clients, 1, rate=rate / clients, messages=1))
    report.results.append(bench.Result("pop", "huey", "peer", 8, 1, skipped="not installed"))
    out = plot.sweep_plot(report, tmp_path / "sweep.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


# -- the harness, with a fake driver (no server) -------------------------------------


class FakeDriver:
    """A queue of `stock` items in memory; `fail_at` makes that call raise."""

    def __init__(self, stock: int | None = None, fail_at: int | None = None) -> None:
        self.stock = stock
        self.fail_at = fail_at
        self.calls = 0
        self.lock = threading.Lock()
        self.prepared = None
        self.closed = 0

    def prepare(self, clients: int) -> None:
        self.prepared = clients

    def worker(self, role: str, index: int):
        def op() -> int:
            with self.lock:
                self.calls += 1
                if self.fail_at is not None and self.calls == self.fail_at:
                    raise RuntimeError("boom\nsecond line")
                if self.stock is not None:
                    if self.stock == 0:
                        raise Empty
                    self.stock -= 1
            return 3 if role == "triple" else 1

        return op

    def samples(self) -> dict[str, list[float]]:
        return {"extra": [0.3, 0.1, 0.2]}

    def close(self) -> None:
        self.closed += 1


def test_count_mode_does_exactly_the_budget() -> None:
    driver = FakeDriver()
    [stats] = harness.run(lambda: driver, [Group("one", 7)], Bound(messages=1000))
    assert (stats.messages, stats.calls, stats.errors, stats.drained) == (1000, 1000, 0, False)
    assert driver.prepared == 7 and driver.closed == 1
    assert len(stats.latencies) == 1000 and stats.latencies == sorted(stats.latencies)
    assert stats.samples == {"extra": [0.1, 0.2, 0.3]}


def test_count_mode_counts_messages_per_call() -> None:
    [stats] = harness.run(FakeDriver, [Group("triple", 4, per_call=3)], Bound(messages=100))
    assert stats.calls == 34 and stats.messages == 102  # ceil(100 / 3) calls


def test_empty_queue_stops_the_clients_and_marks_drained() -> None:
    [stats] = harness.run(lambda: FakeDriver(stock=50), [Group("one", 5)], Bound(seconds=30))
    assert stats.messages == 50 and stats.drained and stats.elapsed < 10


def test_time_mode_stops_at_the_deadline() -> None:
    [stats] = harness.run(FakeDriver, [Group("one", 3)], Bound(seconds=0.3))
    assert 0.3 <= stats.elapsed < 5 and stats.messages > 0 and not stats.truncated


def test_an_error_stops_that_client_and_is_reported() -> None:
    [stats] = harness.run(lambda: FakeDriver(fail_at=10), [Group("one", 1)], Bound(messages=100))
    assert (stats.messages, stats.errors, stats.error) == (9, 1, "RuntimeError: boom")


def test_groups_run_together_with_their_own_budgets() -> None:
    a, b = harness.run(FakeDriver, [Group("one", 2, budget=10), Group("triple", 3, per_call=3, budget=30)],
                       Bound(messages=999))
    assert (a.role, a.messages, b.role, b.messages) == ("one", 10, "triple", 30)


def test_budgets_split_over_processes_in_proportion() -> None:
    assert procs._budgets(10, [2, 1, 1]) == [6, 2, 2]
    assert procs._budgets(5, [1, 1, 0]) == [3, 2, 0]
    assert procs._budgets(None, [1, 1]) == [None, None]
    assert procs._split(5, 3) == [2, 2, 1]


def test_percentile_and_bound_validation() -> None:
    assert harness.percentile([], 0.5) is None
    assert harness.percentile([1.0, 2.0, 3.0, 4.0], 0.5) in (2.0, 3.0)
    assert harness.percentile([float(i) for i in range(100)], 0.99) == 98.0
    with pytest.raises(ValueError):
        Bound()
    with pytest.raises(ValueError):
        Bound(seconds=1, messages=1)
    assert bench.parse_scenarios("all") == bench.SCENARIOS
    assert bench.parse_scenarios("pop, push,pop") == ("pop", "push")
    assert bench.parse_sweep("64,1,8,8") == (1, 8, 64)
