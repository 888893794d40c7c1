"""Fold several `mqlite bench --json` reports into Markdown tables: median and range per row and ratio.

    for i in 1 2 3; do mqlite bench --compare --json > run$i.json; done
    python -m mqlite.bench.summarize run*.json

On a noisy machine one run proves little; the median of a few, with the range beside it, says
how far to trust a ratio. A goal counts as met in the summary when it was met in every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict


def _range(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def summarize(reports: list[dict]) -> str:
    lines = []
    runs = len(reports)
    servers = sorted({r["config"]["server"] for r in reports})
    lines.append(f"{runs} run(s) on {', '.join(servers)}; median (min–max) over runs.\n")
    rows: dict[tuple, list[dict]] = defaultdict(list)
    for rep in reports:
        for r in rep["results"]:
            rows[(r["scenario"], r["strategy"], r["clients"])].append(r)
    lines.append("| scenario | strategy | clients | msg/s | p50 ms | p99 ms | notes |")
    lines.append("|---|---|---|---|---|---|---|")
    for (scenario, strategy, clients), rs in rows.items():
        ok = [r for r in rs if not r["skipped"]]
        if not ok:
            lines.append(f"| {scenario} | {strategy} | {clients} | skipped | | | {rs[0]['skipped']} |")
            continue
        notes = []
        if any(r["drained"] for r in ok):
            notes.append(f"drained in {sum(r['drained'] for r in ok)}/{len(ok)}")
        if scenario == "mixed":
            notes.append("push→handler p50 " + _range([r["e2e_p50_ms"] for r in ok], ",.0f") + " ms, p99 "
                         + _range([r["e2e_p99_ms"] for r in ok], ",.0f") + " ms; left "
                         + _range([r["backlog"] for r in ok], ",.0f")
                         + "; kept up " + f"{sum(bool(r['kept_up']) for r in ok)}/{len(ok)}")
        if any(r["errors"] for r in ok):
            notes.append(f"errors: {ok[0]['error']}")
        lines.append(
            f"| {scenario} | {strategy} | {clients} | {_range([r['rate'] for r in ok], ',.0f')} | "
            f"{_range([r['p50_ms'] for r in ok], ',.2f')} | {_range([r['p99_ms'] for r in ok], ',.1f')} | "
            f"{'; '.join(notes)} |"
        )
    ratios: dict[tuple, list[dict]] = defaultdict(list)
    for rep in reports:
        for r in rep["ratios"]:
            ratios[(r["numerator"], r["denominator"], r["clients"], r["denominator_clients"])].append(r)
    if ratios:
        lines.append("\n| ratio | clients | value | goal | met |")
        lines.append("|---|---|---|---|---|")
        for (num, den, c, dc), rs in ratios.items():
            goal = rs[0]["goal"]
            met = "" if goal is None else f"{sum(bool(r['met']) for r in rs)}/{len(rs)} runs"
            where = str(c) if c == dc else f"{c} vs {dc}"
            lines.append(f"| {num} ÷ {den} | {where} | {_range([r['ratio'] for r in rs], ',.2f')}× | "
                         f"{'' if goal is None else f'≥ {goal:g}'} | {met} |")
    goals: dict[str, list[dict]] = defaultdict(list)
    for rep in reports:
        for g in rep["goals"]:
            goals[g["id"]].append(g)
    lines.append("\n| goal | clients | value | verdict |")
    lines.append("|---|---|---|---|")
    for gid, gs in goals.items():
        measured = [g for g in gs if g["value"] is not None]
        if not measured:
            lines.append(f"| {gs[0]['text']} | {gs[0]['clients']} | not measured | |")
            continue
        unit = " ms" if gid.endswith("_ms") else "×"
        n_met = sum(bool(g["met"]) for g in measured)
        verdict = "met" if n_met == len(measured) else ("short" if n_met == 0 else f"met in {n_met}/{len(measured)}")
        lines.append(f"| {gs[0]['text']} | {gs[0]['clients']} | {_range([g['value'] for g in measured], ',.2f')}{unit}"
                     f" | {verdict} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m mqlite.bench.summarize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", metavar="REPORT.json", help="`mqlite bench --json` output files")
    args = ap.parse_args()
    reports = []
    for path in args.reports:
        with open(path) as f:
            reports.append(json.load(f))
    print(summarize(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
