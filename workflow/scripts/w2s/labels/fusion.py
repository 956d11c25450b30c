"""Dynamic logit fusion ("On Giant's Shoulders", Fan et al., 2024) and proxy-tuning at the answer position,
on numpy arrays of next-token log-probabilities over one shared vocabulary.

A large base model L (log-probabilities l), a small base model S (s) and S finetuned into a task expert S_ft
(f) are fused as softmax(l + a (f - s)). Proxy-tuning fixes a. The dynamic version picks, for every example,
the a at which the fused distribution moves away from L by as much as the expert moved away from S:
KL(fused_a || L) = KL(S_ft || S), both over the whole vocabulary at the position where the answer word starts.

Why bisection finds that a: fused_a is L tilted by exp(a d), d = f - s. With Z(a) = E_L[exp(a d)],
g(a) = KL(fused_a || L) = a E_a[d] - log Z(a), so g'(a) = a Var_a[d] >= 0: g starts at g(0) = 0 and never
falls. It rises strictly unless d is constant wherever L puts mass, and then fused_a is L for every a. So at
most one a meets the target, found by bisection on [0, alpha_max]; where even g(alpha_max) falls short of the
target, the example takes alpha_max and is counted as capped. g is bounded, too: as a grows, fused_a tends to
L restricted to the tokens where d is largest, at a distance of -log L(those tokens), and an expert that moved
further than that is out of reach at any weight.

A label word of several tokens is scored teacher-forced, token by token, with the one a chosen at its first
token: the expert's shift is measured where the answer is decided, and the later tokens only spell it out.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_softmax

from w2s.labels.interventions import cell_models
from w2s.labels.prompting import PromptSpec, causal_lm_config

DYNAMIC = "dynamic"
# Bisection stops once the bracket is this fraction of alpha_max wide: 20 halvings.
ALPHA_TOLERANCE = 1e-6
# An expert whose shift KL(S_ft || S) is below this (nats) did not move, up to float error: its weight is 0.
NO_SHIFT = 1e-12


@dataclass(frozen=True)
class FusionSpec:
    """One fusion cell's `fusion` entry (defaults filled by the schema), for one task."""

    alpha: float | None  # None: chosen per example (dynamic); a number: proxy-tuning's fixed weight
    alpha_max: float
    prompt: PromptSpec
    batch_size: int

    @classmethod
    def from_entry(cls, fusion: dict[str, Any], task: str) -> FusionSpec:
        return cls(
            alpha=None if fusion["alpha"] == DYNAMIC else float(fusion["alpha"]),
            alpha_max=float(fusion["alpha_max"]),
            prompt=fusion_prompt(fusion, task),
            batch_size=fusion["batch_size"],
        )


def fusion_prompt(fusion: dict[str, Any], task: str) -> PromptSpec:
    """The zero-shot prompt of a fusion cell on `task`: the template and label words, as prompting cells read
    them (a fusion cell shows no demonstrations)."""
    return PromptSpec.from_entry({**fusion, "shots": 0, "demos": "weak"}, task)


def expert_key(prompt: PromptSpec) -> str:
    """The name of the expert that a template and label words train: a digest of exactly what changes it, so
    that fusion cells which differ in alpha only share one expert, and cells with other words get their own."""
    what = json.dumps([prompt.template, list(prompt.label_words)])
    return "expert-" + hashlib.sha256(what.encode()).hexdigest()[:12]


def normalised(logprobs: np.ndarray, name: str) -> np.ndarray:
    """Log-probabilities in float64, renormalised over the last axis (a shift of logits changes nothing)."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    if not np.isfinite(logprobs).all():
        raise ValueError(f"{name}: log-probabilities must be finite (a model gave a token no probability at all)")
    return log_softmax(logprobs, axis=-1)


def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(P || Q) over the last axis, from normalised log-probabilities."""
    return np.sum(np.exp(p) * (p - q), axis=-1)


