"""Generative finetuning: the language-model objectives (w2s.engine.lm_finetune), the stage that writes a
finetuned model directory from unlabelled texts, and the rules that make every job of the alias load it."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from test_workflow import job_counts
from tiny_models import tiny_bert, tiny_decoder, tiny_gpt2
from tiny_workflow import TINY_BERT, snakemake
from w2s import layout
from w2s.engine.lm_finetune import (
    IGNORE,
    LMTrainSettings,
    accumulate_lm_gradients,
    causal_rows,
    mask_tokens,
    train_language_model,
)
from w2s.engine.modeling import ModelSpec, load_classifier
from w2s.stages import generative
from w2s.stages.generative import generative_stage, save_model_dir, unlabelled_texts, warm_up_head

TEXTS = ["the movie was good", "the film is awful", "a great movie", "bad film", "not a good film", "awful"]


def gradients(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def backward(model, rows, micro_batch_size: int, causal: bool) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = accumulate_lm_gradients(model, rows, 0, micro_batch_size, causal)
    return loss, gradients(model)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("bert"), dropout=0.0)


def test_causal_loss_is_the_mean_over_masked_tokens_and_an_unmasked_token_moves_no_gradient(gpt2_dir):
    model = AutoModelForCausalLM.from_pretrained(gpt2_dir).eval()
    ids = [5, 6, 7, 8, 9, 10]
    mask = [False, False, True, True, False, False]
    loss, grads = backward(model, causal_rows([ids], [mask]), 1, causal=True)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    # Tokens 2 and 3 are predicted from the positions before them.
    expected = F.cross_entropy(logits[[1, 2]], torch.tensor([7, 8])).item()
    assert loss == pytest.approx(expected, rel=1e-5)
    # The last token is no target and nothing reads it: changing it changes no gradient ...
    _, same = backward(model, causal_rows([ids[:-1] + [20]], [mask]), 1, causal=True)
    assert all(torch.equal(grads[n], same[n]) for n in grads)
    # ... while changing a target does.
    _, other = backward(model, causal_rows([[5, 6, 7, 20, 9, 10]], [mask]), 1, causal=True)
    assert any(not torch.allclose(grads[n], other[n]) for n in grads)


def test_causal_rows_refuse_masks_that_cannot_be_honoured():
    with pytest.raises(ValueError, match="first token"):
        causal_rows([[1, 2, 3]], [[True, True, True]])
    with pytest.raises(ValueError, match="no target"):
        causal_rows([[1, 2, 3]], [[False, False, False]])
    with pytest.raises(ValueError, match="entries"):
        causal_rows([[1, 2, 3]], [[False, True]])
    assert causal_rows([[4, 5, 6]], None) == [([4, 5, 6], [IGNORE, 5, 6])]


@pytest.mark.parametrize("objective", ["causal", "masked"])
def test_micro_batches_give_the_gradient_of_the_full_batch(objective, gpt2_dir, bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(gpt2_dir)
    sequences = tokenizer(TEXTS)["input_ids"]  # different lengths, so different target counts per row
    if objective == "causal":
        model = AutoModelForCausalLM.from_pretrained(gpt2_dir).eval()
        rows = causal_rows(sequences, None)
    else:
        model = AutoModelForMaskedLM.from_pretrained(bert_dir).eval()
        rng = np.random.default_rng(0)
        special = set(tokenizer.all_special_ids)
        rows = [mask_tokens(s, special, tokenizer.mask_token_id, np.arange(5, 40), 0.3, rng) for s in sequences]
    full_loss, full = backward(model, rows, len(rows), objective == "causal")
    for micro in (1, 4):
        loss, grads = backward(model, rows, micro, objective == "causal")
        assert loss == pytest.approx(full_loss, rel=1e-5)
        for name in full:
            torch.testing.assert_close(grads[name], full[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("objective", ["causal", "masked"])
def test_loss_falls_on_a_repeated_toy_corpus(objective, tmp_path, bert_dir):
    if objective == "causal":
        path = tiny_decoder(tmp_path / "llama", "llama")
        model = AutoModelForCausalLM.from_pretrained(path)
    else:
        path = bert_dir
        model = AutoModelForMaskedLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    sequences = tokenizer(TEXTS[:2] * 8)["input_ids"]
    settings = LMTrainSettings(lr=1e-2, epochs=15, batch_size=8, micro_batch_size=4, seed=1)
    curve = train_language_model(model, tokenizer, sequences, None, objective, settings)
    assert [c["step"] for c in curve] == list(range(1, 31))
    first, last = np.mean([c["loss"] for c in curve[:3]]), np.mean([c["loss"] for c in curve[-3:]])
    assert last < 0.5 * first
    assert not model.training


def test_training_is_seeded(gpt2_dir):
    tokenizer = AutoTokenizer.from_pretrained(gpt2_dir)
    sequences = tokenizer(TEXTS)["input_ids"]

    def run(seed):
        model = AutoModelForCausalLM.from_pretrained(gpt2_dir)
        settings = LMTrainSettings(lr=1e-3, epochs=2, batch_size=2, micro_batch_size=1, seed=seed)
        return train_language_model(model, tokenizer, sequences, None, "causal", settings)

    assert run(0) == run(0) and run(0) != run(1)


def test_masking_never_touches_special_tokens_and_follows_bert():
    rng = np.random.default_rng(0)
    special, mask_id = {2, 3, 0}, 4
    replacements = np.arange(10, 50)
    ids = [2] + list(range(10, 30)) + [3]
    chosen = kept = randomised = masked = 0
    for _ in range(2000):
        inputs, labels = mask_tokens(ids, special, mask_id, replacements, 0.15, rng)
        assert labels[0] == labels[-1] == IGNORE and inputs[0] == 2 and inputs[-1] == 3
        targets = [i for i, label in enumerate(labels) if label != IGNORE]
        assert targets and all(labels[i] == ids[i] for i in targets)
        assert all(inputs[i] == ids[i] for i in range(len(ids)) if i not in targets)
        chosen += len(targets)
        masked += sum(inputs[i] == mask_id for i in targets)
        kept += sum(inputs[i] == ids[i] for i in targets)
        randomised += sum(inputs[i] not in (mask_id, ids[i]) for i in targets)
    assert chosen / (2000 * 20) == pytest.approx(0.15, abs=0.01)
    assert masked / chosen == pytest.approx(0.8, abs=0.02)
    assert randomised / chosen == pytest.approx(0.1 * (1 - 1 / 40), abs=0.02)


def test_a_sequence_of_special_tokens_only_is_refused():
    with pytest.raises(ValueError, match="special tokens only"):
        mask_tokens([2, 3], {2, 3}, 4, np.arange(5, 9), 0.15, np.random.default_rng(0))


def test_the_masked_objective_takes_no_loss_masks(bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    model = AutoModelForMaskedLM.from_pretrained(bert_dir)
    settings = LMTrainSettings(lr=1e-3, epochs=1, batch_size=2, micro_batch_size=1)
    with pytest.raises(ValueError, match="loss_masks=None"):
        train_language_model(model, tokenizer, [[2, 10, 3]], [[False, True, False]], "masked", settings)


def test_settings_refuse_a_micro_batch_above_the_batch():
    with pytest.raises(ValueError, match="micro_batch_size"):
        LMTrainSettings(lr=1e-3, epochs=1, batch_size=4, micro_batch_size=8)


GENERATIVE = {
    "epochs": 2,
    "lr": 1e-3,
    "batch_size": 4,
    "micro_batch_size": 2,
    "warmup_frac": 0.1,
    "weight_decay": 0.0,
    "mlm_probability": 0.15,
    "head_warmup_epochs": 0,
    "head_lr": None,
}


def test_a_retry_halves_the_micro_batch_and_keeps_the_effective_batch():
    settings = [generative.settings_from({**GENERATIVE, "micro_batch_size": 4}, seed=5, attempt=a) for a in (1, 2, 4)]
    assert [s.micro_batch_size for s in settings] == [4, 2, 1]
    assert {(s.batch_size, s.lr, s.epochs, s.seed) for s in settings} == {(4, 1e-3, 2, 5)}


def write_splits(folder, flip: bool = False) -> dict[str, str]:
    """weak_train and strong_train with labels (flipped on request), and a val split that must not be read."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, texts in (("weak_train", TEXTS[:3]), ("strong_train", TEXTS[3:]), ("val", ["val text"])):
        labels = [(i % 2) ^ flip for i in range(len(texts))]
        frame = pd.DataFrame({"id": [f"{split}{i}" for i in range(len(texts))], "text": texts, "label": labels})
        frame.to_parquet(folder / f"{split}.parquet")
        paths[split] = str(folder / f"{split}.parquet")
    return paths


