"""Prompting cells on torch: the strong decoder, prompted zero- or few-shot, stands in for the student."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from w2s.atomic import write_json, write_parquet
from w2s.engine.lm import CausalLM
from w2s.engine.modeling import ModelSpec, software_versions
from w2s.labels.interventions import Intervention
from w2s.labels.prompting import PromptSpec, choose_demos, demo_labels, p_class1
from w2s.stages.labels import read_tables

PathLike = str | Path


def prompt_stage(
    spec: ModelSpec,
    split_paths: Mapping[str, PathLike],
    weak_strong_train: PathLike | None,
    intervention: dict,
    task: str,
    seed: int,
    outputs: Mapping[str, PathLike],
) -> None:
    """p(class 1) of every test example from the label words' log-probabilities after its prompt, written as
    the cell's student predictions; each example's demonstrations (strong_train ids) are written beside it.

    Demonstrations are drawn with `seed`; texts are cut to the model's max_length tokens each, so that no
    template or label word is ever cut off.
    """
    started = time.time()
    cell = Intervention(**intervention)
    prompt = PromptSpec.from_entry(cell.entry["prompt"], task)
    splits = read_tables(split_paths)
    test = splits["test"]
    lm = CausalLM.load(spec)
    texts = lm.truncate(test["text"].tolist(), spec.max_length)
    demo_ids: list[list[str]] = [[] for _ in texts]
    demos: list[list[tuple[str, int]]] = [[] for _ in texts]
    if prompt.shots:
        pool = splits["strong_train"]
        weak = None if weak_strong_train is None else pd.read_parquet(weak_strong_train)
        labels = demo_labels(pool, weak, prompt.demos)
        pool_texts = lm.truncate(pool["text"].tolist(), spec.max_length)
        chosen = choose_demos(
            pool["id"].to_numpy(), labels, test["id"].to_numpy(), prompt.shots, np.random.default_rng(seed)
        )
        demo_ids = [pool["id"].to_numpy()[c].tolist() for c in chosen]
        demos = [[(pool_texts[k], int(labels[k])) for k in c] for c in chosen]
    prompts = [prompt.render(text, shown) for text, shown in zip(texts, demos)]
    batch_size = cell.entry["prompt"]["batch_size"]
    logprobs = lm.continuation_logprobs(prompts, prompt.label_words, batch_size)
    preds = pd.DataFrame(
        {
            "id": test["id"].to_numpy(),
            "soft_pred": p_class1(logprobs),
            "logprob_0": logprobs[:, 0],
            "logprob_1": logprobs[:, 1],
            "demo_ids": demo_ids,
        }
    )
    write_parquet(preds, outputs["test"])
    write_json(
        {
            "role": "prompt",
            "intervention": intervention,
            "model": spec.alias,
            "model_path": spec.path,
            "seed": seed,
            "task": task,
            "shots": prompt.shots,
            "demos": prompt.demos if prompt.shots else None,
            "template": prompt.template,
            "label_words": list(prompt.label_words),
            # A word of several tokens scores the sum of their log-probabilities.
            "label_word_tokens": lm.word_tokens(prompt.label_words),
            "max_length": spec.max_length,
            "batch_size": batch_size,
            "n_test": len(test),
            "example_prompt": prompts[0] if prompts else None,
            "device": str(lm.device),
            "wall_seconds": time.time() - started,
            "versions": software_versions(),
        },
        outputs["info"],
    )
