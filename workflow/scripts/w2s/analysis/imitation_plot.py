"""The imitation figure, drawn from the summary and aggregate tables alone: per (task, weak, strong), how
much each student imitates its supervisor, its accuracy in the four (weak, ceiling) right/wrong regions,
and its deception score (w2s.analysis.imitation defines every rate)."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from w2s.analysis.imitation import RATES, REGIONS, SIZES
from w2s.analysis.plots import PAIR, _mark_groups, _name_ticks, _positions, _require, split_cells

REGION_NAMES = {
    "weak_right_ceiling_right": "weak ✓ ceiling ✓",
    "weak_right_ceiling_wrong": "weak ✓ ceiling ✗",
    "weak_wrong_ceiling_right": "weak ✗ ceiling ✓",
    "weak_wrong_ceiling_wrong": "weak ✗ ceiling ✗",
}
REGION_COLORS = dict(zip(REGIONS, ("tab:green", "tab:olive", "tab:red", "tab:purple")))
# panel -> (title, y label, {rate: (label, colour, marker)}); a panel's rates share an intervention's slot.
PANELS = {
    "imitation": (
        "student–weak agreement (imitation)",
        "agreement of hard labels",
        {
            "agreement": ("all test examples", "tab:blue", "o"),
            "agreement_weak_wrong": ("weak ✗", "tab:orange", "v"),
        },
    ),
    "regions": (
        "student accuracy by region",
        "test accuracy",
        {f"student_acc_{r}": (REGION_NAMES[r], REGION_COLORS[r], "o") for r in REGIONS},
    ),
    "deception": (
        "student error rate (deception)",
        "error rate",
        {
            "deception_score": ("deception score: weak ✗ ceiling ✓", REGION_COLORS["weak_wrong_ceiling_right"], "o"),
            "both_known_error": ("weak ✓ ceiling ✓", REGION_COLORS["weak_right_ceiling_right"], "s"),
        },
    ),
}
# The ceiling never saw a weak label: its agreement with the weak model is what shared difficulty gives.
CEILING_REFERENCES = {"agreement": "ceiling_agreement", "agreement_weak_wrong": "ceiling_agreement_weak_wrong"}
SLOT_WIDTH = 0.6
LEGEND_BAND_TOP = 1.45


def _size_label(rows: pd.DataFrame, rate: str) -> str:
    size = RATES[rate]
    if size not in rows:
        return ""
    lo, hi = int(rows[size].min()), int(rows[size].max())
    return f" (n = {lo})" if lo == hi else f" (n = {lo}–{hi})"


def _draw_panel(ax: Axes, rows: pd.DataFrame, panel: str, students: list[str], references: list[str]) -> None:
    title, ylabel, rates = PANELS[panel]
    slots = _positions(students, references)
    offsets = {rate: (i - (len(rates) - 1) / 2) * SLOT_WIDTH / len(rates) for i, rate in enumerate(rates)}
    by_name = rows.set_index("intervention")
    for rate, (label, color, marker) in rates.items():
        for name, x in slots.items():
            if name not in by_name.index:
                continue
            s = by_name.loc[name]
            if pd.isna(s[rate]):
                # An empty subset has no rate: nothing is drawn, and the legend's n says why.
                continue
            bar = [[s[rate] - s[f"{rate}_lo"]], [s[f"{rate}_hi"] - s[rate]]]
            container = ax.errorbar(
                [x + offsets[rate]],
                [s[rate]],
                yerr=None if pd.isna(s[f"{rate}_lo"]) else bar,
                linestyle="none",
                marker=marker,
                color=color,
                markersize=5,
                capsize=2,
                elinewidth=1.0,
            )
            container.lines[0].set_gid(f"{panel}|{'|'.join(s[PAIR])}|{name}|{rate}")
        ax.plot([], [], linestyle="none", marker=marker, color=color, label=label + _size_label(rows, rate))
        if rate in CEILING_REFERENCES:
            reference = CEILING_REFERENCES[rate]
            line = ax.axhline(rows[reference].mean(), color=color, linestyle=":", linewidth=1.2, zorder=1)
            line.set(gid=f"{panel}|{'|'.join(rows[PAIR].iloc[0])}|ceiling|{rate}", label=f"ceiling: {label}")
    if references:
        _mark_groups(ax, [slots[n] for n in students], [slots[n] for n in references])
    _name_ticks(ax, list(slots.values()), list(slots))
    ax.set_xlim(-0.6, max(slots.values()) + 0.6)
    # Rates stay in [0, 1]: the band above holds the group names and the legend, clear of every point.
    ax.set_ylim(-0.03, LEGEND_BAND_TOP)
    ax.set_yticks(np.linspace(0, 1, 6))
    task, weak, strong = rows[PAIR].iloc[0]
    ax.set_title(f"{task}: {weak} → {strong}\n{title}", fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.87), ncol=1 + (len(rates) > 2), frameon=False)


def build_imitation_figure(summary: pd.DataFrame, intervals: pd.DataFrame) -> Figure:
    """One row of three panels per (task, weak, strong) that the summary holds: imitation, accuracy by
    region, deception; points are the aggregate table's pooled rates with their 95% bootstrap intervals."""
    _require(summary, PAIR + ["intervention"], "summary")
    columns = [f"{rate}{end}" for rate in RATES for end in ("", "_lo", "_hi")]
    _require(intervals, PAIR + ["intervention"] + columns + SIZES, "aggregate table")
    students, references = split_cells(summary)
    cells = intervals.merge(summary[PAIR + ["intervention"]].drop_duplicates(), on=PAIR + ["intervention"])
    if cells.empty:
        raise ValueError("the aggregate table holds none of the summary's cells")
    pairs = list(dict.fromkeys(map(tuple, cells[PAIR].to_numpy())))
    width = max(4.5, 1.2 + 0.45 * (len(students) + len(references)))
    fig = Figure(figsize=(3 * width, 4.6 * len(pairs) + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(pairs), len(PANELS), squeeze=False)
    for row, pair in zip(axes, pairs):
        rows = cells[(cells[PAIR] == list(pair)).all(axis=1)]
        for ax, panel in zip(row, PANELS):
            _draw_panel(ax, rows, panel, students, references)
    explanation = (
        "rates pooled over seeds, bars: 95% bootstrap interval over seeds and test examples; n: examples in the "
        "subset, summed over seeds (none: no point); dotted: the ceiling, which never saw a weak label"
    )
    fig.suptitle(
        "Imitation and deception on the test split\n" + textwrap.fill(explanation, width=int(fig.get_figwidth() * 9))
    )
    return fig
