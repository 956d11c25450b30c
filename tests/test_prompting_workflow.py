"""Prompting and debate cells through the real Snakefile: the tiny config's data and weak model, a tiny
Llama-shaped decoder as the strong model (and debater), one seed. The tiny end-to-end config keeps MiniLM (an
encoder) as its strong model, so neither prompting nor a debate with the strong model can be one of its cells."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from test_prompting import PROMPT_CELLS
from tiny_models import tiny_decoder
from tiny_workflow import e2e_config, snakemake
from w2s import layout


@pytest.mark.e2e
def test_prompting_cells_run_as_cells_of_the_dag(tmp_path):
    config = e2e_config()
    config["seeds"] = [0]
    config["models"]["lm"] = {**config["models"]["minilm"], "path": str(tiny_decoder(tmp_path / "llama", "llama"))}
    del config["models"]["lm"]["offline_package"]
    config["strong_models"] = ["lm"]
    # The tiny random weak model may label every strong_train example alike: its demonstrations are then
    # all of one label, and the cell still runs.
    cells = {name: PROMPT_CELLS[name] for name in ("zeroshot", "fewshot_weak", "fewshot_gt")}
    config["interventions"] = {**cells, "debate": {"debate": {"max_new_tokens": 6, "replicas": 2}}}
    results = tmp_path / "results"
    snakemake(tmp_path, config, "--cores", "2", layout.summary_path(), layout.aggregate_path())

    summary = pd.read_csv(results / "summary.csv").set_index("intervention")
    assert sorted(summary.index) == sorted(config["interventions"])
    assert summary["reference"].to_dict() == {
        "debate": False,
        "fewshot_gt": True,
        "fewshot_weak": False,
        "zeroshot": False,
    }
    assert summary["student_acc"].between(0, 1).all() and summary["student_auroc"].between(0, 1).all()
    run = results / "sms_spam" / "seed0"
    test_ids = pd.read_parquet(run / "splits" / "test.parquet")["id"].tolist()
    strong_train = set(pd.read_parquet(run / "splits" / "strong_train.parquet")["id"])
    for name, cell in cells.items():
        folder = run / "student" / "tiny" / "lm" / name
        preds = pd.read_parquet(folder / "test.parquet")
        assert preds["id"].tolist() == test_ids
        assert all(len(ids) == cell["prompt"]["shots"] and set(ids) <= strong_train for ids in preds["demo_ids"])
        assert json.loads((folder / "info.json").read_text())["role"] == "prompt"
    assert not (run / "ceiling" / "lm" / "checkpoint").exists()
    assert [p.name for p in (run / "labels" / "tiny" / "lm").iterdir()] == ["debate"]

    # Debate: the strong decoder's transcripts of every split, keyed by id, read by two weak replicas whose
    # mean on strong_train is the student's label on the plain text.
    splits = {s: pd.read_parquet(run / "splits" / f"{s}.parquet") for s in layout.SPLITS}
    for name, split in splits.items():
        transcripts = pd.read_parquet(run / "debate" / "lm" / f"{name}.parquet")
        assert transcripts["id"].tolist() == split["id"].tolist()
        assert all(t.startswith("Debater for No: ") for t in transcripts["transcript"])
    replicas = [run / "debate_weak" / "tiny" / "lm" / f"replica{r}" for r in range(2)]
    member_preds = [preds_of(r / "strong_train.parquet") for r in replicas]
    assert not member_preds[0].equals(member_preds[1])
    labels = pd.read_parquet(run / "labels" / "tiny" / "lm" / "debate" / "train.parquet").set_index("id")
    assert labels["text"].equals(splits["strong_train"].set_index("id")["text"])
    pd.testing.assert_series_equal(
        labels["soft_label"].sort_index(), (member_preds[0] + member_preds[1]) / 2, check_names=False
    )
    infos = [json.loads((r / "info.json").read_text()) for r in replicas]
    assert [i["role"] for i in infos] == ["debate_weak"] * 2 and [i["seed"] for i in infos] == [0, 1000]
    report = json.loads((run / "labels" / "tiny" / "lm" / "debate" / "debate.json").read_text())
    assert [m["acc"] for m in report["members"]] == [i["test_acc"] for i in infos]
    assert json.loads((run / "student" / "tiny" / "lm" / "debate" / "info.json").read_text())["role"] == "student"


def preds_of(path) -> pd.Series:
    return pd.read_parquet(path).set_index("id")["soft_pred"].sort_index()
