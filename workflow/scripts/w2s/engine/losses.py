"""Training losses on soft labels. A loss is built once per training run and called on every micro-batch.

`progress` is the fraction of optimiser steps done (0 to 1), for losses whose weight follows a schedule; its
value changes exactly when a new optimiser step begins, which tells a loss which predictions share parameters.
`train_labels` (every weak soft label of the training set) is given to every loss when it is built, for
losses that need training-set statistics; the others ignore it.

A new loss is one class here, whose constructor takes `train_labels` and, as keywords without defaults,
the config parameters its PARAMS declares; then its name in LOSSES. PARAMS is the one definition of those
parameters: the schema (workflow/schemas/config.schema.yaml, the loss's if/then block under
definitions.intervention, and the loss enum) and the loss table of config/README.md restate them, and
tests/test_loss_params.py fails until they agree with PARAMS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

Loss = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class Param:
    """A loss's config parameter: `schema` is the JSON-schema fragment its values must match, `doc` its
    meaning in one line."""

    name: str
    schema: dict[str, Any]
    default: Any
    doc: str


WARMUP_FRAC = Param(
    "warmup_frac",
    {"type": "number", "minimum": 0, "maximum": 1},
    0.2,
    "fraction of the optimiser steps over which the weight α rises linearly from 0",
)


def soft_targets(p1: torch.Tensor) -> torch.Tensor:
    """Probability of class 1 -> a 2-column target distribution."""
    p1 = p1.float()
    return torch.stack([1.0 - p1, p1], dim=-1)


def _xent_per_example(logits: torch.Tensor, target_p1: torch.Tensor) -> torch.Tensor:
    return -(soft_targets(target_p1) * F.log_softmax(logits.float(), dim=-1)).sum(-1)


def _as_labels(train_labels) -> torch.Tensor:
    labels = torch.as_tensor(train_labels, dtype=torch.float32).cpu()
    if labels.ndim != 1 or labels.numel() == 0:
        raise ValueError(f"train_labels must be a non-empty 1-d array, got shape {tuple(labels.shape)}")
    return labels


def _check_schedule(name: str, peak: float, warmup_frac: float) -> None:
    if peak < 0:
        raise ValueError(f"{name} must be >= 0, got {peak}")
    if not 0 <= warmup_frac <= 1:
        raise ValueError(f"warmup_frac must be in [0, 1], got {warmup_frac}")


def ramp(progress: float, peak: float, warmup_frac: float) -> float:
    """Linear from 0 at progress 0 to `peak` at `warmup_frac`, then flat.

    Linear rather than a step: a jump makes the auxiliary term switch on abruptly in the middle of training.
    """
    if progress >= warmup_frac:
        return peak
    return peak * progress / warmup_frac


class CrossEntropy:
    """Cross-entropy against soft labels: the naive weak-to-strong baseline (`xent`)."""

    PARAMS = ()

    def __init__(self, train_labels):
        del train_labels  # no training-set statistic matters here

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        return _xent_per_example(logits, labels).mean()


class _StepWindow:
    """Values of the current optimiser step so far, preceded by as many of the previous step's latest values
    as it takes to make one step's worth: the last effective batch, whose oldest entries are one step old.

    A step is recognised by its `progress`, which changes exactly when a new optimiser step begins.
    """

    def __init__(self):
        self.step: float | None = None
        self.previous = torch.empty(0)
        self.current = torch.empty(0)

    def push(self, x: torch.Tensor, step: float) -> torch.Tensor:
        if step != self.step:
            self.step, self.previous, self.current = step, self.current, torch.empty(0)
        self.current = torch.cat([self.current.to(x.device), x.detach().float()])
        older = max(0, len(self.previous) - len(self.current))
        return torch.cat([self.previous[len(self.previous) - older :].to(x.device), self.current])


class LogConfidence:
    """Burns et al.'s auxiliary confidence loss (`logconf`).

    The target mixes the weak label with the student's own hardened prediction:
    (1 - α)·weak + α·hardened, α ramping linearly from 0 to `alpha_max` over the first `warmup_frac` of
    training. Hardening keeps the weak labels' class balance as the paper measures it, by the mean of the
    soft labels: f0 = 1 - mean(weak p1) (over `train_labels` when given; the paper, over the batch) is the
    fraction of the student's recent predictions that harden to 0: the lowest round(f0·n) of the last n,
    i.e. a threshold at the f0-quantile of p1 (the paper's (1 - f0)-quantile of p0). Counting rather than
    interpolating keeps that fraction exact; equal predictions (a zero-initialised head predicts exactly 1/2
    for every example) are ranked by arrival, so that they do not all harden to one class. Not the share of
    weak labels below 1/2: a weak model whose labels lean to one class by a little (70% of them just above
    1/2, mean 0.55) would have its students' hardened targets lean to that class by far more.

    The last n are one effective batch (_StepWindow): the micro-batch alone when it is the whole batch, as in
    the paper; with smaller micro-batches, the step's earlier micro-batches and the previous step's latest
    predictions (under data parallelism, each process's share of them). Older predictions are never used:
    they come from a model whose output as a whole has since moved, so a threshold set by them puts a
    drifting batch entirely on one side, hardens it all to one class and drives the drift further. With a
    buffer of 512 recent predictions, a 16-step MPNet student on 128 tweets hardened every prediction to
    class 0 for its first 12 steps and ended predicting class 0 for every test example.
    """

    PARAMS = (
        Param(
            "alpha_max",
            {"type": "number", "minimum": 0, "maximum": 1},
            0.5,
            "weight α of the student's hardened prediction in the target after warmup",
        ),
        WARMUP_FRAC,
    )

    def __init__(self, train_labels, alpha_max: float, warmup_frac: float):
        _check_schedule("alpha_max", alpha_max, warmup_frac)
        if alpha_max > 1:
            raise ValueError(f"alpha_max must be <= 1 so that the target stays a distribution, got {alpha_max}")
        self.alpha_max, self.warmup_frac = alpha_max, warmup_frac
        self._preds = _StepWindow()
        if train_labels is None:
            # Without the training set, the class balance comes from the weak labels of the same window of
            # examples, which is meaningful even when a micro-batch holds one example.
            self.class0_frac, self._weak = None, _StepWindow()
        else:
            self.class0_frac, self._weak = 1.0 - float(_as_labels(train_labels).mean()), None

    def alpha(self, progress: float) -> float:
        return ramp(progress, self.alpha_max, self.warmup_frac)

    def hardened(self, p1: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        """Record this micro-batch's predictions and return them hardened to 0/1 (as floats)."""
        window = self._preds.push(p1, progress)
        class0_frac = self.class0_frac
        if class0_frac is None:
            class0_frac = 1.0 - float(self._weak.push(labels, progress).float().mean())
        order = torch.argsort(window, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(window), device=window.device)
        return (rank[len(window) - len(p1) :] >= round(class0_frac * len(window))).float()

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        p1 = logits.detach().float().softmax(-1)[:, 1]
        alpha = self.alpha(progress)
        target = (1 - alpha) * labels.float() + alpha * self.hardened(p1, labels, progress)
        return _xent_per_example(logits, target).mean()


class Entropy:
    """Cross-entropy on weak labels + α·H(student prediction) (`entropy`).

    The entropy is computed from the live logits so that its gradient lowers it, i.e. pushes each
    prediction toward the class it already leans to (a detached prediction would add no gradient).
    α ramps like logconf's, by default over the same steps (both take WARMUP_FRAC): early predictions are
    still arbitrary, and sharpening them before the weak labels have been fitted would lock them in; sharing
    the schedule also makes entropy and logconf differ only in the shape of the confidence term.
    `warmup_frac` 0 disables the ramp.
    """

    PARAMS = (
        Param("alpha", {"type": "number", "minimum": 0}, 0.5, "weight α of the entropy term after warmup"),
        WARMUP_FRAC,
    )

    def __init__(self, train_labels, alpha: float, warmup_frac: float):
        del train_labels  # no training-set statistic matters here
        _check_schedule("alpha", alpha, warmup_frac)
        self.alpha_max, self.warmup_frac = alpha, warmup_frac

    def alpha(self, progress: float) -> float:
        return ramp(progress, self.alpha_max, self.warmup_frac)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return (_xent_per_example(logits, labels) + self.alpha(progress) * entropy).mean()


class ConfidenceWindow:
    """Cross-entropy only on examples the student is unsure of, |p1 - 1/2| < radius (`window`).

    `radius` is a number in (0, 0.5] or "midweak": the median |weak - 1/2| over `train_labels`.
    The sum over admitted examples is divided by the whole micro-batch size, not by the number admitted:
    every admitted example then weighs the same whatever its micro-batch, and a micro-batch with none
    admitted gives an exact zero that is still a function of the logits, so that backward (and gradient
    accumulation) work unchanged and add nothing.
    """

    PARAMS = (
        Param(
            "radius",
            {"oneOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 0.5}, {"const": "midweak"}]},
            "midweak",
            'admits examples with |p1 - 1/2| < radius; "midweak": median |weak - 1/2| of train_labels',
        ),
    )

    def __init__(self, train_labels, radius: float | str):
        if radius == "midweak":
            if train_labels is None:
                raise ValueError('window radius "midweak" needs train_labels (the training set\'s weak labels)')
            radius = float((_as_labels(train_labels) - 0.5).abs().quantile(0.5))
        if isinstance(radius, str) or not 0 < radius <= 0.5:
            raise ValueError(f'window radius must be in (0, 0.5] or "midweak", got {radius!r}')
        self.radius = radius

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        p1 = logits.detach().float().softmax(-1)[:, 1]
        unsure = ((p1 - 0.5).abs() < self.radius).float()
        return (_xent_per_example(logits, labels) * unsure).sum() / len(logits)


LOSSES = {"xent": CrossEntropy, "logconf": LogConfidence, "entropy": Entropy, "window": ConfidenceWindow}


def build_loss(name: str, train_labels=None, **params) -> Loss:
    """The loss `name` with the intervention's `params`, those not given at their PARAMS default;
    `train_labels` are the training set's weak labels."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    loss = LOSSES[name]
    return loss(train_labels=train_labels, **{**{p.name: p.default for p in loss.PARAMS}, **params})
