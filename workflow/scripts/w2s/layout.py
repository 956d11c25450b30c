"""Where a cell's test predictions live under a results directory: shared by the Snakefile's aggregate
rule and by `w2s-report`, which aggregates whatever cells have finished."""
from __future__ import annotations

PREDICTIONS = {
    "test": "{results}/{task}/seed{seed}/splits/test.parquet",
    "weak": "{results}/{task}/seed{seed}/weak/{weak}/test.parquet",
    "ceiling": "{results}/{task}/seed{seed}/ceiling/{strong}/test.parquet",
    "student": "{results}/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/test.parquet",
}


def prediction_paths(cell: dict, results: str = "results") -> dict:
    """The cell (task, weak, strong, intervention, seed) with `<who>_path` for test, weak, ceiling, student."""
    return {**cell, **{f"{who}_path": t.format(results=results, **cell) for who, t in PREDICTIONS.items()}}