def test_unlabelled_texts_are_weak_train_and_strong_train_texts_only(tmp_path):
    paths = write_splits(tmp_path)
    assert unlabelled_texts({s: paths[s] for s in layout.GENERATIVE_SPLITS}) == TEXTS
    with pytest.raises(ValueError, match="exactly"):
        unlabelled_texts(paths)


def run_stage(tmp_path, model_dir, name: str, generative_entry: dict, flip: bool = False, **stage_kwargs):
    paths = write_splits(tmp_path / f"splits_{name}", flip)
    outputs = {"model": str(tmp_path / name / "model"), "info": str(tmp_path / name / "info.json")}
    generative_stage(
        ModelSpec(alias="m_gen", path=str(model_dir), max_length=32),
        generative_entry,
        {s: paths[s] for s in layout.GENERATIVE_SPLITS},
        seed=3,
        outputs=outputs,
        **stage_kwargs,
    )
    return outputs


def test_the_stage_writes_a_model_the_engine_loads_with_the_trained_weights(tmp_path, gpt2_dir, monkeypatch):
    trained = {}

    def remember(model, *args, **kwargs):
        curve = train_language_model(model, *args, **kwargs)
        trained.update({n: p.detach().cpu().clone() for n, p in model.transformer.named_parameters()})
        return curve

    monkeypatch.setattr(generative, "train_language_model", remember)
    outputs = run_stage(tmp_path, gpt2_dir, "gen", GENERATIVE)
    backbone = load_classifier(ModelSpec(alias="m_gen", path=outputs["model"])).backbone
    pretrained = AutoModelForCausalLM.from_pretrained(gpt2_dir).transformer
    loaded = dict(backbone.named_parameters())
    assert loaded.keys() == trained.keys()
    assert all(torch.equal(loaded[n], trained[n]) for n in trained)
    assert any(not torch.equal(p, loaded[n]) for n, p in pretrained.named_parameters())
    info = json.loads((tmp_path / "gen" / "info.json").read_text())
    assert info["seed"] == 3 and info["texts"] == len(TEXTS) and info["objective"] == "causal"
    assert len(info["train_curve"]) == 2 * 2 and info["settings"]["seed"] == 3
    assert info["tokens_per_epoch"] == sum(len(s) for s in AutoTokenizer.from_pretrained(gpt2_dir)(TEXTS)["input_ids"])
    assert not [p for p in (tmp_path / "gen").iterdir() if p.name.endswith(".part")]


