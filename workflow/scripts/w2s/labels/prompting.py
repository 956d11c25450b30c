"""Prompting cells, Burns et al.'s zero- and few-shot baselines, as text: the task template around an example,
its label words, and the k demonstrations placed before it.

No model is trained: the strong decoder reads each test example in the template and p(class 1) is the
softmax over the log-probabilities of the two label words. Demonstrations come from strong_train with the
weak model's labels (legal in W2S: the student side never sees ground truth) or with ground truth (a
reference, never a W2S result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from w2s.data.materialize import MODEL_SOURCES
from w2s.labels.interventions import cell_models

TEXT_FIELD = "{text}"
DEMO_SEPARATOR = "\n\n"
# The config.json classes whose checkpoints carry a next-token head (w2s.engine.modeling's decoder test
# without its transformers import, which loads torch: the config is checked when the Snakefile is parsed).
CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")


@dataclass(frozen=True)
class PromptSpec:
    """One prompting cell's `prompt` entry (defaults filled by the schema), for one task."""

    shots: int
    demos: str  # "weak" or "ground_truth"
    template: str
    label_words: tuple[str, str]  # class 0, class 1

    @classmethod
    def from_entry(cls, prompt: dict[str, Any], task: str) -> PromptSpec:
        return cls(
            shots=prompt["shots"],
            demos=prompt["demos"],
            template=prompt["templates"].get(task, prompt["template"]),
            label_words=tuple(prompt["label_words"]),
        )

    def render(self, text: str, demos: list[tuple[str, int]] = ()) -> str:
        """The prompt for `text`: each demonstration in the template followed by its label word, then `text`
        in the template, ending where the label word would follow."""
        shown = [self.template.replace(TEXT_FIELD, t) + self.label_words[y] for t, y in demos]
        return DEMO_SEPARATOR.join([*shown, self.template.replace(TEXT_FIELD, text)])


def p_class1(logprobs: np.ndarray) -> np.ndarray:
    """softmax over the two label words' log-probabilities (columns: class 0, class 1), as p(class 1)."""
    return expit(logprobs[:, 1] - logprobs[:, 0])


def demo_labels(strong_train: pd.DataFrame, weak_preds: pd.DataFrame | None, source: str) -> np.ndarray:
    """The hard label each strong_train example shows as a demonstration: the weak model's prediction
    thresholded at 1/2, or ground truth."""
    if source == "ground_truth":
        return strong_train["label"].to_numpy().astype(int)
    soft = weak_preds.set_index("id")["soft_pred"].reindex(strong_train["id"])
    if soft.isna().any():
        raise ValueError("the weak model's predictions miss strong_train examples; rerun its training job")
    return (soft.to_numpy() >= 0.5).astype(int)


def choose_demos(
    pool_ids: np.ndarray, pool_labels: np.ndarray, scored_ids: np.ndarray, shots: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """For each scored example, `shots` positions into the pool, never the scored example itself, drawn
    without replacement, in random order: half of each label (the odd one of a random label). A label with
    too few examples gives all it has and the other label the rest: a weak model that rarely predicts a
    class still yields demonstrations (unbalanced, as its labels are), and the demo_ids of every example
    record what it was shown."""
    by_label = [np.flatnonzero(pool_labels == y) for y in (0, 1)]
    out = []
    for scored in scored_ids:
        candidates = [positions[pool_ids[positions] != scored] for positions in by_label]
        available = sum(len(c) for c in candidates)
        if available < shots:
            raise ValueError(
                f"{shots} demonstrations need {shots} strong_train examples besides the one scored, but there "
                f"are {available}; lower shots or enlarge strong_train"
            )
        extra = rng.integers(2)
        counts = [shots // 2 + (shots % 2 if y == extra else 0) for y in (0, 1)]
        for y in (0, 1):
            short = counts[y] - len(candidates[y])
            if short > 0:
                counts[y] -= short
                counts[1 - y] += short
        chosen = [rng.choice(c, size=n, replace=False) for c, n in zip(candidates, counts)]
        out.append(rng.permutation(np.concatenate(chosen)))
    return out


def causal_lm_config(entry: dict[str, Any]) -> tuple[bool | None, str]:
    """Whether the model of a config entry has a next-token head, with what says so; None where the config
    cannot tell without loading the model (a hub id not in the local cache: the job checks it)."""
    package = entry.get("offline_package")
    if package:
        gguf = MODEL_SOURCES[package].gguf is not None
        return gguf, f"offline package {package!r} is {'a GGUF decoder' if gguf else 'an encoder'}"
    folder = Path(entry["path"]).expanduser()
    if folder.is_dir():
        config_file = folder / "config.json"
        if not config_file.is_file():
            return (True, "a GGUF model") if any(folder.glob("*.gguf")) else (None, "")
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(entry["path"], "config.json")
        if not isinstance(cached, str):
            return None, ""
        config_file = Path(cached)
    architectures = json.loads(config_file.read_text()).get("architectures") or []
    if not architectures:
        return None, ""
    return any(a.endswith(CAUSAL_LM_SUFFIXES) for a in architectures), f"its config.json lists {architectures}"


def prompting_problems(config: dict[str, Any], prompt_cells: list[str]) -> list[str]:
    """Prompting cells with a strong model that has no next-token head, as messages naming both and the fix."""
    out = []
    for name in prompt_cells:
        entry = config["interventions"][name]
        key = f"interventions.{name}.strong_models" if entry.get("strong_models") else "strong_models"
        for alias in cell_models(entry, config)["strong_models"]:
            causal, why = causal_lm_config(config["models"][alias])
            if causal is False:
                out.append(
                    f"config key '{key}': {alias!r} is not a decoder language model ({why}), but the prompting "
                    f"intervention {name!r} scores label words with the strong model's next-token head; list only "
                    "decoders (causal LMs such as GPT-2, Llama, Qwen2, or offline_package SmolLM2-135M-Instruct) "
                    f"under {key}"
                )
    return out
