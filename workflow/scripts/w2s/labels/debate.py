"""Debate-assisted weak supervision (Lang et al., "Debate Helps Weak-to-Strong Generalization"), as text.

A debater decoder plays two debaters on every example, each arguing for one answer, for a few rounds; the
transcript is appended to the example's text for the weak supervisors only. The student never sees a debate.
Transcripts depend on (task, debater, seed) and the generation parameters, so every cell of one debater shares
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from w2s.labels.interventions import cell_models
from w2s.labels.prompting import causal_lm_config

TEXT_FIELD, ANSWER_FIELD, TRANSCRIPT_FIELD = "{text}", "{answer}", "{transcript}"
# Between an example's text and its transcript, in what the debate-informed weak model reads.
TRANSCRIPT_SEPARATOR = "\n\nDebate:\n"
# The entry's keys that determine the transcripts (`replicas` only says how many weak models read them).
TRANSCRIPT_KEYS = ("turns", "max_new_tokens", "temperature", "batch_size", "answers", "template", "templates")

# generate(prompts, seed) -> one continuation per prompt.
Generate = Callable[[list[str], int], list[str]]


@dataclass(frozen=True)
class DebateSpec:
    """One debate entry's transcript parameters (defaults filled by the schema), for one task."""

    turns: int
    max_new_tokens: int
    temperature: float
    batch_size: int
    answers: tuple[str, str]  # what the debater of class 0 and of class 1 argue the answer is
    template: str

    @classmethod
    def from_entry(cls, debate: dict[str, Any], task: str) -> DebateSpec:
        return cls(
            turns=debate["turns"],
            max_new_tokens=debate["max_new_tokens"],
            temperature=debate["temperature"],
            batch_size=debate["batch_size"],
            answers=tuple(debate["answers"]),
            template=debate["templates"].get(task, debate["template"]),
        )

    def prompt(self, text: str, side: int, transcript: str) -> str:
        """What the debater of `side` reads before its next argument."""
        return (
            self.template.replace(TEXT_FIELD, text)
            .replace(TRANSCRIPT_FIELD, transcript)
            .replace(ANSWER_FIELD, self.answers[side])
        )

    def line(self, side: int, argument: str) -> str:
        return f"Debater for {self.answers[side]}: {argument}\n"


def argument(generated: str) -> str:
    """A generated continuation cut to its first line: a small model runs on into the other debater's turn."""
    return generated.strip().split("\n", 1)[0].strip()


def call_seed(seed: int, call: int) -> int:
    """The sampling seed of one generation call: distinct for every (seed, call) pair."""
    return int(np.random.SeedSequence([seed, call]).generate_state(1)[0])


def run_debates(generate: Generate, texts: Sequence[str], spec: DebateSpec, seed: int) -> list[str]:
    """Every example's transcript: in each of `turns` rounds the debater of class 0, then the debater of
    class 1, argues for its answer after reading the text and the transcript so far. One batched generation
    call per (round, side)."""
    transcripts = [""] * len(texts)
    if not texts:
        return transcripts
    for turn in range(spec.turns):
        for side in (0, 1):
            prompts = [spec.prompt(text, side, t) for text, t in zip(texts, transcripts)]
            generated = generate(prompts, call_seed(seed, 2 * turn + side))
            transcripts = [t + spec.line(side, argument(g)) for t, g in zip(transcripts, generated)]
    return transcripts


def with_transcript(text: str, transcript: str) -> str:
    """What a debate-informed weak model reads for one example."""
    return text + TRANSCRIPT_SEPARATOR + transcript


def debate_split(split: pd.DataFrame, transcripts: pd.DataFrame) -> pd.DataFrame:
    """A split table with each text followed by its example's transcript; every example must have one."""
    by_id = transcripts.set_index("id")["transcript"]
    missing = ~split["id"].isin(by_id.index)
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} examples have no debate transcript (e.g. {split['id'][missing].iloc[0]!r}); "
            "rerun the debate_transcripts job of this task and seed"
        )
    out = split.copy()
    out["text"] = [with_transcript(t, by_id[i]) for t, i in zip(split["text"], split["id"])]
    return out


def debater_alias(debate: dict[str, Any], strong: str) -> str:
    """The model that debates: the entry's `debater`, or the cell's strong model."""
    return debate.get("debater") or strong


def transcript_params(debate: dict[str, Any]) -> dict[str, Any]:
    return {k: debate[k] for k in TRANSCRIPT_KEYS}


def debate_problems(config: dict[str, Any], debate_cells: dict[str, dict]) -> list[str]:
    """Debaters that are undefined or no decoder, and one debater's transcripts asked for with different
    parameters, as messages naming the key and the fix. `debate_cells`: name -> intervention entry."""
    out = []
    params_of: dict[str, tuple[str, dict]] = {}
    for name, entry in debate_cells.items():
        debate = entry["debate"]
        at = f"interventions.{name}.debate"
        named = debate.get("debater")
        if named is not None and named not in config["models"]:
            out.append(f"config key '{at}.debater': model alias {named!r} is not defined under 'models'")
            continue
        strong_key = f"interventions.{name}.strong_models" if entry.get("strong_models") else "strong_models"
        for alias in [named] if named else cell_models(entry, config)["strong_models"]:
            causal, why = causal_lm_config(config["models"][alias])
            if causal is False:
                key = f"{at}.debater" if named else strong_key
                out.append(
                    f"config key '{key}': {alias!r} debates for intervention {name!r} but is not a decoder "
                    f"language model ({why}); set {at}.debater to the alias of a decoder (a causal LM such as "
                    "GPT-2, Llama, Qwen2, or offline_package SmolLM2-135M-Instruct)"
                )
            params = transcript_params(debate)
            first = params_of.setdefault(alias, (name, params))
            if first[1] != params:
                out.append(
                    f"config key '{at}': debater {alias!r} also debates for intervention {first[0]!r} with other "
                    f"transcript parameters ({', '.join(TRANSCRIPT_KEYS)}); one debater's transcripts are shared "
                    "by every cell, so give those the same values or another debater alias"
                )
    return out
