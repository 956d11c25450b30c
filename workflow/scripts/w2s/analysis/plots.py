"""The big results plot, drawn from results/summary.csv alone.

Reading only the summary lets a researcher redraw the figure from whatever cells have finished, without
touching models or predictions. Nothing here names an intervention: they come from the summary's rows.
"""

from __future__ import annotations

import math
import os
import textwrap
from contextlib import ExitStack

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory

from w2s.analysis.summary import REFERENCE_COLUMN
from w2s.atomic import atomic_path

PAIR = ["task", "weak", "strong"]
KEYS = PAIR + ["intervention", "seed"]
METRICS = {"acc": "accuracy", "auroc": "AUROC"}
REQUIRED = KEYS + ["n_test"] + [f"{role}_{m}" for role in ("weak", "ceiling", "student", "pgr") for m in METRICS]

# PGR explodes when weak and strong nearly tie; beyond these bounds points are drawn on them.
PGR_LIMITS = (-1.0, 2.0)
# Where a task's PGR is undefined (no gap above the margin), a hollow marker sits this high in the PGR panel
# (axes fraction), in a strip of its own, so that it cannot be read as a PGR value.
UNDEFINED_Y = 0.035
UNDEFINED_NOTE = " no PGR:\n gap ≤ margin"
WEAK_COLOR, CEILING_COLOR = "0.5", "black"
# One colour per cell, none repeated: tab10, then tab20's light shades, then tab20b, 38 in all. Greys are
# left out, as they would read as the weak floor.
PALETTE = [
    c
    for c in (*colormaps["tab10"].colors, *colormaps["tab20"].colors[1::2], *colormaps["tab20b"].colors)
    if len(set(c)) > 1
]
STUDENT_MARKER, REFERENCE_MARKER = "o", "D"
BOUND_STYLES = {"weak": {"color": WEAK_COLOR, "marker": "s"}, "ceiling": {"color": CEILING_COLOR, "marker": "s"}}
# Extra x space before the ground-truth group, so that it reads as a break rather than a missing cell.
GROUP_GAP = 0.8
GROUP_LABELS = ("W2S students", "references\n(ground truth)")
TICK_NAMES = {"weak": "weak (floor)", "ceiling": "strong ceiling (GT)"}


def load_summary(path: str | os.PathLike) -> pd.DataFrame:
    summary = pd.read_csv(path, dtype={"task": str, "weak": str, "strong": str, "intervention": str})
    _require(summary, REQUIRED, f"summary {path}")
    return summary


def _require(summary: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, summary.columns))}")


