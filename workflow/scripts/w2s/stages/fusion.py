"""Dynamic logit fusion cells on torch: the weak model finetuned into a label-word expert, and the fused
strong model that stands in for the student (w2s.labels.fusion has the method)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from w2s.atomic import write_json, write_parquet
from w2s.engine.fusion_scoring import answer_logprobs, check_shared_vocabulary
from w2s.engine.lm import CausalLM
from w2s.engine.lm_finetune import LMTrainSettings, train_language_model
from w2s.engine.modeling import ModelSpec, load_tokenizer, software_versions
from w2s.execution.job import TrainingJob
from w2s.labels.fusion import DYNAMIC, FusionSpec, fuse_answers
from w2s.labels.interventions import Intervention
from w2s.labels.prompting import PromptSpec, p_class1
from w2s.scoring import accuracy
from w2s.stages.generative import save_model_dir
from w2s.stages.training import job_model

PathLike = str | Path


def expert_sequences(lm: CausalLM, prompt: PromptSpec, table: pd.DataFrame, max_length: int):
    """Each example as the token ids of its zero-shot prompt followed by the label word of its `label`, with
    the loss on the label word's tokens only. Texts are cut to `max_length` tokens, so the template and the
    word stay whole; prompt and word are encoded as the fusion job scores them."""
    texts = lm.truncate(table["text"].tolist(), max_length)
    prompts = lm.encode_prompts([prompt.render(text) for text in texts])
    words = lm.word_tokens(prompt.label_words)
    sequences, masks = [], []
    for ids, label in zip(prompts, table["label"].astype(int)):
        sequences.append(ids + words[label])
        masks.append([False] * len(ids) + [True] * len(words[label]))
    return sequences, masks


def expert_stage(
    job: TrainingJob, weak_train: PathLike, prompt: Mapping, strong_models: Mapping[str, PathLike]
) -> None:
    """The weak model finetuned as a language model on weak_train ground truth to say each example's label
    word after its zero-shot prompt (the loss on the word's tokens only), with the weak model's lr, batch
    sizes and epochs and the `train` section's warmup and weight decay; the model directory and its run record.

    `prompt` holds the fields of the fusion cells' PromptSpec; `strong_models` (alias -> where its tokenizer
    loads from) are the strong models the expert will be fused with: a tokenizer that differs from the weak
    model's stops the job before any training.
    """
    started = time.time()
    spec, cfg = job_model(job)
    weak_tokenizer = load_tokenizer(spec)
    for alias, path in strong_models.items():
        check_shared_vocabulary(spec.alias, weak_tokenizer, alias, load_tokenizer(ModelSpec(alias, str(path))))
    spec_prompt = PromptSpec(**prompt)
    table = pd.read_parquet(weak_train, columns=["id", "text", "label"])
    lm = CausalLM.load(spec)
    # CausalLM loads a frozen model for inference; the expert is trained in full.
    lm.model.requires_grad_(True)
    sequences, masks = expert_sequences(lm, spec_prompt, table, spec.max_length)
    settings = LMTrainSettings(
        lr=cfg.lr,
        epochs=int(cfg.epochs),
        batch_size=cfg.batch_size,
        micro_batch_size=cfg.micro_batch_size,
        warmup_frac=cfg.warmup_frac,
        weight_decay=cfg.weight_decay,
        seed=job.seed,
    )
    curve = train_language_model(lm.model, lm.tokenizer, sequences, masks, "causal", settings)
    save_model_dir(lm.model, lm.tokenizer, job.outputs["model"])
    write_json(
        {
            "role": "fusion_expert",
            "model": spec.alias,
            "model_path": spec.path,
            "seed": job.seed,
            "trained_on": "weak_train ground truth",
            "n_train": len(table),
            "n_train_per_label": table["label"].value_counts().sort_index().to_dict(),
            "template": spec_prompt.template,
            "label_words": list(spec_prompt.label_words),
            "label_word_tokens": lm.word_tokens(spec_prompt.label_words),
            "max_length": spec.max_length,
            "settings": asdict(settings),
            "train_curve": curve,
            "checked_vocabulary_against": sorted(strong_models),
            "device": str(lm.device),
            "wall_seconds": time.time() - started,
            "versions": software_versions(),
        },
        job.outputs["info"],
    )


def fusion_stage(
    strong: ModelSpec,
    weak: ModelSpec,
    expert_dir: PathLike,
    test_path: PathLike,
    intervention: dict,
    task: str,
    seed: int,
    outputs: Mapping[str, PathLike],
) -> None:
    """p(class 1) of every test example under the fused model, written as the cell's student predictions
    with each example's weight `alpha`, `kl_expert` = KL(S_ft || S) and `kl_fused` = KL(fused || L) at the
    answer position, `capped` (alpha_max fell short), and the label-word probabilities of L alone
    (`strong_soft_pred`) and of the expert alone (`expert_soft_pred`) for reference.

    All three models read the same prompt: each text cut to the weak model's max_length tokens, as the
    expert was trained.
    """
    started = time.time()
    cell = Intervention(**intervention)
    spec = FusionSpec.from_entry(cell.entry["fusion"], task)
    check_shared_vocabulary(weak.alias, load_tokenizer(weak), strong.alias, load_tokenizer(strong))
    test = pd.read_parquet(test_path)
    models = [
        CausalLM.load(strong),
        CausalLM.load(weak),
        CausalLM.load(ModelSpec(f"{weak.alias}-expert", str(expert_dir))),
    ]
    reader = models[0]
    prompts = [spec.prompt.render(text) for text in reader.truncate(test["text"].tolist(), weak.max_length)]
    words = reader.word_tokens(spec.prompt.label_words)
    n = len(prompts)
    columns = {
        "alpha": np.zeros(n),
        "kl_expert": np.zeros(n),
        "kl_fused": np.zeros(n),
        "capped": np.zeros(n, dtype=bool),
        "fused": np.zeros((n, 2)),
        "strong": np.zeros((n, 2)),
        "expert": np.zeros((n, 2)),
    }
    for batch in answer_logprobs(models, prompts, spec.prompt.label_words, spec.batch_size):
        for name, values in fuse_answers(batch.per_word, words, spec).items():
            columns[name][batch.prompts] = values
    soft = {who: p_class1(columns[who]) for who in ("fused", "strong", "expert")}
    preds = pd.DataFrame(
        {
            "id": test["id"].to_numpy(),
            "soft_pred": soft["fused"],
            "logprob_0": columns["fused"][:, 0],
            "logprob_1": columns["fused"][:, 1],
            "alpha": columns["alpha"],
            "kl_expert": columns["kl_expert"],
            "kl_fused": columns["kl_fused"],
            "capped": columns["capped"],
            "strong_soft_pred": soft["strong"],
            "expert_soft_pred": soft["expert"],
        }
    )
    write_parquet(preds, outputs["test"])
    labels = test["label"].to_numpy()
    write_json(
        {
            "role": "fusion",
            "intervention": intervention,
            "strong_model": strong.alias,
            "strong_model_path": strong.path,
            "weak_model": weak.alias,
            "weak_model_path": weak.path,
            "expert_dir": str(expert_dir),
            "seed": seed,
            "task": task,
            "alpha": DYNAMIC if spec.alpha is None else spec.alpha,
            "alpha_max": spec.alpha_max,
            "template": spec.prompt.template,
            "label_words": list(spec.prompt.label_words),
            # A word of several tokens is scored teacher-forced with the weight chosen at its first token.
            "label_word_tokens": words,
            "max_length": weak.max_length,
            "batch_size": spec.batch_size,
            "n_test": n,
            "n_capped": int(columns["capped"].sum()),
            "alpha_quantiles": quantiles(columns["alpha"]),
            "kl_expert_quantiles": quantiles(columns["kl_expert"]),
            "kl_fused_quantiles": quantiles(columns["kl_fused"]),
            "test_acc": {who: accuracy(labels, p) for who, p in soft.items()},
            "example_prompt": prompts[0] if prompts else None,
            "device": str(reader.device),
            "wall_seconds": time.time() - started,
            "versions": software_versions(),
        },
        outputs["info"],
    )


def quantiles(values: np.ndarray) -> dict[str, float]:
    """Minimum, quartiles and maximum, for a run record."""
    points = {"min": 0.0, "q25": 0.25, "median": 0.5, "q75": 0.75, "max": 1.0}
    return {name: float(np.quantile(values, q)) for name, q in points.items()} if len(values) else {}
