"""Dynamic logit fusion: the weight solve and the fused distribution on arrays, the three decoders' answer-position
log-probabilities, the expert's training data, the cell's outputs, its config and its place in the DAG."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import log_softmax, softmax
from transformers import AutoModelForCausalLM

from test_debate import job_counts
from test_prompting import validate_intervention
from tiny_models import tiny_bert, tiny_decoder, tiny_tokenizer
from tiny_workflow import snakemake
from w2s.config import ConfigError, schema_defaults
from w2s.engine.fusion_scoring import VocabularyMismatchError, answer_logprobs, check_shared_vocabulary
from w2s.engine.lm import CausalLM
from w2s.engine.modeling import ModelSpec, load_tokenizer
from w2s.execution.job import TrainingJob
from w2s.labels.fusion import (
    FusionSpec,
    expert_key,
    fuse,
    fuse_answers,
    fusion_problems,
    fusion_prompt,
    kl,
    solve_alpha,
)
from w2s.labels.interventions import intervention_cells
from w2s.labels.prompting import PromptSpec
from w2s.stages import fusion as fusion_stages

VOCAB = 50


def logits(rng, rows=6, scale=3.0):
    return rng.normal(scale=scale, size=(rows, VOCAB))


def fusion_entry(**fields) -> dict:
    return validate_intervention({"fusion": fields})["fusion"]


def spec(**fields) -> FusionSpec:
    return FusionSpec.from_entry(fusion_entry(**fields), "sms_spam")


# The weight solve and the fused distribution, on arrays.


def test_a_fixed_weight_fuses_as_softmax_of_the_strong_logits_plus_the_weighted_expert_shift():
    rng = np.random.default_rng(0)
    z_strong, z_weak, z_expert = logits(rng), logits(rng), logits(rng)
    for alpha in (0.0, 0.5, 1.0, 1.7):
        # Written out from the definition, on raw logits; fuse reads normalised log-probabilities.
        direct = np.exp(z_strong + alpha * (z_expert - z_weak))
        direct /= direct.sum(axis=1, keepdims=True)
        fused = fuse(log_softmax(z_strong, 1), log_softmax(z_weak, 1), log_softmax(z_expert, 1), alpha)
        np.testing.assert_allclose(np.exp(fused), direct, rtol=1e-10, atol=1e-15)
    # At weight 0 the fused model is L, exactly.
    np.testing.assert_allclose(fuse(z_strong, z_weak, z_expert, 0.0), log_softmax(z_strong, 1), rtol=0, atol=1e-12)


def test_one_weight_per_example_fuses_each_row_with_its_own():
    rng = np.random.default_rng(1)
    z = [logits(rng, rows=3) for _ in range(3)]
    alphas = np.array([0.0, 0.4, 2.0])
    rows = [fuse(*(x[i : i + 1] for x in z), alphas[i]) for i in range(3)]
    np.testing.assert_allclose(fuse(*z, alphas), np.concatenate(rows), atol=1e-12)


def test_the_fused_models_distance_from_L_grows_with_the_weight_from_zero():
    # The bisection rests on this (the module's docstring proves it); a bug in fuse or kl would break it.
    rng = np.random.default_rng(2)
    strong, weak, expert = (log_softmax(logits(rng, rows=20), 1) for _ in range(3))
    grid = np.linspace(0, 5, 101)
    distance = np.stack([kl(fuse(strong, weak, expert, a), strong) for a in grid])
    np.testing.assert_allclose(distance[0], 0, atol=1e-12)
    assert (np.diff(distance, axis=0) > 0).all()


def test_the_dynamic_weight_moves_the_fused_model_from_L_as_far_as_the_expert_moved_from_S():
    rng = np.random.default_rng(3)
    strong, weak = log_softmax(logits(rng), 1), log_softmax(logits(rng), 1)
    expert = log_softmax(log_softmax(weak, 1) + 0.3 * logits(rng), 1)
    solve = solve_alpha(strong, weak, expert, None, alpha_max=20.0)
    np.testing.assert_allclose(solve.kl_expert, kl(expert, weak), rtol=1e-12)
    assert not solve.capped.any() and (solve.alpha > 0).all()
    np.testing.assert_allclose(solve.kl_fused, solve.kl_expert, rtol=1e-4)
    np.testing.assert_allclose(solve.kl_fused, kl(fuse(strong, weak, expert, solve.alpha), strong), rtol=1e-12)


def test_with_L_equal_to_S_the_dynamic_weight_is_one_and_the_fused_model_is_the_expert():
    rng = np.random.default_rng(4)
    base, expert = log_softmax(logits(rng), 1), log_softmax(logits(rng), 1)
    solve = solve_alpha(base, base, expert, None, alpha_max=3.0)
    np.testing.assert_allclose(solve.alpha, 1.0, rtol=1e-5)
    np.testing.assert_allclose(fuse(base, base, expert, solve.alpha), expert, atol=1e-4)


def test_an_expert_that_did_not_move_gets_no_weight():
    rng = np.random.default_rng(5)
    strong, weak = log_softmax(logits(rng), 1), log_softmax(logits(rng), 1)
    solve = solve_alpha(strong, weak, weak + 2.0, None, alpha_max=2.0)
    np.testing.assert_allclose(solve.kl_expert, 0, atol=1e-12)
    assert (solve.alpha == 0).all() and not solve.capped.any()


def test_a_target_that_alpha_max_cannot_reach_takes_alpha_max_and_is_counted():
    rng = np.random.default_rng(6)
    strong, weak = log_softmax(logits(rng, rows=8), 1), log_softmax(logits(rng, rows=8), 1)
    expert = log_softmax(weak + 0.5 * logits(rng, rows=8), 1)
    free = solve_alpha(strong, weak, expert, None, alpha_max=100.0)
    assert not free.capped.any()
    # Half the examples need more weight than this alpha_max gives.
    alpha_max = float(np.median(free.alpha))
    solve = solve_alpha(strong, weak, expert, None, alpha_max=alpha_max)
    need_more = free.alpha > alpha_max
    assert need_more.sum() == 4
    np.testing.assert_array_equal(solve.capped, need_more)
    np.testing.assert_array_equal(solve.alpha[need_more], alpha_max)
    np.testing.assert_allclose(solve.alpha[~need_more], free.alpha[~need_more], rtol=1e-4)
    assert (solve.kl_fused[need_more] < solve.kl_expert[need_more]).all()


def test_no_weight_reaches_a_shift_beyond_what_L_can_concentrate_on_one_token():
    # As the weight grows, the fused model tends to the one token the shift favours most, at a distance of
    # -log L(that token) from L: a larger expert shift is out of reach at any alpha_max.
    strong = np.log(np.array([[0.1, 0.1, 0.8]]))
    weak = np.log(np.array([[1 / 3, 1 / 3, 1 / 3]]))
    expert = np.log(np.array([[0.001, 0.001, 0.998]]))
    assert kl(expert, weak) > 1.0 > -np.log(0.8)
    solve = solve_alpha(strong, weak, expert, None, alpha_max=1000.0)
    assert solve.capped.all() and solve.alpha[0] == 1000.0
    np.testing.assert_allclose(solve.kl_fused, -np.log(0.8), rtol=1e-6)


def test_a_fixed_weight_is_proxy_tuning_for_every_example():
    rng = np.random.default_rng(7)
    strong, weak, expert = (log_softmax(logits(rng), 1) for _ in range(3))
    solve = solve_alpha(strong, weak, expert, 1.0, alpha_max=0.1)
    assert (solve.alpha == 1.0).all() and not solve.capped.any()
    np.testing.assert_allclose(solve.kl_fused, kl(fuse(strong, weak, expert, 1.0), strong))


def test_non_finite_log_probabilities_are_refused():
    rng = np.random.default_rng(8)
    strong, weak, expert = (logits(rng) for _ in range(3))
    weak[0, 3] = -np.inf
    with pytest.raises(ValueError, match="S: log-probabilities must be finite"):
        solve_alpha(strong, weak, expert, None, alpha_max=1.0)


def test_a_word_of_several_tokens_is_scored_teacher_forced_with_the_weight_of_its_first_token():
    rng = np.random.default_rng(9)
    n = 5
    # Word 0 is one token, word 1 three; position 0 (the answer position) is the same for both.
    first = [log_softmax(logits(rng, rows=n), 1) for _ in range(3)]
    later = [log_softmax(rng.normal(scale=3, size=(n, 2, VOCAB)), -1) for _ in range(3)]
    per_word = [
        np.stack(first)[:, :, None],
        np.stack([np.concatenate([f[:, None], t], 1) for f, t in zip(first, later)]),
    ]
    words = [[7], [11, 2, 30]]
    cell = spec(alpha_max=10.0)
    out = fuse_answers(per_word, words, cell)
    solve = solve_alpha(*first, None, 10.0)
    np.testing.assert_allclose(out["alpha"], solve.alpha)
    for j, word in enumerate(words):
        strong, weak, expert = per_word[j]
        want = sum(
            np.log(softmax(strong[:, t] + solve.alpha[:, None] * (expert[:, t] - weak[:, t]), axis=1)[:, token])
            for t, token in enumerate(word)
        )
        np.testing.assert_allclose(out["fused"][:, j], want, rtol=1e-10)
        np.testing.assert_allclose(out["strong"][:, j], sum(strong[:, t, tok] for t, tok in enumerate(word)))
        np.testing.assert_allclose(out["expert"][:, j], sum(expert[:, t, tok] for t, tok in enumerate(word)))
    # At weight 0 the fused words score as under L alone.
    at_zero = fuse_answers(per_word, words, spec(alpha=0.0))
    np.testing.assert_allclose(at_zero["fused"], at_zero["strong"], atol=1e-12)


# The three decoders.


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    """L, S and a stand-in for S_ft: tiny Llama-shaped decoders of different sizes on one tokenizer."""
    root = tmp_path_factory.mktemp("fusion")
    return {
        "strong": ModelSpec("big", str(tiny_decoder(root / "big", "llama", hidden=32, seed=0)), max_length=16),
        "weak": ModelSpec(
            "small", str(tiny_decoder(root / "small", "llama", hidden=16, layers=1, seed=1)), max_length=16
        ),
        "expert": ModelSpec("expert", str(tiny_decoder(root / "expert", "llama", hidden=16, layers=1, seed=2))),
    }


@pytest.fixture(scope="module")
def models(decoders):
    return [CausalLM.load(decoders[who]) for who in ("strong", "weak", "expert")]


PROMPTS = ["good movie\nAnswer:", "the film was not great at all, it was awful\nAnswer:", "bad\nAnswer:"]


def gather(batches, n):
    out = None
    for batch in batches:
        if out is None:
            out = [np.zeros((a.shape[0], n, *a.shape[2:])) for a in batch.per_word]
        for j, array in enumerate(batch.per_word):
            out[j][:, batch.prompts] = array
    return out


@pytest.mark.parametrize("words", [(" bad", " good"), (" no", " yes")], ids=["one-token", "several-tokens"])
def test_batched_answer_logprobs_equal_each_prompt_read_alone(models, words):
    together = gather(answer_logprobs(models, PROMPTS, words, batch_size=2), len(PROMPTS))
    alone = [gather(answer_logprobs(models, [p], words, batch_size=1), 1) for p in PROMPTS]
    for j in range(2):
        np.testing.assert_allclose(together[j], np.concatenate([a[j] for a in alone], axis=1), atol=1e-5)
    # Position t of a word is each model's full next-token distribution after the prompt and the word's first
    # t tokens, read from one unpadded sequence.
    word_ids = models[0].word_tokens(words)
    for m, lm in enumerate(models):
        for i, prompt in enumerate(PROMPTS):
            for j, ids in enumerate(word_ids):
                row = lm.encode_prompts([prompt])[0] + ids[:-1]
                with torch.no_grad():
                    direct = torch.log_softmax(lm.model(input_ids=torch.tensor([row])).logits[0], -1).numpy()
                np.testing.assert_allclose(together[j][m, i], direct[len(row) - len(ids) :], atol=1e-5)
                np.testing.assert_allclose(np.exp(together[j][m, i]).sum(-1), 1, rtol=1e-5)


def test_an_output_layer_padded_beyond_the_tokenizer_is_cut_to_its_tokens(tmp_path, decoders, models):
    # Qwen2.5's models of one tokenizer have output layers of different sizes; the rows past it are unused ids.
    padded = AutoModelForCausalLM.from_pretrained(decoders["weak"].path)
    padded.resize_token_embeddings(len(models[1].tokenizer) + 8)
    padded.save_pretrained(tmp_path / "padded")
    models[1].tokenizer.save_pretrained(tmp_path / "padded")
    wide = CausalLM.load(ModelSpec("padded", str(tmp_path / "padded")))
    assert wide.next_token_logprobs(wide.encode_prompts(PROMPTS[:1]), 1).shape[-1] == len(wide.tokenizer) + 8
    [batch] = answer_logprobs([models[0], wide], PROMPTS, (" bad", " good"), batch_size=3)
    read = batch.per_word[0][:, :, 0]
    assert read.shape == (2, 3, len(wide.tokenizer))
    np.testing.assert_allclose(np.exp(read).sum(-1), 1, rtol=1e-5)
    full = wide.next_token_logprobs(wide.encode_prompts([PROMPTS[batch.prompts[0]]]), 1)[0, 0].numpy()
    np.testing.assert_allclose(read[1, 0], log_softmax(full[: len(wide.tokenizer)]), atol=1e-5)


def test_a_tokenizer_that_differs_is_refused_naming_both_aliases(tmp_path, decoders):
    same = load_tokenizer(decoders["strong"])
    check_shared_vocabulary("small", load_tokenizer(decoders["weak"]), "big", same)
    other = tiny_tokenizer(tmp_path / "other")
    other.add_tokens(["fusion"])
    with pytest.raises(
        VocabularyMismatchError, match=r"weak model 'small'.* strong model 'big'.* 1 \(token, id\) pairs"
    ):
        check_shared_vocabulary("small", other, "big", same)


# The expert.


def split_table(prefix: str, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Labels that no text gives away, so that the words the expert learns can only come from the label column.
    return pd.DataFrame(
        {
            "id": [f"{prefix}{i}" for i in range(n)],
            # Of several lengths, so that batches sorted by length mix the order of the rows.
            "text": [f"{prefix} movie {i}" + " great" * (i % 4) for i in range(n)],
            "label": rng.integers(0, 2, n),
        }
    )


def expert_job(tmp_path, decoders, lr=1e-3, epochs=1) -> TrainingJob:
    entry, train_section = schema_defaults()
    entry.update(lr=lr, batch_size=4, micro_batch_size=2, epochs=epochs, max_length=16)
    weak = decoders["weak"]
    return TrainingJob(
        alias=weak.alias,
        entry=entry,
        model_path=weak.path,
        train_section={**train_section, "warmup_frac": 0.0, "weight_decay": 0.0},
        seed=4,
        outputs={"model": str(tmp_path / "expert" / "model"), "info": str(tmp_path / "expert" / "info.json")},
    )


PROMPT = PromptSpec(0, "weak", "Review: {text}\nVerdict:", (" no", " yes"))


def test_the_expert_learns_the_label_words_of_weak_train_ground_truth_only(tmp_path, decoders, monkeypatch):
    weak_train = split_table("w", 10, seed=0)
    weak_train.to_parquet(tmp_path / "weak_train.parquet")
    seen = {}

    def fake_training(model, tokenizer, sequences, loss_masks, objective, settings):
        seen.update(sequences=sequences, masks=loss_masks, objective=objective, settings=settings)
        return [{"step": 1, "loss": 0.5}]

    monkeypatch.setattr(fusion_stages, "train_language_model", fake_training)
    job = expert_job(tmp_path, decoders)
    fusion_stages.expert_stage(job, tmp_path / "weak_train.parquet", vars(PROMPT), {"big": decoders["strong"].path})

    lm = CausalLM.load(decoders["weak"])
    words = lm.word_tokens(PROMPT.label_words)
    assert seen["objective"] == "causal" and seen["settings"].seed == 4 and seen["settings"].epochs == 1
    assert len(seen["sequences"]) == len(weak_train)
    for (_, row), ids, mask in zip(weak_train.iterrows(), seen["sequences"], seen["masks"]):
        prompt = lm.encode_prompts([PROMPT.render(row["text"])])[0]
        # The prompt, then the word of the example's ground-truth label, the loss on the word only.
        assert ids == prompt + words[row["label"]]
        assert mask == [False] * len(prompt) + [True] * len(words[row["label"]])
    info = json.loads((tmp_path / "expert" / "info.json").read_text())
    assert info["role"] == "fusion_expert" and info["seed"] == 4 and info["n_train"] == 10
    assert info["train_curve"] == [{"step": 1, "loss": 0.5}] and info["checked_vocabulary_against"] == ["big"]
    assert (tmp_path / "expert" / "model" / "config.json").is_file()


def test_the_trained_expert_prefers_the_right_label_word(tmp_path, decoders):
    weak_train = split_table("w", 8, seed=1)
    # Texts that tell their label, so that a tiny model can learn them in a few steps.
    weak_train["text"] = ["good movie" if y else "bad film" for y in weak_train["label"]]
    weak_train.to_parquet(tmp_path / "weak_train.parquet")
    job = expert_job(tmp_path, decoders, lr=1e-2, epochs=60)
    fusion_stages.expert_stage(job, tmp_path / "weak_train.parquet", vars(PROMPT), {"big": decoders["strong"].path})

    prompts = [PROMPT.render(t) for t in weak_train["text"]]
    truth = weak_train["label"].to_numpy()

    def margin(path):
        logprobs = CausalLM.load(ModelSpec("m", path)).continuation_logprobs(prompts, PROMPT.label_words, 8)
        return np.where(truth == 1, 1, -1) * (logprobs[:, 1] - logprobs[:, 0])

    before, after = margin(decoders["weak"].path), margin(job.outputs["model"])
    assert (after > 0).all() and after.mean() > before.mean() + 1
    assert not list((tmp_path / "expert").glob(".model.*")), "the staged model directory was left behind"
    info = json.loads((tmp_path / "expert" / "info.json").read_text())
    assert len(info["train_curve"]) == 60 * 2 and info["train_curve"][-1]["loss"] < info["train_curve"][0]["loss"]


def test_the_expert_job_stops_before_training_when_a_strong_tokenizer_differs(tmp_path, decoders, monkeypatch):
    split_table("w", 4, seed=0).to_parquet(tmp_path / "weak_train.parquet")
    other = tiny_tokenizer(tmp_path / "other")
    other.add_tokens(["fusion"])
    other.save_pretrained(tmp_path / "other")
    monkeypatch.setattr(fusion_stages, "train_language_model", pytest.fail)
    strong = {"big": decoders["strong"].path, "odd": str(tmp_path / "other")}
    with pytest.raises(VocabularyMismatchError, match="weak model 'small'.* strong model 'odd'"):
        fusion_stages.expert_stage(
            expert_job(tmp_path, decoders), tmp_path / "weak_train.parquet", vars(PROMPT), strong
        )
    assert not (tmp_path / "expert").exists()


# The fusion cell's outputs.


def run_fusion(tmp_path, decoders, entry: dict, name: str) -> tuple[pd.DataFrame, dict]:
    test = split_table("t", 7, seed=2)
    test.to_parquet(tmp_path / "test.parquet")
    cell = intervention_cells({"fusion": {"fusion": entry}})["fusion"]
    outputs = {"test": tmp_path / name / "test.parquet", "info": tmp_path / name / "info.json"}
    fusion_stages.fusion_stage(
        decoders["strong"],
        decoders["weak"],
        decoders["expert"].path,
        tmp_path / "test.parquet",
        cell.record(),
        "sms_spam",
        3,
        outputs,
    )
    return pd.read_parquet(outputs["test"]), json.loads(outputs["info"].read_text())


def test_the_fusion_stage_writes_fused_predictions_with_each_examples_weight(tmp_path, decoders):
    entry = fusion_entry(label_words=[" no", " yes"], batch_size=3, alpha_max=5.0)
    preds, info = run_fusion(tmp_path, decoders, entry, "batched")
    alone, _ = run_fusion(tmp_path, decoders, {**entry, "batch_size": 1}, "alone")
    pd.testing.assert_frame_equal(preds, alone, atol=1e-6)

    test = pd.read_parquet(tmp_path / "test.parquet")
    assert preds["id"].tolist() == test["id"].tolist() and preds["soft_pred"].between(0, 1).all()
    np.testing.assert_allclose(preds["soft_pred"], 1 / (1 + np.exp(preds["logprob_0"] - preds["logprob_1"])))
    assert preds["alpha"].between(0, 5.0).all()
    reached = ~preds["capped"]
    np.testing.assert_allclose(preds["kl_fused"][reached], preds["kl_expert"][reached], rtol=1e-3)
    assert info["role"] == "fusion" and info["alpha"] == "dynamic" and info["seed"] == 3
    assert info["n_capped"] == int(preds["capped"].sum()) and info["n_test"] == 7
    assert info["strong_model"] == "big" and info["weak_model"] == "small"
    assert [len(t) for t in info["label_word_tokens"]] == [2, 3]
    assert set(info["test_acc"]) == {"fused", "strong", "expert"}

    # A fixed weight of 0 is L alone: its predictions are the strong model's zero-shot ones.
    zero, info = run_fusion(tmp_path, decoders, {**entry, "alpha": 0.0}, "zero")
    np.testing.assert_allclose(zero["soft_pred"], zero["strong_soft_pred"], atol=1e-9)
    np.testing.assert_allclose(zero["strong_soft_pred"], preds["strong_soft_pred"], atol=1e-9)
    assert (zero["alpha"] == 0).all() and info["alpha"] == 0.0 and info["n_capped"] == 0


def test_the_fusion_stage_refuses_models_of_two_vocabularies(tmp_path, decoders):
    other = tiny_tokenizer(tmp_path / "odd")
    other.add_tokens(["fusion"])
    other.save_pretrained(tmp_path / "odd")
    odd = ModelSpec("odd", str(tmp_path / "odd"))
    cell = intervention_cells({"fusion": {"fusion": fusion_entry()}})["fusion"].record()
    outputs = {"test": tmp_path / "out" / "test.parquet", "info": tmp_path / "out" / "info.json"}
    with pytest.raises(VocabularyMismatchError, match="weak model 'odd'.* strong model 'big'"):
        fusion_stages.fusion_stage(
            decoders["strong"], odd, decoders["expert"].path, tmp_path, cell, "sms_spam", 0, outputs
        )
    assert not (tmp_path / "out").exists()


# The config.


def test_fusion_entries_get_defaults_and_refuse_unknown_keys_and_losses():
    assert fusion_entry() == {
        "alpha": "dynamic",
        "alpha_max": 2.0,
        "batch_size": 16,
        "label_words": [" No", " Yes"],
        "template": "{text}\nAnswer:",
        "templates": {},
    }
    assert fusion_entry(alpha=1.0)["alpha"] == 1.0
    for bad, key in (({"alpha": "adaptive"}, "fusion.alpha"), ({"alpha_max": 0}, "fusion.alpha_max")):
        with pytest.raises(ConfigError, match=re.escape(f"interventions.cell.{key}")):
            fusion_entry(**bad)
    with pytest.raises(ConfigError, match="shots"):
        fusion_entry(shots=2)
    with pytest.raises(ConfigError, match="a fusion cell trains no student"):
        validate_intervention({"loss": "entropy", "alpha": 0.5, "fusion": {}})


def test_a_fusion_cell_trains_no_student_and_is_no_reference():
    cells = intervention_cells({"dyn": {"fusion": fusion_entry()}, "proxy": {"fusion": fusion_entry(alpha=1.0)}})
    assert {c.kind for c in cells.values()} == {"fusion"}
    assert not any(c.trains_student or c.learns_ground_truth for c in cells.values())


def test_cells_share_an_expert_exactly_when_their_template_and_label_words_agree():
    dyn = fusion_entry(templates={"imdb": "Film: {text}"})
    key = {task: expert_key(fusion_prompt(dyn, task)) for task in ("imdb", "sms_spam")}
    assert key["imdb"] != key["sms_spam"]
    assert (
        expert_key(fusion_prompt(fusion_entry(alpha=1.0, alpha_max=4.0, batch_size=2), "sms_spam")) == key["sms_spam"]
    )
    assert expert_key(fusion_prompt(fusion_entry(label_words=[" no", " yes"]), "sms_spam")) != key["sms_spam"]
    assert fusion_prompt(dyn, "imdb").template == "Film: {text}" and fusion_prompt(dyn, "imdb").shots == 0


def test_encoders_and_fractional_expert_epochs_are_config_errors_naming_the_key(tmp_path):
    bert = str(tiny_bert(tmp_path / "bert"))
    llama = str(tiny_decoder(tmp_path / "llama", "llama"))
    models = {"bert": {"path": bert, "epochs": 2}, "lm": {"path": llama, "epochs": 2}}
    cells = {"fusion": {"fusion": {}}}
    config = {"weak_models": ["bert"], "strong_models": ["lm"], "models": models, "interventions": cells}
    [message] = fusion_problems(config, ["fusion"])
    assert message.startswith("config key 'weak_models': 'bert' is not a decoder language model")
    assert fusion_problems(config, []) == []
    config = {"weak_models": ["lm"], "strong_models": ["bert"], "models": models, "interventions": cells}
    [message] = fusion_problems(config, ["fusion"])
    assert message.startswith("config key 'strong_models': 'bert' is not a decoder language model")
    # A cell that names its own models is checked against those alone.
    cells["fusion"].update(weak_models=["lm"], strong_models=["lm"])
    assert fusion_problems(config, ["fusion"]) == []
    cells["fusion"]["strong_models"] = ["bert"]
    [message] = fusion_problems(config, ["fusion"])
    assert message.startswith("config key 'interventions.fusion.strong_models': 'bert' is not a decoder")
    del cells["fusion"]["weak_models"], cells["fusion"]["strong_models"]
    models["lm"].update(epochs=1.5, max_steps=10)
    config = {"weak_models": ["lm"], "strong_models": ["lm"], "models": models, "interventions": cells}
    assert fusion_problems(config, ["fusion"]) == [
        "config key 'models.lm.max_steps': the fusion intervention 'fusion' finetunes 'lm' into its expert for "
        "whole epochs; remove max_steps and set epochs",
        "config key 'models.lm.epochs': 1.5 is not a whole number, but the fusion intervention 'fusion' finetunes "
        "'lm' into its expert for whole epochs; round it",
    ]


# The DAG.


def fusion_config(tmp_path) -> dict:
    small = tiny_decoder(tmp_path / "small", "llama", hidden=16, layers=1, seed=1)
    big = tiny_decoder(tmp_path / "big", "llama", hidden=32, seed=0)
    common = {"max_length": 32, "lr": 1e-3, "batch_size": 16, "micro_batch_size": 8, "epochs": 2}
    return {
        "tasks": ["sms_spam"],
        "seeds": [0, 1],
        "weak_models": ["small"],
        "strong_models": ["big"],
        "models": {"small": {"path": str(small), **common}, "big": {"path": str(big), **common}},
        "interventions": {
            "xent": {"loss": "xent"},
            "fusion": {"fusion": {"alpha": "dynamic"}},
            "proxy": {"fusion": {"alpha": 1.0}},
            "fusion_words": {"fusion": {"label_words": [" ham", " spam"]}},
        },
        "splits": {"weak_train": 48, "strong_train": 64, "val": 32, "test": 64},
        "hub_offline": True,
    }


def test_the_dag_trains_one_expert_per_task_weak_model_seed_and_prompt(tmp_path):
    config = fusion_config(tmp_path)
    out = snakemake(tmp_path, config, "-n").stdout
    counts = job_counts(out)
    seeds = len(config["seeds"])
    # fusion and proxy share their expert (same template and words); fusion_words has its own.
    assert counts["train_fusion_expert"] == 2 * seeds and counts["fusion_student"] == 3 * seeds
    assert counts["train_student"] == seeds and counts["cell_metrics"] == 4 * seeds
    # The expert reads weak_train and no other split.
    expert_jobs = [job for job in out.split("\nrule ") if job.startswith("train_fusion_expert:")]
    assert len(expert_jobs) == 2 * seeds
    for job in expert_jobs:
        inputs = re.search(r"input: (.*)", job)[1]
        assert re.findall(r"splits/(\w+)\.parquet", inputs) == ["weak_train"]

    config["weak_models"] = ["bert"]
    config["models"]["bert"] = {"path": str(tiny_bert(tmp_path / "bert"))}
    proc = snakemake(tmp_path, config, "-n", check=False)
    assert proc.returncode != 0
    assert "'weak_models': 'bert' is not a decoder language model" in proc.stdout + proc.stderr
