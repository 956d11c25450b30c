import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from w2s.analysis import plots
from w2s.analysis.plots import build_figure, load_summary, plot_results

# (task, seed) -> weak, ceiling; (task, intervention, seed) -> student. AUROC is acc + 0.1 throughout.
BASE = {
    ("imdb", 0): (0.70, 0.90),
    ("imdb", 1): (0.72, 0.86),
    ("spam", 0): (0.80, 0.95),
    ("spam", 1): (0.84, 0.97),
}
STUDENT = {
    ("imdb", "xent", 0): 0.76,
    ("imdb", "xent", 1): 0.80,
    ("imdb", "logconf", 0): 0.84,
    ("imdb", "logconf", 1): 0.82,
    ("spam", "xent", 0): 0.85,
    ("spam", "xent", 1): 0.89,
    ("spam", "logconf", 0): 0.92,
    ("spam", "logconf", 1): 0.90,
}


def make_summary(base=BASE, student=STUDENT, weak="minilm", strong="mpnet"):
    rows = []
    for (task, intervention, seed), s in student.items():
        w, c = base[(task, seed)]
        rows.append(
            {
                "task": task,
                "weak": weak,
                "strong": strong,
                "intervention": intervention,
                "seed": seed,
                "n_test": 500,
                "weak_acc": w,
                "weak_auroc": w + 0.1,
                "ceiling_acc": c,
                "ceiling_auroc": c + 0.1,
                "student_acc": s,
                "student_auroc": s + 0.1,
                "pgr_acc": (s - w) / (c - w),
                "pgr_auroc": (s - w) / (c - w),
            }
        )
    return pd.DataFrame(rows)


def drawn(fig: Figure) -> dict[str, tuple]:
    """gid -> (y of the point, (low, high) of its error bar or None) for every point plotted with a gid."""
    points = {}
    for ax in fig.axes:
        for container in ax.containers:
            line = container.lines[0]
            bars = container.lines[2]
            segment = bars[0].get_segments()[0] if bars else None
            points[line.get_gid()] = (line.get_ydata()[0], None if segment is None else (segment[0][1], segment[1][1]))
        for line in ax.lines:
            if line.get_gid() and line.get_gid().startswith(("median|", "tasks|")):
                points.setdefault(line.get_gid(), []).extend(line.get_ydata())
    return points


@pytest.mark.parametrize("metric, shift", [("acc", 0.0), ("auroc", 0.1)])
def test_drawn_points_are_means_over_seeds_with_min_max_bars(metric, shift):
    points = drawn(build_figure(make_summary(), metric))
    expected = {
        "imdb|minilm|mpnet|weak": (0.71, 0.70, 0.72),
        "imdb|minilm|mpnet|ceiling": (0.88, 0.86, 0.90),
        "imdb|minilm|mpnet|xent": (0.78, 0.76, 0.80),
        "imdb|minilm|mpnet|logconf": (0.83, 0.82, 0.84),
        "spam|minilm|mpnet|weak": (0.82, 0.80, 0.84),
        "spam|minilm|mpnet|ceiling": (0.96, 0.95, 0.97),
        "spam|minilm|mpnet|xent": (0.87, 0.85, 0.89),
        "spam|minilm|mpnet|logconf": (0.91, 0.90, 0.92),
    }
    for gid, (mean, low, high) in expected.items():
        y, bar = points[gid]
        assert y == pytest.approx(mean + shift), gid
        assert bar == pytest.approx((low + shift, high + shift)), gid


def test_pgr_panel_shows_each_task_and_the_median_across_tasks():
    base = {**BASE, ("bbc", 0): (0.60, 0.80)}
    student = {**STUDENT, ("bbc", "xent", 0): 0.78, ("bbc", "logconf", 0): 0.61}
    points = drawn(build_figure(make_summary(base, student)))
    # xent PGR per task, mean over seeds: imdb (0.3 + 8/14) / 2, spam (1/3 + 5/13) / 2, bbc 0.9.
    imdb, spam = (0.3 + 8 / 14) / 2, (1 / 3 + 5 / 13) / 2
    assert sorted(points["tasks|minilm|mpnet|xent"]) == pytest.approx([spam, imdb, 0.9])
    assert points["median|minilm|mpnet|xent"] == pytest.approx([imdb])
    # logconf: imdb (0.7 + 10/14) / 2, spam (0.8 + 6/13) / 2, bbc 0.05 -> the median is spam's.
    assert points["median|minilm|mpnet|logconf"] == pytest.approx([(0.8 + 6 / 13) / 2])


