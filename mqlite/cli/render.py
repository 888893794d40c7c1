"""What the commands print: JSON for scripts, Rich tables for people, and the small formatters they share."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..admin import Stats
from ..message import Message
from ..registry import WorkerInfo

out = Console()
err = Console(stderr=True)

PREVIEW = 48  # characters of a body shown in a table
ERROR_PREVIEW = 60  # characters of a last error shown in a table
STAT_FIELDS = ("ready", "delayed", "claimed", "failed", "processed", "failed_total")


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


# -- formatters --------------------------------------------------------------------------------


def age(ts: datetime | None) -> str:
    if ts is None:
        return "-"
    return seconds((datetime.now() - ts).total_seconds())


def due(ts: datetime | None) -> str:
    if ts is None:
        return "-"
    wait = (ts - datetime.now()).total_seconds()
    return "now" if wait <= 0 else f"in {seconds(wait)}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    value = max(0.0, value)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.1f}s"


def preview(data: bytes | str | None, width: int) -> str:
    """One line: non-printable characters escaped, cut to `width` with an ellipsis."""
    if data is None:
        return ""
    text = data[: width * 4].decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    more = len(text) > width or (isinstance(data, bytes) and len(data) > width * 4)
    return text[: width - 1] + "…" if more else text


# -- messages ------------------------------------------------------------------------------------


def message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "queue": m.queue,
        "created_at": m.created_at,
        "attempts": m.attempts,
        "priority": m.priority,
        "owner": m.owner,
        "claimed_at": m.claimed_at,
        "available_at": m.available_at,
        "failed_at": m.failed_at,
        "last_error": m.last_error,
        "cursor": m.cursor,
        "progress": m.progress,
        "body": m.body.decode("utf-8", "replace"),
    }


def messages_table(messages: list[Message], title: str) -> Table:
    # Not failed means waiting, delayed (a backoff, a delay) or in a consumer's hands: "due" and
    # "owner" tell which.
    t = Table("id", "age", "due", "attempts", "priority", "owner", "last error", "body", title=title)
    for m in messages:
        t.add_row(
            str(m.id), age(m.created_at), due(m.available_at), str(m.attempts), str(m.priority), str(m.owner or "-"),
            Text(preview(m.last_error, ERROR_PREVIEW), style="red"),
            Text(preview(m.body, PREVIEW)),
        )
    return t


def progress_table(messages: list[Message]) -> Table:
    t = Table("id", "queue", "claimed", "owner", "progress", "cursor", title="in progress")
    for m in messages:
        done = "-" if m.progress is None else f"{m.progress:.0%}" if 0 <= m.progress <= 1 else f"{m.progress:g}"
        t.add_row(str(m.id), m.queue, age(m.claimed_at), str(m.owner), done, preview(m.cursor, 24))
    return t


# -- queues and workers ----------------------------------------------------------------------------


def stats_rows(s: Stats, queue: str | None) -> dict[str, dict[str, Any]]:
    """Every queue of `s` (or only `queue`, zeros when it has nothing) as plain values."""
    picked = {queue: s.queues.get(queue)} if queue is not None else dict(s.queues)
    return {
        name: {
            **{f: (getattr(v, f) if v is not None else 0) for f in STAT_FIELDS},
            "oldest_ready": v.oldest_ready if v is not None else None,
            "oldest_age": v.oldest_age if v is not None else None,
            "paused": v.paused if v is not None else False,
        }
        for name, v in picked.items()
    }


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What `mqlite stats` shows, read in one go: the counts, messages in progress, live workers."""

    stats: Stats
    queue: str | None  # only this queue, or every one
    in_progress: list[Message]
    workers: list[WorkerInfo]


def stats_json(snap: Snapshot) -> dict[str, Any]:
    return {
        "queues": stats_rows(snap.stats, snap.queue),
        "sees_all_connections": snap.stats.sees_all_connections,
        "tls_cipher": snap.stats.tls_cipher,
        "in_progress": [message_json(m) for m in snap.in_progress],
        "workers": [workers_json(w) for w in snap.workers],
    }


def stats_view(snap: Snapshot, title: str | None = None) -> Group:
    """The queues table, then (when there are any) messages in progress and live workers."""
    parts: list[Any] = [stats_table(stats_rows(snap.stats, snap.queue), snap.stats.sees_all_connections, title)]
    cipher = snap.stats.tls_cipher
    parts.append(Text(f"connection: TLS, {cipher}" if cipher else "connection: not encrypted (no TLS)", style="dim"))
    busy = [m for m in snap.in_progress if m.progress is not None or m.cursor is not None]
    if busy:
        parts.append(progress_table(busy))
    if snap.workers:
        parts.append(workers_table(snap.workers))
    return Group(*parts)


def stats_table(rows: dict[str, dict[str, Any]], sees_all: bool, title: str | None = None) -> Table:
    t = Table("queue", "ready", "delayed", "claimed", "failed", "processed", "oldest ready", title=title,
              caption=None if sees_all else "no PROCESS privilege: recovery cannot see other sessions")
    for name, r in rows.items():
        label = f"{name} [yellow](paused)[/]" if r["paused"] else name
        t.add_row(label, *(f"{r[f]:,}" for f in STAT_FIELDS[:5]), seconds(r["oldest_age"]))
    return t


def workers_json(w: WorkerInfo) -> dict[str, Any]:
    return dataclasses.asdict(w)


def workers_table(found: list[WorkerInfo]) -> Table:
    t = Table("id", "host", "pid", "queues", "up", "last beat", "in hand", "processed", "failed",
              title=plural(len(found), "worker"))
    for w in found:
        t.add_row(str(w.id), w.host, str(w.pid), ",".join(w.queues), age(w.started_at), seconds(w.silent_for),
                  ",".join(map(str, w.current_messages)) or "-", f"{w.processed:,}", f"{w.failed:,}")
    return t


