"""Analysis stages: one cell's metrics, and the seed-aggregated table with its intervals."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from w2s.analysis.imitation import imitation_metrics
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
    """Write the cell's metrics and imitation rates with the config entries that produced them (and the
    probe's report)."""
    frames = [pd.read_parquet(p) for p in (test, weak, ceiling, student)]
    metrics = cell_metrics(*frames)
    # cell_metrics has checked that every model predicts exactly the test split's ids.
    ids = frames[0]["id"]
    preds = [f.set_index("id").loc[ids, "soft_pred"].to_numpy() for f in frames[1:]]
    record = {
        "cell": cell,
        "config": provenance,
        "metrics": metrics,
        "imitation": imitation_metrics(frames[0]["label"].to_numpy(), *preds),
    }
    if probe_report is not None:
        record["probe"] = json.loads(Path(probe_report).read_text())
    write_json(record, out)


def aggregate_stage(cells: list[dict], outputs: Mapping[str, PathLike], metric: str, pgr_min_gap: float) -> None:
    """Seed means with bootstrap intervals per cell, and median PGR per intervention across tasks."""
    agg = aggregate(cell_predictions(cells), min_gap=pgr_min_gap)
    write_text(agg.to_csv(index=False), outputs["cells"])
    write_text(median_pgr(agg, metric).to_csv(index=False), outputs["median"])
