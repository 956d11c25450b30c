"""PGR only where there is a gap to recover: undefined, with the reason, when ceiling - weak is not above a margin.

PGR = (student - weak) / (ceiling - weak) divides by the gap, so a gap near zero turns test noise into any
value at all, and a negative gap turns a student worse than its supervisor into a large positive PGR
(weak 0.75, ceiling 0.72, student 0.70 gives 1.67). The margin is `analysis.pgr_min_gap` of the config.
"""

from __future__ import annotations

import math

import numpy as np

from w2s.config import load_schema

# Scores are ratios of counts, and float subtraction can put a gap equal to the margin a hair above it
# (0.72 - 0.70 > 0.02): a gap within this of the margin is not above it.
TOLERANCE = 1e-9


def default_min_gap() -> float:
    """The schema's default margin, for code that runs without a config (w2s-report)."""
    return float(load_schema()["properties"]["analysis"]["properties"]["pgr_min_gap"]["default"])


def check_min_gap(min_gap: float) -> float:
    if not (isinstance(min_gap, int | float) and math.isfinite(min_gap) and min_gap >= 0):
        raise ValueError(f"analysis.pgr_min_gap must be a number >= 0, not {min_gap!r}")
    return float(min_gap)


def why_undefined(student: float, weak: float, ceiling: float, min_gap: float) -> str:
    """Why PGR has no value for these scores; "" when it has one."""
    if not (math.isfinite(weak) and math.isfinite(ceiling)):
        return "weak or ceiling score undefined"
    gap = ceiling - weak
    if gap <= min_gap + TOLERANCE:
        return f"ceiling - weak = {gap:.4f}, not above the margin {min_gap:g}"
    if not math.isfinite(student):
        return "student score undefined"
    return ""


def gated_pgr(student: float, weak: float, ceiling: float, min_gap: float) -> tuple[float, str]:
    """(PGR, "") where the gap exceeds the margin, else (NaN, the reason)."""
    reason = why_undefined(student, weak, ceiling, min_gap)
    return (float("nan"), reason) if reason else ((student - weak) / (ceiling - weak), "")


def pgr_interval(
    student: np.ndarray, weak: np.ndarray, ceiling: np.ndarray, min_gap: float, level: float
) -> tuple[float, float, float]:
    """Percentile interval of PGR over bootstrap draws of the three scores, and the fraction of draws
    without a PGR (gap not above the margin, or a score undefined).

    Such a draw's PGR could be anything: it counts as beyond both ends of the interval, the worst case
    for each bound, rather than being left out, which would narrow the interval exactly when the gap is
    in doubt. A bound that would fall among those draws is undefined (NaN), as happens once more than
    (1 - level) / 2 of the draws have no PGR: roughly, once the gap's own interval reaches the margin.
    """
    gap = ceiling - weak
    defined = np.isfinite(student) & np.isfinite(gap) & (gap > min_gap + TOLERANCE)
    values = (student[defined] - weak[defined]) / gap[defined]
    n_undefined = int((~defined).sum())
    frac = n_undefined / len(gap) if len(gap) else float("nan")
    if values.size == 0:
        return float("nan"), float("nan"), frac
    # Percentiles of all draws with the undefined ones at -inf (low bound) or +inf (high bound): a bound
    # interpolated towards an infinity comes out infinite or NaN, and is undefined.
    with np.errstate(invalid="ignore"):
        lo = np.percentile(np.concatenate([np.full(n_undefined, -np.inf), values]), 100 * (1 - level) / 2)
        hi = np.percentile(np.concatenate([values, np.full(n_undefined, np.inf)]), 100 * (1 + level) / 2)
    lo, hi = (float(b) if np.isfinite(b) else float("nan") for b in (lo, hi))
    return lo, hi, frac