def _check(summary: pd.DataFrame, metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, not {metric!r}")
    _require(summary, KEYS + [f"{role}_{metric}" for role in ("weak", "ceiling", "student", "pgr")], "summary")
    if summary.empty:
        raise ValueError("summary has no rows: no cell has finished yet")
    duplicated = summary[summary.duplicated(KEYS, keep=False)]
    if not duplicated.empty:
        raise ValueError(f"summary has several rows for one cell and seed:\n{duplicated[KEYS].to_string(index=False)}")


def _check_intervals(intervals: pd.DataFrame, metric: str) -> None:
    roles = ("weak", "ceiling", "student", "pgr")
    _require(
        intervals,
        PAIR + ["intervention", "n_seeds"] + [f"{r}_{metric}{end}" for r in roles for end in ("", "_lo", "_hi")],
        "aggregate table",
    )


def series_stats(summary: pd.DataFrame, metric: str = "acc", intervals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean, interval (lo, hi) and seed count of every plotted series: weak, each intervention, ceiling.

    One row per (task, weak, strong, series). Without `intervals` the interval is the min-max over seeds.
    With `intervals` (the aggregate table: seed means and bootstrap intervals over seeds and test
    examples) the mean and interval come from it, for the cells the summary holds.

    Weak and ceiling scores repeat on every intervention row of a seed, so they are taken once per seed:
    otherwise a seed with more finished interventions would weigh more in their mean.
    """
    _check(summary, metric)
    if intervals is not None:
        _check_intervals(intervals, metric)
        agg = intervals.merge(summary[PAIR + ["intervention"]].drop_duplicates(), on=PAIR + ["intervention"])
        frames = []
        for role in ("weak", "ceiling"):
            per_pair = agg.drop_duplicates(PAIR)
            frames.append(
                per_pair[PAIR].assign(
                    series=role,
                    mean=per_pair[f"{role}_{metric}"],
                    lo=per_pair[f"{role}_{metric}_lo"],
                    hi=per_pair[f"{role}_{metric}_hi"],
                    n=per_pair["n_seeds"],
                )
            )
        frames.append(
            agg[PAIR].assign(
                series=agg["intervention"],
                mean=agg[f"student_{metric}"],
                lo=agg[f"student_{metric}_lo"],
                hi=agg[f"student_{metric}_hi"],
                n=agg["n_seeds"],
            )
        )
        return pd.concat(frames, ignore_index=True)[PAIR + ["series", "mean", "lo", "hi", "n"]]
    spread = {"mean": "mean", "lo": "min", "hi": "max", "n": "count"}
    per_seed = summary.drop_duplicates(PAIR + ["seed"])
    frames = [
        per_seed.groupby(PAIR, sort=False)[f"{role}_{metric}"].agg(**spread).reset_index().assign(series=role)
        for role in ("weak", "ceiling")
    ]
    students = summary.groupby(PAIR + ["intervention"], sort=False)[f"student_{metric}"].agg(**spread)
    frames.append(students.reset_index().rename(columns={"intervention": "series"}))
    return pd.concat(frames, ignore_index=True)[PAIR + ["series", "mean", "lo", "hi", "n"]]


def reference_cells(summary: pd.DataFrame) -> set[str]:
    """Interventions whose student or probe learned ground truth labels; a summary written before the
    column existed has none."""
    if REFERENCE_COLUMN not in summary.columns:
        return set()
    # eq(True) rather than astype(bool): a summary concatenated with an older one holds NaN there.
    return set(summary.loc[summary[REFERENCE_COLUMN].eq(True), "intervention"])


def split_cells(summary: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(W2S students, ground-truth references), each in the summary's order."""
    references = reference_cells(summary)
    interventions = list(dict.fromkeys(summary.intervention))
    return [n for n in interventions if n not in references], [n for n in interventions if n in references]


def cell_colors(names: list[str]) -> dict[str, tuple]:
    """A distinct colour for each name; past the palette, evenly spaced along turbo (short of its near-black
    ends, and it holds no grey)."""
    n = len(names)
    colors = PALETTE[:n] if n <= len(PALETTE) else [tuple(c) for c in colormaps["turbo"](np.linspace(0.05, 0.95, n))]
    return dict(zip(names, colors))


def cell_styles(summary: pd.DataFrame) -> dict[str, dict]:
    """Colour and marker of every intervention, the same in every panel: references are diamonds."""
    students, references = split_cells(summary)
    colors = cell_colors(students + references)
    return {
        name: {"color": colors[name], "marker": REFERENCE_MARKER if name in references else STUDENT_MARKER}
        for name in students + references
    }


def _positions(first: list[str], second: list[str], start: float = 0.0) -> dict[str, float]:
    """x of each name, one apart, with GROUP_GAP more before the second group."""
    xs = {name: start + i for i, name in enumerate(first)}
    xs.update({name: start + len(first) + GROUP_GAP + i for i, name in enumerate(second)})
    return xs


def _mark_groups(ax: Axes, students: list[float], references: list[float]) -> None:
    """A dashed line between the W2S students and the ground-truth group, each named at the top of the axes."""
    if students:
        ax.axvline((max(students) + min(references)) / 2, color="0.4", linestyle="--", linewidth=0.8, gid="separator")
    at_top = blended_transform_factory(ax.transData, ax.transAxes)
    for xs, text in zip((students, references), GROUP_LABELS):
        if xs:
            label = ax.text(np.mean(xs), 0.98, text, transform=at_top, ha="center", va="top", fontsize=8)
            label.set(color="0.3", gid="group")


def _headroom(ax: Axes, fraction: float = 0.14) -> None:
    # The group labels sit inside the top of the axes; this keeps points from running under them.
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top + fraction * (top - bottom))


def _name_ticks(ax: Axes, xs: list[float], names: list[str]) -> None:
    """A label under every point, so that the legend is not needed to tell them apart."""
    ax.set_xticks(xs, names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)


def _seed_label(counts: pd.Series) -> str:
    lo, hi = int(counts.min()), int(counts.max())
    return f"{lo} seed{'s' if lo != 1 else ''}" if lo == hi else f"{lo}–{hi} seeds"


def _draw_task(
    ax: Axes, task: str, stats: pd.DataFrame, styles: dict[str, dict], references: list[str], metric: str
) -> None:
    rows = stats[stats.task == task]
    pairs = list(dict.fromkeys(zip(rows.weak, rows.strong)))
    students = [name for name in styles if name not in references]
    # The ceiling learns ground truth too, so it closes the references' group.
    first, second = ["weak"] + students, references + ["ceiling"]
    styles = {**styles, **BOUND_STYLES}
    width = len(first) + GROUP_GAP + len(second) + 1
    ticks, names, centres = [], [], []
    for k, (weak, strong) in enumerate(pairs):
        # Every intervention keeps its slot in every cluster, so a missing cell shows as a gap, not a shift.
        xs = _positions(first, second, start=k * width)
        ticks += xs.values()
        names += [TICK_NAMES.get(name, name) for name in xs]
        centres.append(np.mean(list(xs.values())))
        pair = rows[(rows.weak == weak) & (rows.strong == strong)].set_index("series")
        left, right = xs["weak"] - 0.5, xs["ceiling"] + 0.5
        floor, ceiling = pair.loc["weak", "mean"], pair.loc["ceiling", "mean"]
        ax.fill_between([left, right], floor, ceiling, color="0.85", alpha=0.5, linewidth=0, zorder=0)
        ax.hlines(floor, left, right, colors=WEAK_COLOR, linestyles="--", linewidth=1.2, zorder=1)
        ax.hlines(ceiling, left, right, colors=CEILING_COLOR, linestyles="-", linewidth=1.2, zorder=1)
        for name, x in xs.items():
            if name not in pair.index:
                continue
            s = pair.loc[name]
            yerr = None if s["lo"] == s["hi"] else [[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]]
            container = ax.errorbar(
                [x],
                [s["mean"]],
                yerr=yerr,
                linestyle="none",
                markersize=7,
                capsize=3,
                elinewidth=1.2,
                # A dark rim keeps the palette's light shades visible on the grey band.
                markeredgecolor="0.2",
                markeredgewidth=0.7,
                zorder=3,
                **styles[name],
            )
            container.lines[0].set_gid(f"{task}|{weak}|{strong}|{name}")
        _mark_groups(ax, [xs[n] for n in students], [xs[n] for n in second])
    _name_ticks(ax, ticks, names)
    ax.set_xlim(-0.6, len(pairs) * width - 1.4)
    _headroom(ax)
    top = ax.secondary_xaxis("top")
    top.set_xticks(centres, [f"{w} → {s}" for w, s in pairs])
    top.tick_params(length=0)
    ax.set_title(f"{task}  ({_seed_label(rows.n)})")
    ax.set_ylabel(f"test {METRICS[metric]}")
    ax.grid(axis="y", alpha=0.3)


def pgr_stats(
    summary: pd.DataFrame, metric: str = "acc", intervals: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PGR per task (with its interval, pgr_lo and pgr_hi) and its median across tasks, per (weak, strong,
    intervention).

    Per task, PGR is the mean of the seeds' PGRs, without an interval; with `intervals` (the aggregate
    table) it is the PGR of the seed means, as in results/median_pgr.csv, which a seed with a tiny gap
    cannot dominate, and its bootstrap interval.
    """
    _check(summary, metric)
    keys = PAIR + ["intervention"]
    if intervals is not None:
        _check_intervals(intervals, metric)
        cells = summary[keys].drop_duplicates()
        columns = {f"pgr_{metric}{end}": f"pgr{end}" for end in ("", "_lo", "_hi")}
        per_task = cells.merge(intervals, on=keys)[keys + list(columns)].rename(columns=columns)
    else:
        per_task = summary.groupby(keys, sort=False)[f"pgr_{metric}"].mean().rename("pgr").reset_index()
        per_task = per_task.assign(pgr_lo=np.nan, pgr_hi=np.nan)
    # Tasks without a PGR are left out of the median and of n_tasks.
    median = per_task.groupby(["weak", "strong", "intervention"], sort=False)["pgr"].agg(["median", "count"])
    return per_task, median.rename(columns={"count": "n_tasks"}).reset_index()


def _undefined_strip(ax: Axes) -> None:
    """The shaded strip at the bottom of the PGR panel that holds the hollow markers of undefined PGRs: named
    on the right, and without y ticks, so that nothing in it reads as a value."""
    ax.add_patch(Rectangle((0, 0), 1, 2 * UNDEFINED_Y, transform=ax.transAxes, color="0.92", linewidth=0, zorder=0))
    bottom, top = ax.get_ylim()
    above = bottom + 2 * UNDEFINED_Y * (top - bottom)
    ax.set_yticks([t for t in ax.get_yticks() if above <= t <= top])
    note = ax.text(1.0, UNDEFINED_Y, UNDEFINED_NOTE, transform=ax.transAxes, va="center", ha="left", fontsize=8)
    note.set(gid="undefined_note")


def _draw_pgr(
    ax: Axes,
    summary: pd.DataFrame,
    styles: dict[str, dict],
    references: list[str],
    metric: str,
    intervals: pd.DataFrame | None,
) -> None:
    per_task, median = pgr_stats(summary, metric, intervals)
    pairs = list(dict.fromkeys(zip(median.weak, median.strong)))
    students = [name for name in styles if name not in references]
    slots = _positions(students, references)
    # Pairs share an intervention's slot side by side, and within a pair each task keeps its own offset,
    # so that the tasks' interval bars do not hide each other.
    pair_width = 0.7 / len(pairs)
    tasks = list(dict.fromkeys(per_task.task))
    task_offsets = dict(zip(tasks, np.linspace(-0.3, 0.3, len(tasks)) * pair_width if len(tasks) > 1 else [0.0]))
    pair_markers = ["o", "s", "^", "v", "D", "P", "X", "*"]
    lo, hi = PGR_LIMITS
    at_bottom = blended_transform_factory(ax.transData, ax.transAxes)
    handles = []
    for k, (weak, strong) in enumerate(pairs):
        marker = pair_markers[k % len(pair_markers)]
        handles.append(Line2D([], [], color="0.3", marker=marker, linestyle="none", label=f"{weak} → {strong}"))
        for name, slot in slots.items():
            color = styles[name]["color"]
            x = slot + (k - (len(pairs) - 1) / 2) * pair_width
            key = (median.weak == weak) & (median.strong == strong) & (median.intervention == name)
            if not key.any():
                continue
            cell = per_task[(per_task.weak == weak) & (per_task.strong == strong) & (per_task.intervention == name)]
            xs = x + cell.task.map(task_offsets).to_numpy(dtype=float)
            values = cell.pgr.to_numpy(dtype=float)
            # Points beyond PGR_LIMITS sit on them as triangles pointing the way they went.
            for mask, mark in ((values < lo, "v"), (values > hi, "^"), ((values >= lo) & (values <= hi), marker)):
                if mask.any():
                    ax.plot(
                        xs[mask],
                        np.clip(values[mask], lo, hi),
                        linestyle="none",
                        marker=mark,
                        color=color,
                        alpha=0.35,
                        markersize=5,
                        zorder=2,
                        gid=f"tasks|{weak}|{strong}|{name}",
                    )
            for task_x, task in zip(xs[np.isnan(values)], cell.task[np.isnan(values)]):
                ax.plot(
                    [task_x],
                    [UNDEFINED_Y],
                    transform=at_bottom,
                    linestyle="none",
                    marker=marker,
                    markerfacecolor="none",
                    markeredgecolor=color,
                    markersize=6,
                    zorder=2,
                    gid=f"undefined|{task}|{weak}|{strong}|{name}",
                )
            for task_x, task, bar_lo, bar_hi in zip(xs, cell.task, cell.pgr_lo, cell.pgr_hi):
                if np.isfinite(bar_lo) and np.isfinite(bar_hi):
                    ax.vlines(
                        task_x,
                        *np.clip([bar_lo, bar_hi], lo, hi),
                        color=color,
                        alpha=0.7,
                        linewidth=1.5,
                        zorder=2,
                        gid=f"pgr_interval|{task}|{weak}|{strong}|{name}",
                    )
            m = float(median.loc[key, "median"].iloc[0])
            if np.isnan(m):
                # No task of this cell has a PGR: its median is a hollow marker too, not a value.
                ax.plot(
                    [x],
                    [UNDEFINED_Y],
                    transform=at_bottom,
                    linestyle="none",
                    marker=marker,
                    markerfacecolor="none",
                    markeredgecolor=color,
                    markeredgewidth=1.5,
                    markersize=10,
                    zorder=3,
                    gid=f"median_undefined|{weak}|{strong}|{name}",
                )
                continue
            shown = float(np.clip(m, lo, hi))
            line = ax.plot(
                [x],
                [shown],
                linestyle="none",
                marker=marker if shown == m else ("^" if m > hi else "v"),
                color=color,
                markersize=10,
                markeredgecolor="black",
                markeredgewidth=1.2,
                zorder=3,
            )[0]
            line.set_gid(f"median|{weak}|{strong}|{name}")
            if shown != m:
                ax.annotate(f"{m:.2g}", (x, shown), xytext=(7, 0), textcoords="offset points", va="center", fontsize=8)
    for level, text in ((0.0, "weak"), (1.0, "ceiling")):
        ax.axhline(level, color="black", linewidth=1, linestyle=":" if level == 0 else "-", zorder=1)
        ax.text(
            1.0,
            level,
            f" {text}",
            transform=blended_transform_factory(ax.transAxes, ax.transData),
            va="center",
            ha="left",
            fontsize=8,
        )
    if references:
        _mark_groups(ax, [slots[n] for n in students], [slots[n] for n in references])
    _name_ticks(ax, list(slots.values()), list(slots))
    ax.set_xlim(-0.6, max(slots.values()) + 0.6)
    shown = np.clip(per_task[["pgr", "pgr_lo", "pgr_hi"]].to_numpy(dtype=float), lo, hi)
    shown = shown[np.isfinite(shown)]
    # Room at the bottom for the hollow markers of undefined PGRs, below every value.
    low = min(-0.2, shown.min() - 0.1) if shown.size else -0.2
    high = max(1.2, shown.max() + 0.1) if shown.size else 1.2
    ax.set_ylim(max(lo, low) - 0.05 - 0.1 * per_task.pgr.isna().any(), min(hi, high) + 0.05)

    if references:
        _headroom(ax)
    if per_task.pgr.isna().any():
        _undefined_strip(ax)
    n_tasks = per_task.task.nunique()
    ax.set_title(f"PGR by intervention (median of {n_tasks} task{'s' if n_tasks != 1 else ''})")
    ax.set_ylabel(f"PGR of test {METRICS[metric]}\n(0 = weak, 1 = ceiling)")
    ax.grid(axis="y", alpha=0.3)
    if len(pairs) > 1:
        ax.legend(handles=handles, fontsize=8, loc="best", title="weak → strong", title_fontsize=8)


def build_figure(summary: pd.DataFrame, metric: str = "acc", intervals: pd.DataFrame | None = None) -> Figure:
    """One panel per task (weak floor, each intervention's student, strong ceiling), then the PGR panel.

    Error bars are the aggregate table's bootstrap intervals when `intervals` is given, else min-max over seeds
    (and none on the PGR panel). Ground-truth references are drawn after the W2S students, apart from them.
    """
    stats = series_stats(summary, metric, intervals)
    tasks = list(dict.fromkeys(summary.task))
    styles = cell_styles(summary)
    references = split_cells(summary)[1]
    n_cells = len(styles)
    widest = max(stats[stats.task == t][["weak", "strong"]].drop_duplicates().shape[0] for t in tasks)
    # The PGR panel takes every cell left in the last row. A few interventions fit in a cell beside the
    # tasks; many get a row of their own rather than stretching every task panel.
    ncols = min(len(tasks) + (n_cells <= 6), 3)
    nrows = math.ceil((len(tasks) + 1) / ncols)
    pgr_row, pgr_col = divmod(len(tasks), ncols)
    pgr_span = ncols - pgr_col
    panel_w = max(4.6, 1.4 + 0.3 * widest * (n_cells + 3 + GROUP_GAP), (1.6 + 0.55 * n_cells) / pgr_span)
    # Room under each panel for the rotated intervention names.
    row_h = max(3.9, 0.5 * panel_w) + 0.06 * max(len(TICK_NAMES["ceiling"]), *map(len, styles))
    fig = Figure(figsize=(panel_w * ncols, row_h * nrows + 1.0), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(nrows, ncols)
    for i, task in enumerate(tasks):
        _draw_task(fig.add_subplot(grid[divmod(i, ncols)]), task, stats, styles, references, metric)
    _draw_pgr(fig.add_subplot(grid[pgr_row, pgr_col:]), summary, styles, references, metric, intervals)

    handles = [Line2D([], [], color=WEAK_COLOR, marker="s", linestyle="--", label="weak supervisor (floor)")]
    handles += [
        Line2D([], [], linestyle="none", label=f"{'reference' if name in references else 'student'}: {name}", **style)
        for name, style in styles.items()
    ]
    handles.append(Line2D([], [], color=CEILING_COLOR, marker="s", linestyle="-", label="strong ceiling (GT)"))
    # An inch per 10 characters of the longest label keeps long intervention names from running off the figure.
    longest = max(len(h.get_label()) for h in handles)
    ncol = max(1, min(len(handles), int(fig.get_figwidth() * 10 // (longest + 4))))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)
    bars = "95% bootstrap interval over seeds and test examples" if intervals is not None else "min–max over seeds"
    pgr_bars = ", bars: 95% bootstrap interval of its PGR" if intervals is not None else ""
    explanation = (
        f"points: mean over seeds, bars: {bars}; PGR panel: faint = one task{pgr_bars}, bold = median over tasks "
        "with a PGR (hollow, in the bottom strip: no PGR, as ceiling − weak is not above the margin); "
        "references learn ground truth labels and are not W2S results"
    )
    fig.suptitle(
        f"Weak-to-strong generalisation: test {METRICS[metric]}\n"
        + textwrap.fill(explanation, width=int(fig.get_figwidth() * 9))
    )
    return fig


def plot_results(
    summary: pd.DataFrame,
    png_path: str | os.PathLike,
    pdf_path: str | os.PathLike,
    metric: str = "acc",
    intervals: pd.DataFrame | None = None,
) -> None:
    save_figure(build_figure(summary, metric, intervals), png_path, pdf_path)


def save_figure(fig: Figure, png_path: str | os.PathLike, pdf_path: str | os.PathLike) -> None:
    # Both renames wait until both files are drawn, so a failure leaves neither behind.
    with ExitStack() as stack:
        png = stack.enter_context(atomic_path(png_path))
        pdf = stack.enter_context(atomic_path(pdf_path))
        # The temp names end in .part, so the format must be named.
        fig.savefig(png, format="png", dpi=150)
        fig.savefig(pdf, format="pdf")