def test_labels_do_not_change_the_finetuned_model(tmp_path, gpt2_dir):
    plain = run_stage(tmp_path, gpt2_dir, "plain", GENERATIVE)
    flipped = run_stage(tmp_path, gpt2_dir, "flipped", GENERATIVE, flip=True)
    a = AutoModelForCausalLM.from_pretrained(plain["model"]).state_dict()
    b = AutoModelForCausalLM.from_pretrained(flipped["model"]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_encoder_without_its_masked_lm_head_is_refused_unless_the_head_warms_up_first(tmp_path):
    # tiny_bert saves a bare BertModel, as the offline sentence-transformers encoders ship: no MLM head.
    bare = tiny_bert(tmp_path / "bare", dropout=0.0)
    with pytest.raises(ValueError, match="head_warmup_epochs"):
        run_stage(tmp_path, bare, "refused", GENERATIVE)
    assert not (tmp_path / "refused").exists()
    outputs = run_stage(tmp_path, bare, "warm", {**GENERATIVE, "head_warmup_epochs": 1, "head_lr": 1e-2})
    info = json.loads((tmp_path / "warm" / "info.json").read_text())
    assert info["objective"] == "masked" and any(k.startswith("cls.predictions") for k in info["new_head_keys"])
    assert len(info["head_warmup_curve"]) == 2 and len(info["train_curve"]) == 4
    head = AutoModelForMaskedLM.from_pretrained(outputs["model"]).cls.predictions.transform.dense.weight
    assert head.abs().sum() > 0


def test_head_warm_up_trains_the_head_alone(bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    model = AutoModelForMaskedLM.from_pretrained(bert_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    settings = LMTrainSettings(lr=1e-2, epochs=1, batch_size=2, micro_batch_size=2)
    warm_up_head(model, tokenizer, tokenizer(TEXTS)["input_ids"], "masked", settings, epochs=1)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("cls.") for n in moved)
    # The decoder is tied to the word embeddings, which belong to the frozen backbone.
    assert "bert.embeddings.word_embeddings.weight" not in moved
    assert all(p.requires_grad for p in model.parameters())


def test_a_failed_save_leaves_no_model_directory(tmp_path, gpt2_dir):
    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise OSError("disk full")

    model = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    with pytest.raises(OSError, match="disk full"):
        save_model_dir(model, BrokenTokenizer(), tmp_path / "out" / "model")
    assert list((tmp_path / "out").iterdir()) == []


def generative_config(tmp_path, interventions: dict) -> dict:
    strong = {"path": str(TINY_BERT), "max_length": 32}
    return {
        "tasks": ["sms_spam"],
        "seeds": [0, 1],
        "weak_models": ["tiny"],
        "strong_models": ["m", "m_gen"],
        "models": {"tiny": {"path": str(TINY_BERT)}, "m": strong, "m_gen": {**strong, "generative": {"epochs": 1}}},
        "interventions": interventions,
        "splits": {"weak_train": 48, "strong_train": 64, "val": 32, "test": 64},
    }


def job_inputs(dry_run: str, rule: str) -> list[tuple[str, str]]:
    """(wildcards, input) of every job of `rule` in a dry run's printout."""
    blocks = [block.split("\n[")[0] for block in dry_run.split(f"rule {rule}:")[1:]]
    return [(re.search(r"wildcards: (.*)", b)[1], re.search(r"input: (.*)", b)[1]) for b in blocks]


def test_dry_run_plans_one_generative_job_per_task_and_seed_that_the_aliases_jobs_load(tmp_path):
    interventions = {"xent": {}, "knn": {"probe": {"name": "knn", "use": "filter", "k": 10}}}
    out = snakemake(tmp_path, generative_config(tmp_path, interventions), "-n").stdout
    counts = job_counts(out)
    assert counts["generative_finetune"] == 2  # one task x two seeds, for m_gen only
    # Frozen features: one file per task for the pretrained model, one per seed for the finetuned one.
    assert counts["activations"] == 1 and counts["activations_per_seed"] == 2
    for rule in ("train_ceiling", "train_student", "activations_per_seed"):
        jobs = job_inputs(out, rule)
        assert jobs
        for wildcards, inputs in jobs:
            seed = re.search(r"seed=(\d+)", wildcards)[1]
            gen_dir = layout.generative_outputs("m_gen")["model"].format(task="sms_spam", seed=seed)
            other_seed = layout.generative_outputs("m_gen")["model"].format(task="sms_spam", seed=1 - int(seed))
            if "strong=m_gen" in wildcards:
                assert gen_dir in inputs.split(", ") and other_seed not in inputs
            else:
                assert "generative" not in inputs
    for wildcards, inputs in job_inputs(out, "probe_labels"):
        seed = re.search(r"seed=(\d+)", wildcards)[1]
        expected = (
            layout.seed_activations_path() if "strong=m_gen" in wildcards else layout.activations_path()
        ).format(task="sms_spam", seed=seed, strong=re.search(r"strong=([\w-]+)", wildcards)[1])
        assert expected in inputs.split(", ")
    for _, inputs in job_inputs(out, "generative_finetune"):
        assert "val.parquet" not in inputs and "test.parquet" not in inputs


def test_a_generative_micro_batch_above_its_batch_is_a_config_error(tmp_path):
    config = generative_config(tmp_path, {"xent": {}})
    config["models"]["m_gen"]["generative"] = {"batch_size": 4, "micro_batch_size": 8}
    proc = snakemake(tmp_path, config, "-n", check=False)
    assert proc.returncode != 0
    assert "models.m_gen.generative.micro_batch_size" in proc.stdout + proc.stderr