def worker_summary(what: str, result: Any, as_json: bool) -> None:
    """One line (or one JSON object) saying what a `Worker.run()` did and why it stopped."""
    if as_json:
        print_json({"queue": what, "processed": result.processed, "failed": result.failed,
                    "abandoned": result.abandoned, "stopped": result.reason})
        return
    why = {"empty": "queue empty", "max_messages": "--max-messages reached", "max_seconds": "--max-seconds reached",
           "signal": "signal", "stopped": "stopped", "crashed": "crashed", "error": "error"}
    reason = why.get(result.reason, result.reason)
    line = f"{what}: {result.processed} acknowledged, {result.failed} failed ({reason})"
    if result.abandoned:
        line += f", {result.abandoned} left claimed"
    out.print(line, highlight=False)


# -- the benchmark -------------------------------------------------------------------------------


def bench_report(report: Any, plot: Path | None) -> None:
    """The rows of a `mqlite.bench.Report` with their ratios, then its goals."""
    # Wide enough for the table when piped to a file; a terminal's own width otherwise.
    console = out if out.is_terminal else Console(width=max(out.width, 150))
    cfg = report.config
    bound = f"{cfg['seconds']:g} s a row" if cfg["seconds"] else f"{cfg['messages']:,} messages a row"
    console.print(f"[bold]mqlite bench[/] · {cfg['server']} · {cfg['body_size']} B bodies · {bound} · "
                  f"{cfg['processes']} process(es) · run {cfg['run_id']} in {cfg['duration_s']:g} s")
    vs = {(r.denominator, r.denominator_clients): r for r in report.ratios
          if r.clients == r.denominator_clients and r.numerator.split("/")[0] == r.denominator.split("/")[0]}
    own = {(r.numerator, r.clients): r for r in report.ratios if r.numerator.endswith("/mqlite-async")
           and r.denominator == r.numerator.split("/")[0] + "/mqlite"}
    t = Table("scenario", "strategy", "clients", "msg/s", "mqlite ÷ this", "p50 / p99 ms",
              "CPU µs/msg\nclient · server", "notes")
    for r in report.results:
        if r.skipped:
            t.add_row(r.scenario, r.strategy, str(r.clients), "-", "", "", "", f"[yellow]skipped: {r.skipped}[/]")
            continue
        ratio = vs.get((f"{r.scenario}/{r.strategy}", r.clients))
        shown = ""
        if ratio is not None and r.kind != "mqlite":
            goal = "" if ratio.goal is None else f" (≥{ratio.goal:g})"
            colour = "default" if ratio.goal is None else ("green" if ratio.met else "red")
            shown = f"[{colour}]{ratio.ratio:,.2f}×{goal}[/]"
        notes = _notes(r)
        mine = own.get((f"{r.scenario}/{r.strategy}", r.clients))
        if mine is not None:  # an asyncio row: its rate against the sync API's
            colour = "default" if mine.goal is None else ("green" if mine.met else "red")
            goal = "" if mine.goal is None else f" (≥{mine.goal:g})"
            notes = "; ".join(n for n in (f"[{colour}]{mine.ratio:,.2f}× sync{goal}[/]", notes) if n)
        t.add_row(
            r.scenario, f"[bold]{r.strategy}[/]" if r.kind == "mqlite" else r.strategy, str(r.clients),
            f"{r.rate:,.0f}", shown, f"{_num(r.p50_ms)} / {_num(r.p99_ms)}", _cpu(r), notes,
        )
    console.print(t)
    g = Table("goal", "clients", "value", "met")
    for goal in report.goals:
        unit = " ms" if goal.id.endswith("_ms") else "×"
        value = "not measured" if goal.value is None else f"{goal.value:,.2f}{unit}"
        met = "" if goal.met is None else ("[green]yes[/]" if goal.met else "[red]short[/]")
        g.add_row(goal.text, str(goal.clients), value, met)
    console.print(g)
    if max(cfg["clients"]) != 64 or cfg["body_size"] != 100:
        console.print("[yellow]the benchmark states its goals at 64 clients and 100-byte bodies; this run differs[/]")
    if plot is not None:
        console.print(f"plot: {plot}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _cpu(r: Any) -> str:
    if not r.messages or r.client_cpu_s is None:
        return ""
    client = r.client_cpu_s * 1e6 / r.messages
    server = "?" if r.server_cpu_s is None else f"{r.server_cpu_s * 1e6 / r.messages:,.0f}"
    return f"{client:,.0f} · {server}"


def _notes(r: Any) -> str:
    notes = []
    if r.scenario == "mixed":
        notes.append(f"pushed {r.pushed:,}; push→handler p50 {_num(r.e2e_p50_ms)} p99 {_num(r.e2e_p99_ms)} ms; "
                     f"{r.backlog:,} left" + ("" if r.kept_up is None else
                                               ", kept up" if r.kept_up else ", [red]fell behind[/]"))
    elif r.backlog is not None:
        notes.append(f"backlog {r.backlog:,}" + (" [yellow](drained)[/]" if r.drained else ""))
    if r.loop_lag_p99_ms is not None:
        notes.append(f"loop lag p99 {_num(r.loop_lag_p99_ms)} max {_num(r.loop_lag_max_ms)} ms "
                     f"(idle loop {_num(r.idle_lag_p99_ms)} / {_num(r.idle_lag_max_ms)})")
    if r.truncated:
        notes.append("[yellow]hit the time cap[/]")
    if r.errors:
        notes.append(f"[red]{r.errors} error(s): {r.error}[/]")
    return "; ".join(notes)
