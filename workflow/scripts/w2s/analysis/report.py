"""`w2s-report`: the summary table and the big plot from whatever cells have finished, without retraining.

The Snakemake `summary` and `plots` rules need every cell; this command is for looking at a sweep that is
still running, or at one whose remaining cells failed. It writes beside, not over, the rules' outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from w2s.analysis.imitation_plot import build_imitation_figure
from w2s.analysis.pgr import default_min_gap
from w2s.analysis.plots import plot_results, save_figure
from w2s.analysis.size_plot import build_size_figure
from w2s.analysis.statistics import aggregate, cell_predictions, median_pgr
from w2s.analysis.summary import KEY_COLUMNS, finished_metric_files, summarise
from w2s.atomic import write_text
from w2s.layout import glob_pattern, metrics_path, prediction_paths


def build_report(results_dir: Path, out_dir: Path, metric: str, pgr_min_gap: float) -> int:
    files = finished_metric_files(results_dir)
    if not files:
        pattern = glob_pattern(metrics_path(str(results_dir)))
        raise SystemExit(f"no finished cells under {results_dir} (looked for {pattern})")
    summary = summarise(files, pgr_min_gap)
    write_text(summary.to_csv(index=False), out_dir / "summary.csv")
    cells = [prediction_paths({k: row[k] for k in KEY_COLUMNS}, str(results_dir)) for row in summary.to_dict("records")]
    intervals = aggregate(cell_predictions(cells), min_gap=pgr_min_gap)
    write_text(intervals.to_csv(index=False), out_dir / "aggregate.csv")
    write_text(median_pgr(intervals, metric).to_csv(index=False), out_dir / "median_pgr.csv")
    # Read back, as the plots rule reads it, so that both draw from the same table.
    intervals = pd.read_csv(out_dir / "aggregate.csv")
    plot_results(summary, out_dir / "w2s_results.png", out_dir / "w2s_results.pdf", metric, intervals)
    imitation = build_imitation_figure(summary, intervals)
    save_figure(imitation, out_dir / "w2s_imitation.png", out_dir / "w2s_imitation.pdf")
    if summary["strong_size"].nunique() > 1:
        save_figure(build_size_figure(summary, metric, intervals), out_dir / "w2s_size.png", out_dir / "w2s_size.pdf")
    return len(summary)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results directory of a run")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: RESULTS/partial)")
    parser.add_argument("--metric", choices=["acc", "auroc"], default="acc")
    parser.add_argument(
        "--pgr-min-gap",
        type=float,
        default=default_min_gap(),
        help="PGR is undefined where ceiling - weak is not above this margin (the config's analysis.pgr_min_gap; "
        "default: %(default)s)",
    )
    args = parser.parse_args(argv)
    out = args.out or args.results / "partial"
    n = build_report(args.results, out, args.metric, args.pgr_min_gap)
    print(
        f"{n} finished cell-seed rows -> {out}/summary.csv, aggregate.csv, median_pgr.csv, "
        "w2s_results.png/.pdf, w2s_imitation.png/.pdf",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
