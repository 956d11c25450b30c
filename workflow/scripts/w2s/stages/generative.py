"""Generative finetuning (Burns et al.): before any weak-to-strong training, a model learns its pretraining
objective on a task's unlabelled texts (weak_train and strong_train of one seed); every later job of its alias
loads the directory written here."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

from w2s.atomic import write_json
from w2s.engine.batching import tokenize
from w2s.engine.lm_finetune import LMTrainSettings, train_language_model
from w2s.engine.modeling import ModelSpec, hub_errors, is_decoder, load_tokenizer, pretrained_kwargs, software_versions
from w2s.layout import GENERATIVE_SPLITS

PathLike = str | Path


def unlabelled_texts(split_paths: Mapping[str, PathLike]) -> list[str]:
    """The texts of weak_train and strong_train, in that order. Only the text column is read from the files,
    so no label of any kind reaches generative finetuning."""
    if set(split_paths) != set(GENERATIVE_SPLITS):
        raise ValueError(f"generative finetuning reads exactly {GENERATIVE_SPLITS}, got {sorted(split_paths)}")
    texts = []
    for split in GENERATIVE_SPLITS:
        frame = pd.read_parquet(split_paths[split], columns=["text"])
        assert list(frame.columns) == ["text"], "generative finetuning must never load a label column"
        texts.extend(frame["text"].tolist())
    return texts


def load_language_model(spec: ModelSpec):
    """The model of `spec` with its pretraining head, in fp32: a causal LM for a decoder, a masked LM for an
    encoder. Returns (model, objective, the head weights the checkpoint lacked and transformers initialised)."""
    source = pretrained_kwargs(spec.path)
    with hub_errors(spec):
        config = AutoConfig.from_pretrained(spec.path, **source)
    objective = "causal" if is_decoder(config) else "masked"
    auto = AutoModelForCausalLM if objective == "causal" else AutoModelForMaskedLM
    with hub_errors(spec):
        model, info = auto.from_pretrained(spec.path, dtype=torch.float32, output_loading_info=True, **source)
    missing = sorted(info["missing_keys"])
    backbone = [key for key in missing if key.startswith(f"{model.base_model_prefix}.")]
    if backbone:
        raise ValueError(f"model {spec.alias!r} ({spec.path}): the checkpoint lacks backbone weights {backbone[:5]}")
    return model, objective, missing


def trainable(sequence: list[int], objective: str, special_ids: set[int]) -> bool:
    """Whether a tokenized text has a target: a token after the first (causal) or a non-special token (masked)."""
    if objective == "causal":
        return len(sequence) >= 2
    return any(token not in special_ids for token in sequence)


def warm_up_head(model, tokenizer, sequences, objective: str, settings: LMTrainSettings, epochs: int) -> list[dict]:
    """Train only the parameters outside the backbone (the language-model head; a head tied to the input
    embeddings stays with them, frozen) for `epochs`, then unfreeze everything."""
    prefix = f"{model.base_model_prefix}."
    for name, param in model.named_parameters():
        param.requires_grad_(not name.startswith(prefix))
    try:
        return train_language_model(
            model, tokenizer, sequences, None, objective, dataclasses.replace(settings, epochs=epochs)
        )
    finally:
        model.requires_grad_(True)


def save_model_dir(model, tokenizer, out_dir: PathLike) -> None:
    """Weights, config and tokenizer staged beside `out_dir` and renamed onto it at the end, so that a killed
    job leaves no directory that looks finished."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
    try:
        model.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staged, out_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def settings_from(generative: Mapping, seed: int, attempt: int = 1) -> LMTrainSettings:
    """The training settings of a model entry's `generative` section; each retry of a job (after CUDA ran out
    of memory, say) halves the micro-batch, which leaves the effective batch and so the gradient unchanged."""
    return LMTrainSettings(
        lr=generative["lr"],
        epochs=generative["epochs"],
        batch_size=generative["batch_size"],
        micro_batch_size=max(1, generative["micro_batch_size"] >> (attempt - 1)),
        warmup_frac=generative["warmup_frac"],
        weight_decay=generative["weight_decay"],
        mlm_probability=generative["mlm_probability"],
        seed=seed,
    )


def generative_stage(
    spec: ModelSpec,
    generative: Mapping,
    split_paths: Mapping[str, PathLike],
    seed: int,
    outputs: Mapping[str, PathLike],
    attempt: int = 1,
) -> None:
    """Finetune `spec`'s model with its pretraining objective on the unlabelled texts of `split_paths`
    (weak_train and strong_train) with the settings of its `generative` entry; write the model directory
    (`outputs["model"]`), which the engine loads like any pretrained model, and the run record (`outputs["info"]`)."""
    started = time.time()
    settings = settings_from(generative, seed, attempt)
    texts = unlabelled_texts(split_paths)
    tokenizer = load_tokenizer(spec)
    model, objective, new_head = load_language_model(spec)
    if new_head and not generative["head_warmup_epochs"]:
        raise ValueError(
            f"model {spec.alias!r} ({spec.path}) has no trained {objective}-LM head in its checkpoint: transformers "
            f"initialised {new_head} at random, and the backbone would learn through that random head. Set "
            f"models.{spec.alias}.generative.head_warmup_epochs to 1 or more to train the new head alone first "
            "(backbone frozen), or use a checkpoint that holds its head"
        )
    special_ids = set(tokenizer.all_special_ids)
    sequences = [s for s in tokenize(tokenizer, texts, spec.max_length) if trainable(s, objective, special_ids)]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    head_curve = []
    if generative["head_warmup_epochs"]:
        head_settings = dataclasses.replace(settings, lr=generative["head_lr"] or settings.lr)
        head_curve = warm_up_head(
            model, tokenizer, sequences, objective, head_settings, generative["head_warmup_epochs"]
        )
    curve = train_language_model(model, tokenizer, sequences, None, objective, settings)
    save_model_dir(model.cpu(), tokenizer, outputs["model"])
    write_json(
        {
            "model": spec.alias,
            "base_path": spec.path,
            "seed": seed,
            "objective": objective,
            "splits": list(GENERATIVE_SPLITS),
            "texts": len(texts),
            "texts_without_target": len(texts) - len(sequences),
            "tokens_per_epoch": sum(len(s) for s in sequences),
            "max_length": spec.max_length,
            "settings": dataclasses.asdict(settings),
            "generative": dict(generative),
            "new_head_keys": new_head,
            "head_warmup_curve": head_curve,
            "train_curve": curve,
            "device": device.type,
            "seconds": time.time() - started,
            "versions": software_versions(),
        },
        outputs["info"],
    )
