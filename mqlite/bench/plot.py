"""Throughput against clients, one panel per scenario: mqlite and the references (`--sweep … --plot`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .suite import Report

PLOT_HINT = "matplotlib is not installed: pip install -e '.[plot]'"
_STYLE = {"mqlite": {"linewidth": 2.6, "color": "#c0392b", "zorder": 3}}


def require() -> None:
    """Raise ConfigError (one clear line) when matplotlib is missing; call before a long run."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(PLOT_HINT) from None


def sweep_plot(report: Report, path: str | Path) -> Path:
    """Draw msg/s against clients for every scenario and strategy of `report`; returns the file."""
    require()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r.scenario for r in report.results if not r.skipped))
    if not scenarios:
        raise ConfigError("nothing to plot: every row was skipped")
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.2 * len(scenarios), 4.4), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=False):
        rows = [r for r in report.results if r.scenario == scenario and not r.skipped and r.rate > 0]
        for strategy in dict.fromkeys(r.strategy for r in rows):
            points = sorted((r.clients, r.rate) for r in rows if r.strategy == strategy)
            xs, ys = zip(*points, strict=False)
            ax.plot(xs, ys, marker="o", label=strategy, **_STYLE.get(strategy, {"linewidth": 1.4}))
        ax.set_title(scenario)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        counts = sorted({r.clients for r in rows})
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_xlabel("client threads")
        ax.set_ylabel("messages / s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    cfg = report.config
    fig.suptitle(f"mqlite bench · {cfg.get('server')} · {cfg.get('body_size')} B bodies · "
                 f"{cfg.get('seconds') or cfg.get('messages')}{' s' if cfg.get('seconds') else ' msgs'} a point")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
