"""Analysis stages: one cell's metrics, and the seed-aggregated table with its intervals."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from w2s.analysis.statistics import aggregate, cell_predictions, median_pgr
from w2s.atomic import write_json, write_text
from w2s.scoring import cell_metrics

PathLike = str | Path


def metrics_stage(
    test: PathLike,
    weak: PathLike,
    ceiling: PathLike,
    student: PathLike,
    cell: dict,
    provenance: dict,
    out: PathLike,
    probe_report: PathLike | None = None,
) -> None:
    """Write the cell's metrics with the config entries that produced them (and the probe's report)."""
    metrics = cell_metrics(*(pd.read_parquet(p) for p in (test, weak, ceiling, student)))
    record = {"cell": cell, "config": provenance, "metrics": metrics}
    if probe_report is not None:
        record["probe"] = json.loads(Path(probe_report).read_text())
    write_json(record, out)


def aggregate_stage(cells: list[dict], outputs: Mapping[str, PathLike], metric: str) -> None:
    """Seed means with bootstrap intervals per cell, and median PGR per intervention across tasks."""
    agg = aggregate(cell_predictions(cells))
    write_text(agg.to_csv(index=False), outputs["cells"])
    write_text(median_pgr(agg, metric).to_csv(index=False), outputs["median"])
