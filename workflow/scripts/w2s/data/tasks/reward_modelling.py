"""Preference pairs (Anthropic HH-RLHF): a conversation and two responses; label = which one was preferred."""

from __future__ import annotations

import os
import random

_ASSISTANT_TURN = "\n\nAssistant:"


def _split_shared_context(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(shared conversation, chosen continuation, rejected continuation), cut at the last shared
    assistant turn, so the two continuations start where the responses start to differ."""
    shared = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(_ASSISTANT_TURN, 0, shared)
    if cut < 0:
        return "", chosen.strip(), rejected.strip()
    start = cut + len(_ASSISTANT_TURN)
    return chosen[:cut].strip(), chosen[start:].strip(), rejected[start:].strip()


def has_preferred_side(record: dict) -> bool:
    """An identical pair has no preferred side."""
    return record["chosen"].strip() != record["rejected"].strip()


def format_anthropic_hh(record: dict, rng: random.Random) -> dict:
    # openai/weak-to-strong showed one side of the pair, which no model can judge (everything sat at
    # chance). Showing both responses in random order makes "is A the preferred one?" learnable.
    context, chosen, rejected = _split_shared_context(record["chosen"], record["rejected"])
    label = int(rng.random() < 0.5)
    first, second = (chosen, rejected) if label else (rejected, chosen)
    parts = [context, f"Response A: {first}", f"Response B: {second}"]
    return {"text": "\n\n".join(p for p in parts if p), "label": label}
