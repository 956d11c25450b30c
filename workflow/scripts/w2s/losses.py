"""Training losses on soft labels. A loss is built once per training run and called on every micro-batch.

`progress` is the fraction of optimiser steps done (0 to 1), for losses whose weight follows a schedule.
A new loss is one class here plus its name in LOSSES (and in the schema's enum).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(p1: torch.Tensor) -> torch.Tensor:
    """Probability of class 1 -> a 2-column target distribution."""
    p1 = p1.float()
    return torch.stack([1.0 - p1, p1], dim=-1)


class CrossEntropy:
    """Cross-entropy against soft labels: the naive weak-to-strong baseline (`xent`)."""

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, progress: float) -> torch.Tensor:
        return -(soft_targets(labels) * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


LOSSES = {"xent": CrossEntropy}


def build_loss(name: str, **params) -> CrossEntropy:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**params)
