"""Debate-assisted weak supervision: transcripts from a tiny decoder, the texts the debate-informed weak models
read, their averaged labels, the config entry and the DAG's shared nodes."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from test_prompting import validate_intervention
from tiny_models import tiny_bert, tiny_decoder
from tiny_workflow import e2e_config, snakemake
from w2s.config import ConfigError
from w2s.engine.lm import CausalLM
from w2s.engine.modeling import ModelSpec
from w2s.labels.debate import (
    TRANSCRIPT_SEPARATOR,
    DebateSpec,
    argument,
    debate_problems,
    debate_split,
    run_debates,
    with_transcript,
)
from w2s.labels.interventions import intervention_cells
from w2s.layout import SPLITS
from w2s.stages.debate import transcripts_stage
from w2s.stages.debate_labels import debate_labels_stage

TEXTS = ["good movie", "the film was not great at all, it was awful", "bad"]


def debate_entry(**fields) -> dict:
    return validate_intervention({"debate": fields})["debate"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    path = tiny_decoder(tmp_path_factory.mktemp("llama") / "llama", "llama")
    return ModelSpec("llama", str(path), max_length=16)


def lm_generate(lm: CausalLM, spec: DebateSpec, batch_size: int):
    return lambda prompts, seed: lm.generate(prompts, spec.max_new_tokens, batch_size, spec.temperature, seed)


def test_debate_entries_get_defaults_and_refuse_unknown_keys():
    assert debate_entry() == {
        "debater": None,
        "turns": 1,
        "max_new_tokens": 48,
        "temperature": 0.0,
        "batch_size": 16,
        "replicas": 2,
        "answers": ["No", "Yes"],
        "template": (
            "{text}\n\nTwo debaters argue about the answer to the text above, each for one side.\n"
            "{transcript}Debater for {answer}:"
        ),
        "templates": {},
    }
    with pytest.raises(ConfigError, match="interventions.cell.debate.template"):
        debate_entry(template="{text} for {answer}")
    with pytest.raises(ConfigError, match="rounds"):
        debate_entry(rounds=2)
    cell = intervention_cells({"d": validate_intervention({"debate": {}})})["d"]
    assert cell.kind == "debate" and cell.trains_student and not cell.learns_ground_truth


def test_each_debater_argues_its_own_side_after_the_transcript_so_far():
    spec = DebateSpec.from_entry(debate_entry(turns=2, answers=["ham", "spam"]), "sms_spam")
    calls = []

    def generate(prompts, seed):
        calls.append((prompts, seed))
        # Each debater answers with the side its prompt ends on, and runs on into a second line.
        return [f" I say {p.rsplit('Debater for ', 1)[1].rstrip(':')}\nDebater for X: hijack" for p in prompts]

    transcripts = run_debates(generate, TEXTS, spec, seed=7)
    assert len(calls) == 4 and len({seed for _, seed in calls}) == 4
    sides = ["ham", "spam", "ham", "spam"]
    for k, (prompts, _) in enumerate(calls):
        for text, prompt in zip(TEXTS, prompts):
            earlier = "".join(f"Debater for {s}: I say {s}\n" for s in sides[:k])
            assert prompt == spec.template.replace("{text}", text).replace("{transcript}", earlier).replace(
                "{answer}", sides[k]
            )
    assert transcripts == ["".join(f"Debater for {s}: I say {s}\n" for s in sides)] * len(TEXTS)
    assert argument("\n\n  first line \nsecond") == "first line"


def test_per_task_templates_replace_the_default():
    entry = debate_entry(templates={"imdb": "Review: {text}\n{transcript}Is it {answer}?"})
    assert DebateSpec.from_entry(entry, "imdb").prompt("x", 1, "") == "Review: x\nIs it Yes?"
    assert DebateSpec.from_entry(entry, "sms_spam").template == entry["template"]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_transcripts_are_deterministic_under_a_seed(llama, temperature):
    lm = CausalLM.load(llama)
    spec = DebateSpec.from_entry(debate_entry(turns=2, max_new_tokens=6, temperature=temperature), "sms_spam")
    first = run_debates(lm_generate(lm, spec, 3), TEXTS, spec, seed=1)
    assert first == run_debates(lm_generate(lm, spec, 3), TEXTS, spec, seed=1)
    assert all(t.count("Debater for ") == 4 for t in first)
    if temperature:
        assert first != run_debates(lm_generate(lm, spec, 3), TEXTS, spec, seed=2)


def test_batched_greedy_debates_equal_one_example_at_a_time(llama):
    lm = CausalLM.load(llama)
    spec = DebateSpec.from_entry(debate_entry(turns=2, max_new_tokens=6), "sms_spam")
    together = run_debates(lm_generate(lm, spec, 3), TEXTS, spec, seed=0)
    alone = [run_debates(lm_generate(lm, spec, 1), [t], spec, seed=0)[0] for t in TEXTS]
    assert together == alone
    # The tiny random decoder writes something in at least one argument.
    assert any(re.search(r"Debater for \w+: \S", t) for t in together)


def splits_on_disk(folder, sizes=(4, 3, 3, 5)) -> dict[str, str]:
    paths = {}
    for name, n in zip(SPLITS, sizes):
        labels = np.arange(n) % 2  # both classes in every split
        table = pd.DataFrame(
            {
                "id": [f"{name}-{i}" for i in range(n)],
                "text": [("good movie " if y else "bad film ") + str(i) for i, y in enumerate(labels)],
                "label": labels,
            }
        )
        paths[name] = str(folder / f"{name}.parquet")
        table.to_parquet(paths[name])
    return paths


def test_the_transcripts_stage_writes_one_table_per_split_keyed_by_id(tmp_path, llama):
    paths = splits_on_disk(tmp_path)
    entry = debate_entry(max_new_tokens=4, batch_size=4, temperature=0.7)
    outputs = {name: tmp_path / "out" / f"{name}.parquet" for name in SPLITS} | {"info": tmp_path / "out" / "i.json"}
    transcripts_stage(llama, paths, entry, "sms_spam", 5, outputs)
    written = {name: pd.read_parquet(outputs[name]) for name in SPLITS}
    for name in SPLITS:
        assert written[name]["id"].tolist() == pd.read_parquet(paths[name])["id"].tolist()
        assert all(t.startswith("Debater for No: ") and "\nDebater for Yes: " in t for t in written[name]["transcript"])
    info = json.loads(outputs["info"].read_text())
    assert info["seed"] == 5 and info["debate"] == entry and info["model"] == "llama"
    transcripts_stage(llama, paths, entry, "sms_spam", 5, outputs)
    assert all(pd.read_parquet(outputs[n]).equals(written[n]) for n in SPLITS)


def test_a_debate_informed_weak_model_reads_the_text_then_its_transcript():
    split = pd.DataFrame({"id": ["a", "b"], "text": ["first", "second"], "label": [0, 1]})
    transcripts = pd.DataFrame({"id": ["b", "a"], "transcript": ["tb", "ta"]})
    read = debate_split(split, transcripts)
    assert read["text"].tolist() == ["first" + TRANSCRIPT_SEPARATOR + "ta", "second" + TRANSCRIPT_SEPARATOR + "tb"]
    assert with_transcript("x", "y") == "x\n\nDebate:\ny"
    assert read["label"].tolist() == [0, 1] and split["text"].tolist() == ["first", "second"]
    with pytest.raises(ValueError, match="1 examples have no debate transcript .*'b'"):
        debate_split(split, transcripts.iloc[1:])


def test_debate_labels_are_the_replicas_mean_on_the_plain_texts(tmp_path):
    paths = splits_on_disk(tmp_path)
    members = []
    # Replica 0 predicts 0.2 / 0.8 for class 0 / 1 (always right), replica 1 0.6 / 0.8 (class 0 wrong).
    for r, (p0, p1) in enumerate(((0.2, 0.8), (0.6, 0.8))):
        member = {}
        for name in ("strong_train", "val", "test"):
            split = pd.read_parquet(paths[name])
            member[name] = str(tmp_path / f"m{r}-{name}.parquet")
            soft = np.where(split["label"] == 1, p1, p0)
            pd.DataFrame({"id": split["id"][::-1], "soft_pred": soft[::-1]}).to_parquet(member[name])
        members.append(member)
    outputs = {name: tmp_path / "labels" / f"{name}.parquet" for name in ("train", "val")}
    outputs["report"] = tmp_path / "labels" / "debate.json"
    debate_labels_stage(paths["strong_train"], paths["val"], paths["test"], members, "lm", outputs)
    for out, name in (("train", "strong_train"), ("val", "val")):
        split = pd.read_parquet(paths[name])
        table = pd.read_parquet(outputs[out])
        assert list(table.columns) == ["id", "text", "soft_label"]
        assert table["text"].tolist() == split["text"].tolist()
        np.testing.assert_allclose(table["soft_label"], 0.4 + 0.4 * split["label"])
    report = json.loads(outputs["report"].read_text())
    test_labels = pd.read_parquet(paths["test"])["label"]
    assert [m["acc"] for m in report["members"]] == [1.0, float(test_labels.mean())] == [1.0, 0.4]
    assert report["mean"]["acc"] == 1.0 and report["replicas"] == 2 and report["debater"] == "lm"


def test_a_debater_that_is_an_encoder_or_undefined_is_a_config_error(tmp_path):
    bert = str(tiny_bert(tmp_path / "bert"))
    llama = str(tiny_decoder(tmp_path / "llama", "llama"))
    config = {
        "weak_models": ["bert"],
        "strong_models": ["bert"],
        "models": {"bert": {"path": bert}, "lm": {"path": llama}},
    }
    [message] = debate_problems(config, {"d": {"debate": debate_entry()}})
    assert message.startswith("config key 'strong_models': 'bert' debates for intervention 'd'")
    assert "not a decoder language model" in message and "set interventions.d.debate.debater to" in message
    assert debate_problems(config, {"d": {"debate": debate_entry(debater="lm")}}) == []
    [message] = debate_problems(config, {"d": {"debate": debate_entry(debater="bert")}})
    assert message.startswith("config key 'interventions.d.debate.debater': 'bert' debates")
    [message] = debate_problems(config, {"d": {"debate": debate_entry(debater="gpt")}})
    assert "'interventions.d.debate.debater': model alias 'gpt' is not defined" in message
    cells = {"a": {"debate": debate_entry(debater="lm")}, "b": {"debate": debate_entry(debater="lm", turns=2)}}
    [message] = debate_problems(config, cells)
    assert "'interventions.b.debate': debater 'lm' also debates for intervention 'a'" in message
    cells["b"] = {"debate": debate_entry(debater="lm", replicas=3)}
    assert debate_problems(config, cells) == []


def job_counts(out: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.MULTILINE)}


def test_the_dag_shares_one_transcript_job_per_task_debater_and_seed(tmp_path):
    config = e2e_config()
    config["models"]["lm"] = {"path": str(tiny_decoder(tmp_path / "llama", "llama")), "max_length": 16}
    config["strong_models"] = ["lm"]
    config["interventions"] = {
        "xent": {"loss": "xent"},
        "debate2": {"debate": {"replicas": 2}},
        "debate3": {"loss": "logconf", "debate": {"replicas": 3}},
    }
    counts = job_counts(snakemake(tmp_path, config, "-n", "--quiet", "rules").stdout)
    seeds = len(config["seeds"])
    assert counts["debate_transcripts"] == seeds
    # Replicas 0 and 1 serve both cells; replica 2 only the 3-member one.
    assert counts["train_debate_weak"] == 3 * seeds and counts["debate_labels"] == 2 * seeds
    assert counts["train_weak"] == seeds and counts["train_student"] == 3 * seeds

    config["strong_models"] = ["minilm"]
    proc = snakemake(tmp_path, config, "-n", check=False)
    assert proc.returncode != 0
    assert "'strong_models': 'minilm' debates for intervention 'debate2'" in proc.stdout + proc.stderr
