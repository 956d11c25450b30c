"""`w2s-report`: the summary table and the big plot from whatever cells have finished, without retraining.

The Snakemake `summary` and `plots` rules need every cell; this command is for looking at a sweep that is
still running, or at one whose remaining cells failed. It writes beside, not over, the rules' outputs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from w2s.atomic import write_text
from w2s.plots import plot_results
from w2s.summary import finished_metric_files, summarise


def build_report(results_dir: Path, out_dir: Path, metric: str) -> int:
    files = finished_metric_files(results_dir)
    if not files:
        raise SystemExit(f"no finished cells under {results_dir} (looked for */seed*/metrics/*/*/*.json)")
    summary = summarise(files)
    write_text(summary.to_csv(index=False), out_dir / "summary.csv")
    plot_results(summary, out_dir / "w2s_results.png", out_dir / "w2s_results.pdf", metric)
    return len(summary)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="results directory of a run")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: RESULTS/partial)")
    parser.add_argument("--metric", choices=["acc", "auroc"], default="acc")
    args = parser.parse_args(argv)
    out = args.out or args.results / "partial"
    n = build_report(args.results, out, args.metric)
    print(f"{n} finished cell-seed rows -> {out}/summary.csv, {out}/w2s_results.png, {out}/w2s_results.pdf",
          file=sys.stdout)


if __name__ == "__main__":
    main()
