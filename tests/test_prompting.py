"""Zero- and few-shot prompting of a decoder: label-word scoring, demonstrations, the cell's outputs and its
config."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tiny_models import tiny_bert, tiny_decoder, tiny_gpt2
from tiny_workflow import e2e_config, snakemake
from w2s.config import ConfigError, validate_config
from w2s.engine.batching import collate
from w2s.engine.lm import CausalLM, NotADecoderError
from w2s.engine.modeling import ModelSpec
from w2s.labels.interventions import intervention_cells
from w2s.labels.prompting import PromptSpec, choose_demos, demo_labels, p_class1, prompting_problems
from w2s.stages.prompting import prompt_stage

SHAPES = ("gpt2", "llama", "qwen2")


def build(directory, shape):
    return tiny_gpt2(directory) if shape == "gpt2" else tiny_decoder(directory, shape)


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoders")
    return {shape: CausalLM.load(ModelSpec(shape, str(build(root / shape, shape)))) for shape in SHAPES}


def direct_logprob(lm: CausalLM, prompt: str, word: str) -> float:
    """log p(word | prompt) from one unpadded sequence, token by token."""
    prompt_ids = lm.encode_prompts([prompt])[0]
    word_ids = lm.word_tokens([word])[0]
    ids = torch.tensor([prompt_ids + word_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(lm.model(input_ids=ids).logits[0], -1)
    return sum(logprobs[len(prompt_ids) - 1 + j, t].item() for j, t in enumerate(word_ids))


PROMPTS = ["good movie\nAnswer:", "the film was not great at all, it was awful\nAnswer:", "bad\nAnswer:"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("words", [(" bad", " good"), (" no", " yes")], ids=["one-token", "several-tokens"])
def test_batched_label_word_scores_equal_each_prompt_scored_alone(decoders, shape, words):
    lm = decoders[shape]
    # Words of one token share one row per prompt; " no" and " yes" are several tokens for every shape here.
    assert words[0] == " bad" or min(len(t) for t in lm.word_tokens(words)) > 1
    got = lm.continuation_logprobs(PROMPTS, words, batch_size=2)
    want = np.array([[direct_logprob(lm, p, w) for w in words] for p in PROMPTS])
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
def test_batched_greedy_generation_equals_one_prompt_at_a_time(decoders, shape):
    lm = decoders[shape]
    together = lm.generate(PROMPTS, max_new_tokens=5, batch_size=3)
    alone = [lm.generate([p], max_new_tokens=5, batch_size=1)[0] for p in PROMPTS]
    assert together == alone and all(together)


def test_left_collation_ends_every_row_at_the_last_column():
    batch = collate([[5, 6, 7], [8]], pad_id=0, side="left")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_an_encoder_is_refused_as_a_language_model(tmp_path):
    with pytest.raises(NotADecoderError, match="model 'bert' .* is not a decoder language model"):
        CausalLM.load(ModelSpec("bert", str(tiny_bert(tmp_path / "bert"))))


def test_p_class1_is_the_softmax_over_the_two_label_words():
    logprobs = np.log(np.array([[0.2, 0.6], [0.01, 0.01], [1e-300, 0.5]]))
    np.testing.assert_allclose(p_class1(logprobs), [0.75, 0.5, 1.0])


def test_a_prompt_shows_each_demonstration_with_its_label_word_then_the_example():
    spec = PromptSpec(shots=2, demos="weak", template="Review: {text}\nPositive?", label_words=(" No", " Yes"))
    got = spec.render("odd {braces}", [("great", 1), ("awful", 0)])
    assert got == "Review: great\nPositive? Yes\n\nReview: awful\nPositive? No\n\nReview: odd {braces}\nPositive?"
    assert spec.render("x") == "Review: x\nPositive?"


def test_per_task_templates_replace_the_default():
    entry = {"shots": 0, "demos": "weak", "template": "{text}?", "templates": {"imdb": "Film: {text}"}}
    entry["label_words"] = [" No", " Yes"]
    assert PromptSpec.from_entry(entry, "imdb").template == "Film: {text}"
    assert PromptSpec.from_entry(entry, "sms_spam").template == "{text}?"


def test_demonstrations_are_balanced_seeded_and_never_the_scored_example():
    pool_ids = np.array([f"e{i}" for i in range(20)])
    labels = np.array([0] * 14 + [1] * 6)
    scored = np.array(["e0", "e15", "e3"])
    chosen = choose_demos(pool_ids, labels, scored, 5, np.random.default_rng(7))
    again = choose_demos(pool_ids, labels, scored, 5, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(chosen, again))
    for scored_id, picks in zip(scored, chosen):
        assert len(set(picks)) == 5 and scored_id not in pool_ids[picks]
        assert sorted(np.bincount(labels[picks], minlength=2)) == [2, 3]
    # e15 is one of four examples labelled 1: three demonstrations of label 1 must be the other three.
    for seed in range(5):
        [picks] = choose_demos(pool_ids[10:18], labels[10:18], np.array(["e15"]), 6, np.random.default_rng(seed))
        assert set(pool_ids[10:18][picks]) >= {"e14", "e16", "e17"} and "e15" not in pool_ids[10:18][picks]
    # Six examples labelled 1 (five for e15): a label that cannot give half gives all it has.
    for scored_id, picks in zip(scored, choose_demos(pool_ids, labels, scored, 14, np.random.default_rng(0))):
        ones = 5 if scored_id == "e15" else 6
        assert np.bincount(labels[picks], minlength=2).tolist() == [14 - ones, ones]
        assert len(set(picks)) == 14 and scored_id not in pool_ids[picks]
    # A weak model that labels every example 0 still gives demonstrations, all labelled 0.
    [picks] = choose_demos(pool_ids, np.zeros(20, int), np.array(["e0"]), 4, np.random.default_rng(0))
    assert len(set(picks)) == 4 and "e0" not in pool_ids[picks]
    with pytest.raises(ValueError, match="20 demonstrations need 20 strong_train examples besides the one scored"):
        choose_demos(pool_ids, labels, scored, 20, np.random.default_rng(0))


def test_weak_demonstrations_show_the_weak_models_hardened_labels():
    pool = pd.DataFrame({"id": ["a", "b", "c"], "text": ["x", "y", "z"], "label": [1, 1, 0]})
    weak = pd.DataFrame({"id": ["c", "a", "b"], "soft_pred": [0.9, 0.2, 0.5]})
    assert demo_labels(pool, weak, "weak").tolist() == [0, 1, 1]
    assert demo_labels(pool, None, "ground_truth").tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="miss strong_train examples"):
        demo_labels(pool, weak.iloc[:2], "weak")


def split(prefix, n, rng):
    texts = [("good movie " if y else "bad film ") + prefix + str(i) for i, y in enumerate(rng.integers(0, 2, n))]
    labels = [int(t.startswith("good")) for t in texts]
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(n)], "text": texts, "label": labels})


@pytest.mark.parametrize("demos", ["weak", "ground_truth"])
def test_the_prompt_stage_writes_test_predictions_and_its_demonstrations(tmp_path, demos):
    rng = np.random.default_rng(0)
    strong_train, test = split("s", 12, rng), split("t", 5, rng)
    paths = {"strong_train": tmp_path / "strong_train.parquet", "test": tmp_path / "test.parquet"}
    strong_train.to_parquet(paths["strong_train"])
    test.to_parquet(paths["test"])
    # The weak model gets every strong_train example wrong, so weak and ground-truth demonstrations differ.
    weak = pd.DataFrame({"id": strong_train["id"], "soft_pred": 1.0 - strong_train["label"]})
    weak.to_parquet(tmp_path / "weak.parquet")
    entry = validate_intervention({"prompt": {"shots": 4, "demos": demos, "batch_size": 3}})
    cell = intervention_cells({"fewshot": entry})["fewshot"]
    outputs = {"test": tmp_path / "out" / "test.parquet", "info": tmp_path / "out" / "info.json"}
    spec = ModelSpec("llama", str(tiny_decoder(tmp_path / "llama", "llama")), max_length=8)
    prompt_stage(spec, paths, tmp_path / "weak.parquet", cell.record(), "sms_spam", 3, outputs)

    preds = pd.read_parquet(outputs["test"])
    info = json.loads(outputs["info"].read_text())
    assert preds["id"].tolist() == test["id"].tolist() and preds["soft_pred"].between(0, 1).all()
    np.testing.assert_allclose(preds["soft_pred"], p_class1(preds[["logprob_0", "logprob_1"]].to_numpy()))
    # The weak model's label is the opposite of the truth.
    truth = strong_train["label"]
    shown = dict(zip(strong_train["id"], truth if demos == "ground_truth" else 1 - truth))
    for ids in preds["demo_ids"]:
        assert len(ids) == 4 and set(ids) <= set(strong_train["id"])
        assert sorted(shown[i] for i in ids) == [0, 0, 1, 1]
    assert info["seed"] == 3 and info["shots"] == 4 and info["demos"] == demos
    texts = dict(zip(strong_train["id"], strong_train["text"]))
    words = {0: " No", 1: " Yes"}
    first = [f"{texts[i]}\nAnswer:{words[shown[i]]}" for i in preds["demo_ids"][0]]
    assert info["example_prompt"] == "\n\n".join([*first, f"{test['text'][0]}\nAnswer:"])
    # The same seed draws the same demonstrations.
    prompt_stage(spec, paths, tmp_path / "weak.parquet", cell.record(), "sms_spam", 3, outputs)
    again = pd.read_parquet(outputs["test"])["demo_ids"]
    assert [list(ids) for ids in again] == [list(ids) for ids in preds["demo_ids"]]


def validate_intervention(entry: dict) -> dict:
    config = {
        "tasks": ["sms_spam"],
        "seeds": [0],
        "weak_models": ["m"],
        "strong_models": ["m"],
        "models": {"m": {"path": "org/model"}},
        "interventions": {"cell": entry},
    }
    return validate_config(config)["interventions"]["cell"]


def test_prompt_entries_get_defaults_and_refuse_unknown_keys_and_losses():
    entry = validate_intervention({"prompt": {}})
    assert entry["prompt"] == {
        "batch_size": 16,
        "demos": "weak",
        "label_words": [" No", " Yes"],
        "shots": 0,
        "template": "{text}\nAnswer:",
        "templates": {},
    }
    with pytest.raises(ConfigError, match="shot"):
        validate_intervention({"prompt": {"shot": 2}})
    with pytest.raises(ConfigError, match=r"interventions.cell.prompt.template"):
        validate_intervention({"prompt": {"template": "no placeholder"}})
    with pytest.raises(ConfigError, match="a prompting cell trains no student"):
        validate_intervention({"loss": "logconf", "prompt": {}})


def test_only_ground_truth_demonstrations_make_a_reference_cell():
    cells = intervention_cells(
        {
            "zeroshot": validate_intervention({"prompt": {}}),
            "fewshot_weak": validate_intervention({"prompt": {"shots": 8}}),
            "fewshot_gt": validate_intervention({"prompt": {"shots": 8, "demos": "ground_truth"}}),
        }
    )
    assert {c.kind for c in cells.values()} == {"prompt"} and not any(c.trains_student for c in cells.values())
    assert {n: c.learns_ground_truth for n, c in cells.items()} == {
        "zeroshot": False,
        "fewshot_weak": False,
        "fewshot_gt": True,
    }


def test_prompting_an_encoder_strong_model_is_a_config_error_naming_it(tmp_path):
    bert = str(tiny_bert(tmp_path / "bert"))
    llama = str(tiny_decoder(tmp_path / "llama", "llama"))
    (tmp_path / "gguf").mkdir()
    (tmp_path / "gguf" / "m.gguf").write_bytes(b"GGUF")
    cases = {
        "bert": ({"path": bert}, "its config.json lists ['BertModel']"),
        "minilm": ({"path": "h/m", "offline_package": "all-MiniLM-L6-v2"}, "offline package 'all-MiniLM-L6-v2'"),
        "llama": ({"path": llama}, None),
        "smol": ({"path": "h/s", "offline_package": "SmolLM2-135M-Instruct"}, None),
        "gguf": ({"path": str(tmp_path / "gguf")}, None),
        "uncached-hub-id": ({"path": "no-such-org/no-such-model"}, None),
    }
    for alias, (entry, why) in cases.items():
        config = {
            "weak_models": [alias],
            "strong_models": [alias],
            "models": {alias: entry},
            "interventions": {"zeroshot": {"prompt": {}}},
        }
        problems = prompting_problems(config, ["zeroshot"])
        if why is None:
            assert problems == [], alias
        else:
            [message] = problems
            assert f"'strong_models': {alias!r} is not a decoder language model ({why}" in message
            assert "'zeroshot'" in message and "list only decoders" in message
    assert prompting_problems({"strong_models": ["bert"], "models": {"bert": {"path": bert}}}, []) == []
    # A cell that names its own strong models is checked against those alone, and the message names its key.
    models = {"bert": {"path": bert}, "llama": {"path": llama}}
    config = {
        "weak_models": ["bert"],
        "strong_models": ["bert"],
        "models": models,
        "interventions": {"z": {"prompt": {}, "strong_models": ["llama"]}},
    }
    assert prompting_problems(config, ["z"]) == []
    config["interventions"]["z"]["strong_models"] = ["llama", "bert"]
    [message] = prompting_problems(config, ["z"])
    assert message.startswith("config key 'interventions.z.strong_models': 'bert' is not a decoder")


PROMPT_CELLS = {
    "zeroshot": {"prompt": {"shots": 0}},
    "fewshot_weak": {"prompt": {"shots": 2, "demos": "weak"}},
    "fewshot_gt": {"prompt": {"shots": 2, "demos": "ground_truth"}},
}


def test_the_dag_prompts_decoders_and_stops_on_encoders(tmp_path):
    config = e2e_config()
    config["seeds"] = [0]
    config["models"]["lm"] = {"path": str(tiny_decoder(tmp_path / "llama", "llama")), "max_length": 16}
    config["strong_models"] = ["lm"]
    config["interventions"] = {"xent": {"loss": "xent"}, **copy.deepcopy(PROMPT_CELLS)}
    out = snakemake(tmp_path, config, "-n", "--quiet", "rules").stdout
    counts = {line.split()[0]: int(line.split()[1]) for line in out.split("Job stats:")[1].splitlines()[3:] if line}
    assert counts["prompt_student"] == 3 and counts["train_student"] == 1 and counts["cell_metrics"] == 4

    config["strong_models"] = ["minilm"]
    proc = snakemake(tmp_path, config, "-n", check=False)
    assert proc.returncode != 0
    assert "'strong_models': 'minilm' is not a decoder language model" in proc.stdout + proc.stderr
