"""Accuracy against strong-model size (Burns et al.'s Fig. 3 layout), drawn from the summary alone.

One panel per task; x is the strong model's parameter count (config `size`, carried into the summary as
`strong_size`), one line per intervention's student and one for the strong ceiling, and the weak floor
of each weak model as a dashed line. Drawn only when a sweep has several strong models.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from w2s.analysis.plots import BOUND_STYLES, METRICS, WEAK_COLOR, _require, cell_styles, reference_cells, series_stats

WEAK_LINESTYLES = ["--", ":", "-.", (0, (5, 1))]


def size_stats(summary: pd.DataFrame, metric: str = "acc", intervals: pd.DataFrame | None = None) -> pd.DataFrame:
    """series_stats with each row's strong-model size; refuses a summary whose strong models lack one."""
    _require(summary, ["strong_size"], "summary (size plot)")
    sizes = summary.drop_duplicates("strong").set_index("strong")["strong_size"]
    unsized = sorted(sizes[sizes.isna()].index)
    if unsized:
        raise ValueError(f"strong model(s) {', '.join(unsized)} have no size; set models.<alias>.size in the config")
    if sizes.nunique() < 2:
        raise ValueError("the size plot needs strong models of at least two sizes")
    stats = series_stats(summary, metric, intervals)
    return stats.assign(strong_size=stats["strong"].map(sizes)).sort_values("strong_size", kind="stable")


def _label(name: str, references: set[str]) -> str:
    if name == "ceiling":
        return "strong ceiling (GT)"
    return f"{'reference' if name in references else 'student'}: {name}"


def build_size_figure(summary: pd.DataFrame, metric: str = "acc", intervals: pd.DataFrame | None = None) -> Figure:
    stats = size_stats(summary, metric, intervals)
    tasks = list(dict.fromkeys(summary.task))
    styles = cell_styles(summary)
    references = reference_cells(summary)
    ncols = min(len(tasks), 3)
    nrows = math.ceil(len(tasks) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.2 * nrows + 1.2), layout="constrained")
    FigureCanvasAgg(fig)
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        rows = stats[stats.task == task]
        for k, weak in enumerate(dict.fromkeys(rows.weak)):
            of_weak = rows[rows.weak == weak]
            floor = of_weak[of_weak.series == "weak"]["mean"].mean()
            ax.axhline(
                floor,
                color=WEAK_COLOR,
                linestyle=WEAK_LINESTYLES[k % len(WEAK_LINESTYLES)],
                linewidth=1.2,
                label=f"weak: {weak}" if i == 0 else None,
            )
            for name, style in {"ceiling": BOUND_STYLES["ceiling"], **styles}.items():
                line = of_weak[of_weak.series == name]
                if line.empty:
                    continue
                err = [line["mean"] - line["lo"], line["hi"] - line["mean"]]
                container = ax.errorbar(
                    line["strong_size"],
                    line["mean"],
                    yerr=err,
                    capsize=3,
                    markersize=6,
                    linewidth=1.4 if name == "ceiling" else 1.0,
                    **style,
                    label=_label(name, references) if i == 0 and k == 0 else None,
                )
                container.lines[0].set_gid(f"{task}|{weak}|{name}")
        ax.set_xscale("log")
        ax.set_xlabel("strong model parameters (millions)")
        ax.set_ylabel(f"test {METRICS[metric]}")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(4, len(styles) + 2), frameon=False)
    fig.suptitle(f"Test {METRICS[metric]} against strong-model size")
    return fig