def test_pgr_beyond_the_axis_is_drawn_on_its_edge_with_its_value():
    # A near-tie between weak and ceiling makes PGR explode.
    base = {("tie", 0): (0.80, 0.81)}
    fig = build_figure(make_summary(base, {("tie", "xent", 0): 0.90}))
    assert drawn(fig)["median|minilm|mpnet|xent"] == [plots.PGR_LIMITS[1]]
    assert "10" in [t.get_text() for ax in fig.axes for t in ax.texts]


def test_weak_and_ceiling_count_each_seed_once_when_cells_are_unfinished():
    # Seed 0 has two finished interventions, seed 1 only one: row-weighting would give 0.7 * 2/3 + 0.76 / 3.
    base = {("imdb", 0): (0.70, 0.90), ("imdb", 1): (0.76, 0.84)}
    student = {("imdb", "xent", 0): 0.8, ("imdb", "logconf", 0): 0.85, ("imdb", "xent", 1): 0.8}
    fig = build_figure(make_summary(base, student))
    points = drawn(fig)
    assert points["imdb|minilm|mpnet|weak"][0] == pytest.approx(0.73)
    assert points["imdb|minilm|mpnet|ceiling"][0] == pytest.approx(0.87)
    # logconf has one seed: no error bar, and the title says seeds vary.
    assert points["imdb|minilm|mpnet|logconf"] == (pytest.approx(0.85), None)
    assert any(ax.get_title() == "imdb  (1–2 seeds)" for ax in fig.axes)


def test_single_task_single_seed_and_unknown_intervention_names(tmp_path):
    summary = make_summary({("imdb", 0): (0.7, 0.9)}, {("imdb", "brand_new_method", 0): 0.75})
    fig = build_figure(summary)
    points = drawn(fig)
    assert points["imdb|minilm|mpnet|brand_new_method"] == (pytest.approx(0.75), None)
    assert points["median|minilm|mpnet|brand_new_method"] == pytest.approx([0.25])
    assert [ax.get_title() for ax in fig.axes][0] == "imdb  (1 seed)"
    legend_texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "student: brand_new_method" in legend_texts
    plot_results(summary, tmp_path / "one.png", tmp_path / "one.pdf")
    assert (tmp_path / "one.png").stat().st_size > 0


def test_several_pairs_get_their_own_clusters():
    summary = pd.concat([make_summary(), make_summary(weak="tiny")])
    summary.loc[summary.weak == "tiny", "weak_acc"] -= 0.1
    points = drawn(build_figure(summary))
    assert points["imdb|tiny|mpnet|weak"][0] == pytest.approx(0.61)
    assert points["imdb|minilm|mpnet|weak"][0] == pytest.approx(0.71)


def test_plot_results_writes_png_and_pdf(tmp_path):
    png, pdf = tmp_path / "out" / "results.png", tmp_path / "out" / "results.pdf"
    plot_results(make_summary(), png, pdf, metric="auroc")
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 1_000
    assert sorted(p.name for p in png.parent.iterdir()) == ["results.pdf", "results.png"]