def _tilt(strong: np.ndarray, shift: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    alpha = np.asarray(alpha, dtype=np.float64)
    return log_softmax(strong + alpha.reshape(alpha.shape + (1,) * (strong.ndim - alpha.ndim)) * shift, axis=-1)


def fuse(strong: np.ndarray, weak: np.ndarray, expert: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """log softmax(z_L + alpha (z_Sft - z_S)) over the last axis (the vocabulary), from the log-probabilities
    (or logits) of L, S and S_ft; `alpha` is one number, or one per leading index (an example)."""
    strong, weak, expert = normalised(strong, "L"), normalised(weak, "S"), normalised(expert, "S_ft")
    return _tilt(strong, expert - weak, alpha)


@dataclass(frozen=True)
class AlphaSolve:
    """Per example: the weight, the expert's shift KL(S_ft || S), the fused model's KL(fused || L) at that
    weight, and whether alpha_max fell short of the expert's shift (always False for a fixed weight)."""

    alpha: np.ndarray
    kl_expert: np.ndarray
    kl_fused: np.ndarray
    capped: np.ndarray


def solve_alpha(
    strong: np.ndarray, weak: np.ndarray, expert: np.ndarray, alpha: float | None, alpha_max: float
) -> AlphaSolve:
    """For each row (one example's answer position; shape (examples, vocabulary)): with `alpha` None, the a
    in [0, alpha_max] at which KL(fused_a || L) = KL(S_ft || S), by bisection (KL(fused_a || L) never falls
    as a grows: see the module's docstring), alpha_max where even that falls short, and 0 where the expert did
    not move (the fused model is then L whatever the weight); else `alpha` itself."""
    if not alpha_max > 0:
        raise ValueError(f"alpha_max must be positive, got {alpha_max}")
    strong, weak, expert = normalised(strong, "L"), normalised(weak, "S"), normalised(expert, "S_ft")
    shift = expert - weak
    target = kl(expert, weak)
    n = len(strong)
    if alpha is not None:
        chosen = np.full(n, float(alpha))
        return AlphaSolve(chosen, target, kl(_tilt(strong, shift, chosen), strong), np.zeros(n, dtype=bool))
    still = target <= NO_SHIFT
    capped = ~still & (kl(_tilt(strong, shift, alpha_max), strong) < target)
    lo, hi = np.zeros(n), np.full(n, float(alpha_max))
    for _ in range(math.ceil(math.log2(1 / ALPHA_TOLERANCE))):
        mid = (lo + hi) / 2
        above = kl(_tilt(strong, shift, mid), strong) >= target
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    chosen = np.where(still, 0.0, np.where(capped, alpha_max, (lo + hi) / 2))
    return AlphaSolve(chosen, target, kl(_tilt(strong, shift, chosen), strong), capped)


def word_logprob(logprobs: np.ndarray, word: Sequence[int]) -> np.ndarray:
    """Per example, the summed log-probability of a word's tokens; `logprobs` has shape (examples, positions,
    vocabulary), position t predicting the word's token t."""
    return logprobs[:, np.arange(len(word)), np.asarray(word)].sum(axis=-1)


def fuse_answers(per_word: Sequence[np.ndarray], words: Sequence[Sequence[int]], spec: FusionSpec) -> dict:
    """The columns of one batch of examples. `per_word[j]` holds the log-probabilities of L, S and S_ft (in
    that order along its first axis) at the positions of label word j, teacher-forced: shape (3, examples,
    len(words[j]), vocabulary), position 0 the answer position, which every word shares.

    Returns per example the weight and its KLs (AlphaSolve's fields), and the log-probabilities of the label
    words (columns: class 0, class 1) under the fused model, L alone and S_ft alone."""
    solve = solve_alpha(*per_word[0][:, :, 0], spec.alpha, spec.alpha_max)
    scores = {"fused": [], "strong": [], "expert": []}
    for (strong, weak, expert), word in zip(per_word, words):
        scores["fused"].append(word_logprob(fuse(strong, weak, expert, solve.alpha), word))
        scores["strong"].append(word_logprob(normalised(strong, "L"), word))
        scores["expert"].append(word_logprob(normalised(expert, "S_ft"), word))
    return {**vars(solve), **{name: np.stack(columns, axis=1) for name, columns in scores.items()}}


def fusion_problems(config: dict[str, Any], fusion_cells: list[str]) -> list[str]:
    """What a fusion cell needs of the config that the schema cannot see, as messages naming the key: decoders
    as weak and strong models (the strong model is L, the weak model S and, finetuned, S_ft), and a weak model
    that trains whole epochs (its expert's language-model finetuning counts no fractions of one)."""
    out = []
    experts = []
    for name in fusion_cells:
        cell = config["interventions"][name]
        models = cell_models(cell, config)
        for role in ("strong_models", "weak_models"):
            key = f"interventions.{name}.{role}" if cell.get(role) else role
            for alias in models[role]:
                causal, why = causal_lm_config(config["models"][alias])
                if causal is False:
                    out.append(
                        f"config key '{key}': {alias!r} is not a decoder language model ({why}), but the fusion "
                        f"intervention {name!r} fuses the next-token logits of the strong model, the weak model "
                        "and the weak model finetuned as a language model; list only decoders that share one "
                        f"tokenizer (e.g. SmolLM2-135M weak, SmolLM2-1.7B strong) under {key}"
                    )
        experts += [(name, alias) for alias in models["weak_models"]]
    for name, alias in experts:
        entry = config["models"][alias]
        if entry.get("max_steps") is not None:
            out.append(
                f"config key 'models.{alias}.max_steps': the fusion intervention {name!r} finetunes "
                f"{alias!r} into its expert for whole epochs; remove max_steps and set epochs"
            )
        if entry["epochs"] != int(entry["epochs"]):
            out.append(
                f"config key 'models.{alias}.epochs': {entry['epochs']} is not a whole number, but the fusion "
                f"intervention {name!r} finetunes {alias!r} into its expert for whole epochs; round it"
            )
    return out
