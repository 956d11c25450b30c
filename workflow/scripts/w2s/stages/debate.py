"""Debate-assisted weak supervision on torch: the debate transcripts of every split, and the weak supervisors
that train and predict with them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from w2s.atomic import write_json, write_parquet
from w2s.engine.finetune import train_and_predict
from w2s.engine.lm import CausalLM
from w2s.engine.modeling import ModelSpec, load_tokenizer, software_versions
from w2s.execution.job import TrainingJob
from w2s.labels.debate import DebateSpec, debate_split, run_debates
from w2s.labels.tables import ground_truth_labels
from w2s.layout import SPLITS, STRONG_SPLITS
from w2s.scoring import accuracy
from w2s.stages.labels import read_tables
from w2s.stages.training import job_model, publish

PathLike = str | Path


def transcripts_stage(
    spec: ModelSpec,
    split_paths: Mapping[str, PathLike],
    debate: dict,
    task: str,
    seed: int,
    outputs: Mapping[str, PathLike],
) -> None:
    """The debate transcript of every example of every split, one table (id, transcript) per split.

    Texts are cut to the debater's max_length tokens, so the template around them stays whole; generation is
    batched over all splits at once, sampled with `seed` (greedy at temperature 0).
    """
    started = time.time()
    debate_spec = DebateSpec.from_entry(debate, task)
    splits = read_tables({name: split_paths[name] for name in SPLITS})
    lm = CausalLM.load(spec)
    ids = np.concatenate([splits[name]["id"].to_numpy() for name in SPLITS])
    texts = lm.truncate(pd.concat([splits[name]["text"] for name in SPLITS]).tolist(), spec.max_length)

    def generate(prompts: list[str], call_seed: int) -> list[str]:
        return lm.generate(
            prompts, debate_spec.max_new_tokens, debate_spec.batch_size, debate_spec.temperature, call_seed
        )

    transcripts = pd.DataFrame({"id": ids, "transcript": run_debates(generate, texts, debate_spec, seed)})
    for name in SPLITS:
        write_parquet(transcripts[transcripts["id"].isin(splits[name]["id"])].reset_index(drop=True), outputs[name])
    write_json(
        {
            "role": "debate_transcripts",
            "model": spec.alias,
            "model_path": spec.path,
            "task": task,
            "seed": seed,
            "debate": debate,
            "template": debate_spec.template,
            "max_length": spec.max_length,
            "n_examples": {name: len(splits[name]) for name in SPLITS},
            "example_transcript": transcripts["transcript"].iloc[0] if len(transcripts) else None,
            "device": str(lm.device),
            "wall_seconds": time.time() - started,
            "versions": software_versions(),
        },
        outputs["info"],
    )


def cut_fractions(spec: ModelSpec, texts: Mapping[str, pd.Series]) -> dict[str, float]:
    """Per split, the fraction of texts longer than the model's max_length tokens: their transcripts are cut
    short."""
    tokenizer = load_tokenizer(spec)
    out = {}
    for name, column in texts.items():
        lengths = [len(ids) for ids in tokenizer(column.tolist())["input_ids"]]
        out[name] = float(np.mean([n > spec.max_length for n in lengths])) if lengths else 0.0
    return out


def debate_weak_stage(
    job: TrainingJob, split_paths: Mapping[str, PathLike], transcripts: Mapping[str, PathLike]
) -> None:
    """A debate-informed weak supervisor: trained on weak_train ground truth with each text followed by its
    transcript (selected on val's), it predicts strong_train, val and test with their transcripts. Its own
    test accuracy is recorded beside the predictions."""
    splits = read_tables({name: split_paths[name] for name in SPLITS})
    debates = read_tables({name: transcripts[name] for name in SPLITS})
    read = {name: debate_split(splits[name], debates[name]) for name in SPLITS}
    spec, cfg = job_model(job)
    preds, info = train_and_predict(
        spec,
        cfg,
        ground_truth_labels(read["weak_train"]),
        ground_truth_labels(read["val"]),
        {name: read[name] for name in STRONG_SPLITS},
        job.seed,
        save_dir=job.save_dir,
        checkpoint_dir=job.checkpoint_dir,
    )
    test = preds["test"].set_index("id")["soft_pred"].reindex(splits["test"]["id"]).to_numpy()
    record = {
        "role": "debate_weak",
        "test_acc": accuracy(splits["test"]["label"].to_numpy(), test),
        # Text and transcript are read as one sequence of at most max_length tokens.
        "transcript_cut_frac": cut_fractions(spec, {name: read[name]["text"] for name in SPLITS}),
    }
    publish(preds, {**record, **info}, job)