@pytest.mark.parametrize("failing_call", [1, 2])
def test_aborted_plot_leaves_no_file(tmp_path, monkeypatch, failing_call):
    calls = []
    real_savefig = Figure.savefig

    def savefig(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == failing_call:
            raise RuntimeError("disk full")
        return real_savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_results(make_summary(), tmp_path / "results.png", tmp_path / "results.pdf")
    # Neither the finished-looking files nor their temporaries may remain, even when the PNG was drawn.
    assert list(tmp_path.iterdir()) == []


def test_load_summary_names_missing_columns(tmp_path):
    path = tmp_path / "summary.csv"
    make_summary().drop(columns=["student_auroc", "n_test"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) n_test, student_auroc"):
        load_summary(path)


def test_load_summary_round_trips_and_keeps_names_as_text(tmp_path):
    path = tmp_path / "summary.csv"
    summary = make_summary(weak="1e3", strong="007")
    summary.to_csv(path, index=False)
    loaded = load_summary(path)
    assert list(loaded.weak.unique()) == ["1e3"] and list(loaded.strong.unique()) == ["007"]
    pd.testing.assert_frame_equal(loaded.drop(columns=["weak", "strong"]), summary.drop(columns=["weak", "strong"]))


def test_plot_rejects_missing_metric_columns_empty_and_duplicated_summaries(tmp_path):
    with pytest.raises(ValueError, match="pgr_auroc"):
        build_figure(make_summary().drop(columns=["pgr_auroc"]), metric="auroc")
    with pytest.raises(ValueError, match="no rows"):
        build_figure(make_summary().iloc[:0])
    with pytest.raises(ValueError, match="several rows for one cell"):
        build_figure(pd.concat([make_summary(), make_summary().iloc[:1]]))
    with pytest.raises(ValueError, match="metric must be one of"):
        build_figure(make_summary(), metric="f1")
    assert list(tmp_path.iterdir()) == []


def test_nan_metrics_are_skipped_not_drawn_as_zero():
    summary = make_summary()
    summary.loc[
        (summary.task == "imdb") & (summary.intervention == "xent") & (summary.seed == 1), ["student_acc", "pgr_acc"]
    ] = np.nan
    points = drawn(build_figure(summary))
    assert points["imdb|minilm|mpnet|xent"] == (pytest.approx(0.76), None)


def intervals_for(summary, width=0.05):
    """An aggregate table for `summary`: seed means, with intervals of +-width around them."""
    keys = ["task", "weak", "strong", "intervention"]
    cols = {f"{r}_{m}": "mean" for r in ("weak", "ceiling", "student", "pgr") for m in ("acc", "auroc")}
    agg = summary.groupby(keys).agg(cols).reset_index().assign(n_seeds=2)
    for col in cols:
        agg[f"{col}_lo"], agg[f"{col}_hi"] = agg[col] - width, agg[col] + width
    return agg


def test_error_bars_are_the_aggregate_intervals_when_given():
    summary = make_summary()
    fig = build_figure(summary, intervals=intervals_for(summary))
    points = drawn(fig)
    y, (lo, hi) = points["imdb|minilm|mpnet|logconf"]
    assert (y, lo, hi) == pytest.approx((0.83, 0.78, 0.88))
    y, (lo, hi) = points["spam|minilm|mpnet|weak"]
    assert (y, lo, hi) == pytest.approx((0.82, 0.77, 0.87))
    assert "bootstrap interval" in fig._suptitle.get_text()


def test_intervals_of_cells_missing_from_the_summary_are_not_drawn():
    summary = make_summary()
    partial = summary[summary.intervention == "xent"]
    points = drawn(build_figure(partial, intervals=intervals_for(summary)))
    assert "imdb|minilm|mpnet|xent" in points and "imdb|minilm|mpnet|logconf" not in points


def sized_summary():
    small = make_summary(strong="base").assign(strong_size=110.0)
    student = {k: v + 0.05 for k, v in STUDENT.items()}
    large = make_summary(student=student, strong="large").assign(strong_size=340.0)
    return pd.concat([small, large], ignore_index=True)


def test_size_plot_draws_each_intervention_against_strong_model_size():
    from w2s.analysis.size_plot import build_size_figure

    fig = build_size_figure(sized_summary())
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.lines if line.get_gid()}
    xent = lines["imdb|minilm|xent"]
    assert list(xent.get_xdata()) == [110.0, 340.0]
    assert list(xent.get_ydata()) == pytest.approx([0.78, 0.83])
    assert list(lines["spam|minilm|ceiling"].get_ydata()) == pytest.approx([0.96, 0.96])
    assert fig.axes[0].get_xscale() == "log"


def test_size_plot_needs_sizes_and_several_of_them():
    from w2s.analysis.size_plot import build_size_figure

    with pytest.raises(ValueError, match="have no size"):
        build_size_figure(sized_summary().assign(strong_size=np.nan))
    with pytest.raises(ValueError, match="at least two sizes"):
        build_size_figure(make_summary().assign(strong_size=110.0))


def test_pgr_panel_uses_the_pgr_of_seed_means_when_intervals_are_given():
    # Seed 1's gap is tiny, so its PGR (2.0) dominates the mean of per-seed PGRs but not the PGR of means.
    base = {("t", 0): (0.70, 0.90), ("t", 1): (0.80, 0.81)}
    summary = make_summary(base, {("t", "xent", 0): 0.72, ("t", "xent", 1): 0.82})
    agg = intervals_for(summary).assign(pgr_acc=(0.77 - 0.75) / (0.855 - 0.75), pgr_auroc=0.0)
    plain = drawn(build_figure(summary))["median|minilm|mpnet|xent"]
    from_means = drawn(build_figure(summary, intervals=agg))["median|minilm|mpnet|xent"]
    assert plain == pytest.approx([(0.1 + 2.0) / 2]) and from_means == pytest.approx([0.02 / 0.105])


# The GT references of the default config sort among the students: finetune_lp_ground_truth comes before xent.
WITH_REFERENCES = ["entropy", "finetune_lp_ground_truth", "lp_ground_truth", "lp_weak", "xent"]
REFERENCES = {"finetune_lp_ground_truth", "lp_ground_truth"}


def summary_of(names, tasks=("imdb",), references=()):
    """One seed per task, each intervention's student a little above the last, `references` flagged."""
    student = {(task, name, 0): 0.72 + 0.01 * i for task in tasks for i, name in enumerate(names)}
    summary = make_summary({(task, 0): (0.7, 0.9) for task in tasks}, student)
    return summary.assign(reference=summary.intervention.isin(references))


def points_by_name(ax):
    """intervention (or weak/ceiling) -> (x, colour) of every gid-ed point of a panel."""
    found = {}
    for line in ax.lines:
        gid = line.get_gid() or ""
        if gid.count("|") == 3 and not gid.startswith("tasks|"):
            found[gid.rsplit("|", 1)[1]] = (line.get_xdata()[0], to_rgba(line.get_color()))
    return found


@pytest.mark.parametrize("n", [14, 20])
def test_every_intervention_gets_its_own_colour_the_same_in_every_panel(n):
    names = [f"cell{i:02d}" for i in range(n)]
    fig = build_figure(summary_of(names, tasks=("imdb", "spam"), references=names[-2:]))
    panels = [points_by_name(ax) for ax in fig.axes]
    colours = {name: panels[0][name][1] for name in names}
    assert len(set(colours.values())) == n
    # Grey and black belong to the weak floor and the ceiling.
    assert not {to_rgba(plots.WEAK_COLOR), to_rgba(plots.CEILING_COLOR)} & set(colours.values())
    for panel in panels[1:]:
        assert {name: panel[name][1] for name in names} == colours


def test_colours_stay_distinct_past_the_palette():
    names = [f"cell{i}" for i in range(len(plots.PALETTE) + 7)]
    assert len(set(plots.cell_colors(names).values())) == len(names)


def test_axes_are_labelled_and_every_point_is_named_under_it():
    fig = build_figure(summary_of(WITH_REFERENCES, references=REFERENCES))
    task, pgr = fig.axes
    assert task.get_ylabel() == "test accuracy" and pgr.get_ylabel().startswith("PGR of test accuracy")
    for ax in (task, pgr):
        ticks = {loc: label.get_text() for loc, label in zip(ax.get_xticks(), ax.get_xticklabels())}
        named = {name: ticks[x] for name, (x, _) in points_by_name(ax).items()}
        renamed = {"weak": "weak (floor)", "ceiling": "strong ceiling (GT)"}
        assert named == {name: renamed.get(name, name) for name in named}
        assert set(WITH_REFERENCES) <= set(named)


def test_references_are_drawn_after_the_students_and_apart_from_them():
    fig = build_figure(summary_of(WITH_REFERENCES, references=REFERENCES))
    for ax in fig.axes:
        xs = {name: x for name, (x, _) in points_by_name(ax).items()}
        students = [x for name, x in xs.items() if name not in REFERENCES | {"ceiling"}]
        references = [xs[name] for name in REFERENCES]
        (separator,) = [line.get_xdata()[0] for line in ax.lines if line.get_gid() == "separator"]
        # More than the one-slot step between neighbours: a gap, with the separator in it.
        assert max(students) + 1 < min(references)
        assert max(students) < separator < min(references)
        groups = {text.get_text(): text.get_position()[0] for text in ax.texts if text.get_gid() == "group"}
        assert min(references) <= groups["references\n(ground truth)"] <= max(xs.values())
    legend_texts = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert {"reference: lp_ground_truth", "student: lp_weak"} <= legend_texts


def test_summary_without_the_reference_column_draws_every_cell_as_a_student():
    old = summary_of(WITH_REFERENCES).drop(columns="reference")
    # A summary concatenated with an older one holds NaN where the old rows had no column.
    mixed = pd.concat([old, summary_of(["lp_ground_truth"], tasks=("spam",), references={"lp_ground_truth"})])
    assert plots.reference_cells(old) == set()
    assert plots.reference_cells(mixed) == {"lp_ground_truth"}
    pgr = build_figure(old).axes[-1]
    assert not [line for line in pgr.lines if line.get_gid() == "separator"]
    legend_texts = {t.get_text() for legend in build_figure(old).legends for t in legend.get_texts()}
    assert "student: lp_ground_truth" in legend_texts


def pgr_bars(fig):
    """gid -> (low, high) of every PGR interval bar."""
    return {
        c.get_gid(): tuple(y for _, y in c.get_segments()[0])
        for ax in fig.axes
        for c in ax.collections
        if (c.get_gid() or "").startswith("pgr_interval|")
    }


def test_pgr_error_bars_are_the_aggregate_intervals_clipped_to_the_limits():
    summary = make_summary()
    agg = intervals_for(summary, width=0.05)
    spam_xent = (agg.task == "spam") & (agg.intervention == "xent")
    agg.loc[spam_xent, ["pgr_acc_lo", "pgr_acc_hi"]] = [-3.0, 0.4]
    fig = build_figure(summary, intervals=agg)
    bars = pgr_bars(fig)
    assert len(bars) == 4
    for row in agg.itertuples():
        expected = (max(row.pgr_acc_lo, plots.PGR_LIMITS[0]), row.pgr_acc_hi)
        assert bars[f"pgr_interval|{row.task}|minilm|mpnet|{row.intervention}"] == pytest.approx(expected)
    assert "bootstrap interval of its PGR" in fig._suptitle.get_text()
    # Without the aggregate there is no interval to draw: each task's PGR stays a bare point.
    assert pgr_bars(build_figure(summary)) == {}


def undefined_markers(fig):
    """gid -> (x, y in axes fraction, face colour) of every hollow marker of an undefined PGR."""
    found = {}
    for ax in fig.axes:
        for line in ax.lines:
            gid = line.get_gid() or ""
            if gid.startswith(("undefined|", "median_undefined|")):
                y = ax.transAxes.inverted().transform(line.get_transform().transform((0, line.get_ydata()[0])))[1]
                found[gid] = (line.get_xdata()[0], y, line.get_markerfacecolor())
    return found


def without_pgr(summary, task):
    """The summary as w2s.analysis.summary writes it for a task whose ceiling is below its weak model."""
    summary = summary.copy()
    at = summary.task == task
    summary.loc[at, "ceiling_acc"] = summary.loc[at, "weak_acc"] - 0.03
    summary.loc[at, ["pgr_acc", "pgr_auroc"]] = np.nan
    return summary


@pytest.mark.parametrize("with_intervals", [False, True])
def test_tasks_without_a_pgr_are_hollow_markers_not_values(with_intervals):
    summary = without_pgr(make_summary(), "imdb")
    fig = build_figure(summary, intervals=intervals_for(summary) if with_intervals else None)
    points = drawn(fig)
    # Only spam's PGR is drawn and makes the median; imdb's is a hollow marker at the bottom of the panel.
    spam = (0.05 / 0.15 + 0.05 / 0.13) / 2  # intervals_for takes the summary's mean PGR too
    assert points["tasks|minilm|mpnet|xent"] == pytest.approx([spam])
    assert points["median|minilm|mpnet|xent"] == pytest.approx([spam])
    hollow = undefined_markers(fig)
    assert set(hollow) == {"undefined|imdb|minilm|mpnet|xent", "undefined|imdb|minilm|mpnet|logconf"}
    for _, y, face in hollow.values():
        assert y == pytest.approx(plots.UNDEFINED_Y) and face == "none"
    pgr_panel = fig.axes[-1]
    assert [t.get_text() for t in pgr_panel.texts if t.get_gid() == "undefined_note"] == [plots.UNDEFINED_NOTE]
    assert "median of 2 tasks" in pgr_panel.get_title()


def test_a_cell_without_any_pgr_has_a_hollow_median():
    summary = without_pgr(make_summary({("imdb", 0): (0.7, 0.9)}, {("imdb", "xent", 0): 0.8}), "imdb")
    fig = build_figure(summary)
    assert "median|minilm|mpnet|xent" not in drawn(fig)
    x, y, face = undefined_markers(fig)["median_undefined|minilm|mpnet|xent"]
    assert y == pytest.approx(plots.UNDEFINED_Y) and face == "none"
    assert plots.pgr_stats(summary)[1]["n_tasks"].tolist() == [0]


def imitation_table(summary, empty_region=None):
    """An aggregate table for `summary` with imitation rates: each rate of the i-th cell is 0.1 * (j + 1) +
    0.01 * i for the j-th rate, with intervals of +-0.05 and 10 examples in every subset."""
    from w2s.analysis.imitation import RATES, SIZES

    agg = intervals_for(summary)
    for j, rate in enumerate(RATES):
        agg[rate] = 0.1 * (j % 9 + 1) + 0.01 * np.arange(len(agg))
        agg[f"{rate}_lo"], agg[f"{rate}_hi"] = agg[rate] - 0.05, agg[rate] + 0.05
    for size in SIZES:
        agg[size] = 10
    if empty_region:
        agg[f"n_{empty_region}"] = 0
        agg[[f"student_acc_{empty_region}{end}" for end in ("", "_lo", "_hi")]] = np.nan
    return agg


def test_imitation_figure_draws_every_rate_from_the_aggregate_table():
    from w2s.analysis.imitation_plot import build_imitation_figure

    summary = make_summary()
    agg = imitation_table(summary, empty_region="weak_right_ceiling_wrong")
    fig = build_imitation_figure(summary, agg)
    assert len(fig.axes) == 2 * 3  # imdb and spam, three panels each
    points = drawn(fig)
    row = agg[(agg.task == "spam") & (agg.intervention == "logconf")].iloc[0]
    for panel, rate in (("imitation", "agreement_weak_wrong"), ("regions", "student_acc_weak_wrong_ceiling_right")):
        y, bar = points[f"{panel}|spam|minilm|mpnet|logconf|{rate}"]
        assert y == pytest.approx(row[rate]) and bar == pytest.approx((row[rate] - 0.05, row[rate] + 0.05))
    assert points["deception|spam|minilm|mpnet|logconf|deception_score"][0] == pytest.approx(row["deception_score"])
    assert points["deception|spam|minilm|mpnet|xent|both_known_error"][0] == pytest.approx(
        agg[(agg.task == "spam") & (agg.intervention == "xent")]["both_known_error"].item()
    )
    # An empty region has no point, and its legend entry says n = 0.
    assert not [gid for gid in points if gid.endswith("|student_acc_weak_right_ceiling_wrong")]
    legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "weak ✓ ceiling ✗ (n = 0)" in legends and "weak ✗ (n = 10)" in legends
    # The ceiling's agreement with the weak labels is the dotted reference of the imitation panel.
    (line,) = [ln for ln in fig.axes[0].lines if ln.get_gid() == "imitation|imdb|minilm|mpnet|ceiling|agreement"]
    imdb = agg[agg.task == "imdb"]
    assert line.get_ydata()[0] == pytest.approx(imdb["ceiling_agreement"].mean())


def test_imitation_figure_needs_the_rates_and_the_summarys_cells():
    from w2s.analysis.imitation_plot import build_imitation_figure

    summary = make_summary()
    with pytest.raises(ValueError, match="aggregate table lacks column.*deception_score"):
        build_imitation_figure(summary, imitation_table(summary).drop(columns=["deception_score"]))
    with pytest.raises(ValueError, match="none of the summary's cells"):
        build_imitation_figure(make_summary(weak="other"), imitation_table(summary))
    # Cells of the table that the summary lacks are not drawn.
    points = drawn(build_imitation_figure(summary[summary.intervention == "xent"], imitation_table(summary)))
    assert points and not [gid for gid in points if "|logconf|" in gid]
