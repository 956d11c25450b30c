"""Label sources (strong-to-strong, bootstrap, ensemble) and saliency analyses: the config entries, their
unrolling into cells, and the stages that make their labels and predictions."""

import json

import numpy as np
import pandas as pd
import pytest

from tiny_models import tiny_bert
from w2s.config import ConfigError, validate_config
from w2s.data.activations import save_activations
from w2s.execution.job import TrainingJob
from w2s.labels.interventions import ensemble_members, intervention_cells, kind_of, problems, relabellers, replica_seed
from w2s.labels.tables import mean_predictions
from w2s.scoring import accuracy
from w2s.stages.labels import ensemble_labels_stage, linear_probe_stage
from w2s.stages.training import bootstrap_step_stage, finetune_probe_stage, student_stage

MODELS = {"small": {}, "mid": {}, "big": {}}


def test_s2s_unrolls_into_one_cell_per_iteration_each_learning_from_the_previous():
    cells = intervention_cells({"xent": {"loss": "xent"}, "s2s": {"s2s": {"from": "xent", "iterations": 3}}})
    assert list(cells) == ["xent", "s2s_it1", "s2s_it2", "s2s_it3"]
    assert [cells[f"s2s_it{k}"].previous for k in (1, 2, 3)] == ["xent", "s2s_it1", "s2s_it2"]
    assert cells["xent"].previous is None
    # The last iteration relabels nothing, so its student need not predict strong_train.
    assert relabellers(cells) == {"xent", "s2s_it1", "s2s_it2"}


def test_kinds_and_loss_parameters_leave_the_label_source_out():
    cells = intervention_cells(
        {
            "lc": {"loss": "logconf", "alpha_max": 0.75, "ensemble": {"replicas": 2}},
            "lp": {"saliency": {"finetune": False, "probe_labels": "weak"}},
            "ft": {"saliency": {"finetune": True, "probe_labels": "ground_truth"}},
        }
    )
    assert [c.kind for c in cells.values()] == ["ensemble", "linear_probe", "finetune_probe"]
    assert cells["lc"].loss == "logconf" and cells["lc"].loss_params == {"alpha_max": 0.75}
    assert cells["lp"].loss == "xent" and not cells["lp"].trains_student
    with pytest.raises(ValueError, match="at most one label source"):
        kind_of({"probe": {}, "s2s": {}})


def test_ensemble_members_start_with_the_shared_weak_model_and_replicas_get_distinct_seeds():
    assert ensemble_members({"ensemble": {"replicas": 3}}, "small") == [("small", 0), ("small", 1), ("small", 2)]
    assert ensemble_members({"ensemble": {"weak_models": ["small", "mid"], "replicas": 1}}, "small") == [
        ("small", 0),
        ("mid", 0),
    ]
    assert replica_seed(4, 0) == 4
    assert len({replica_seed(s, r) for s in range(3) for r in range(3)}) == 9


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"s2s": {"s2s": {"from": "nope"}}}, "s2s.from': 'nope' is not an intervention"),
        (
            {"lp": {"saliency": {"finetune": False, "probe_labels": "weak"}}, "s2s": {"s2s": {"from": "lp"}}},
            "no finetuned student to relabel",
        ),
        ({"a": {"s2s": {"from": "b"}}, "b": {"s2s": {"from": "x"}}}, "a.s2s.from': 'b' has no finetuned student"),
        ({"x": {}, "s2s": {"s2s": {"from": "x", "iterations": 2}}, "s2s_it2": {}}, "also intervention names"),
        ({"b": {"bootstrap": {"via": ["mid", "huge"]}}}, "bootstrap.via[1]': model alias 'huge'"),
        ({"e": {"ensemble": {"replicas": 1}}}, "one supervisor is not an ensemble"),
        ({"e": {"ensemble": {"weak_models": ["ghost"], "replicas": 2}}}, "weak_models[0]': model alias 'ghost'"),
        ({"lp": {"loss": "entropy", "saliency": {"finetune": False, "probe_labels": "weak"}}}, "trains no student"),
        ({"two": {"probe": {"name": "knn", "use": "filter"}, "ensemble": {"replicas": 2}}}, "at most one label source"),
    ],
)
def test_cross_reference_problems_name_the_key(entries, message):
    found = problems(entries, MODELS)
    assert any(message in p for p in found), found


def test_schema_fills_label_source_defaults_and_rejects_unknown_keys():
    base = {
        "tasks": ["sms_spam"],
        "seeds": [0],
        "weak_models": ["w"],
        "strong_models": ["s"],
        "models": {"w": {"path": "org/w"}, "s": {"path": "org/s"}},
    }
    config = validate_config(
        {
            **base,
            "interventions": {
                "xent": {},
                "s2s": {"s2s": {"from": "xent"}},
                "ens": {"ensemble": {"replicas": 2}},
                "lp": {"saliency": {"finetune": False, "probe_labels": "ground_truth"}},
            },
        }
    )
    assert config["interventions"]["xent"]["loss"] == "xent"
    assert config["interventions"]["s2s"]["s2s"]["iterations"] == 1
    assert config["interventions"]["lp"]["saliency"]["C"] == [0.01, 0.1, 1.0, 10.0]
    with pytest.raises(ConfigError, match=r"interventions.s2s.s2s.*steps"):
        validate_config({**base, "interventions": {"x": {}, "s2s": {"s2s": {"from": "x", "steps": 2}}}})
    with pytest.raises(ConfigError, match="probe_labels"):
        validate_config({**base, "interventions": {"lp": {"saliency": {"finetune": False, "probe_labels": "gold"}}}})


def test_mean_predictions_averages_by_id_and_refuses_mismatched_members():
    a = pd.DataFrame({"id": ["x", "y", "z"], "soft_pred": [0.2, 0.9, 0.5]})
    b = pd.DataFrame({"id": ["z", "x", "y"], "soft_pred": [0.1, 0.4, 0.7]})
    mean = mean_predictions([a, b]).set_index("id")["soft_pred"]
    assert mean.to_dict() == pytest.approx({"x": 0.3, "y": 0.8, "z": 0.3})
    with pytest.raises(ValueError, match="different examples"):
        mean_predictions([a, b.iloc[:2]])


def test_ensemble_labels_are_the_member_mean_without_ground_truth(tmp_path):
    split = pd.DataFrame({"id": ["a", "b"], "text": ["t1", "t2"], "label": [1, 0]})
    paths = {}
    for name in ("strong_train", "val"):
        paths[name] = tmp_path / f"{name}.parquet"
        split.to_parquet(paths[name])
    members = []
    for i, (pa, pb) in enumerate([(0.2, 0.6), (0.4, 1.0)]):
        member = {}
        for name in ("strong_train", "val"):
            member[name] = tmp_path / f"m{i}_{name}.parquet"
            pd.DataFrame({"id": ["b", "a"], "soft_pred": [pb, pa]}).to_parquet(member[name])
        members.append(member)
    out = {"train": tmp_path / "train.parquet", "val": tmp_path / "val.parquet"}
    ensemble_labels_stage(paths["strong_train"], paths["val"], members, out)
    for name in ("train", "val"):
        table = pd.read_parquet(out[name])
        assert list(table.columns) == ["id", "text", "soft_label"]
        assert table.set_index("id")["soft_label"].to_dict() == pytest.approx({"a": 0.3, "b": 0.8})


def _separable_splits(tmp_path, rng, dim=8):
    """Splits whose examples' activations carry the label in their first coordinate."""
    split_paths, ids, feats = {}, [], []
    for name, n in (("strong_train", 80), ("val", 40), ("test", 60)):
        labels = np.arange(n) % 2
        split_ids = [f"{name}-{i}" for i in range(n)]
        pd.DataFrame({"id": split_ids, "text": split_ids, "label": labels}).to_parquet(tmp_path / f"{name}.parquet")
        split_paths[name] = tmp_path / f"{name}.parquet"
        x = rng.normal(size=(n, dim)).astype(np.float32)
        x[:, 0] += 3 * (2 * labels - 1)
        ids += split_ids
        feats.append(x)
    save_activations({6: np.concatenate(feats)}, ids, tmp_path / "acts.safetensors")
    return split_paths


def _inverted_weak_preds(tmp_path, split_paths, prefix="weak"):
    """A weak supervisor that is always wrong, so probes fit on it must predict the opposite of the truth."""
    out = {}
    for name in ("strong_train", "val"):
        split = pd.read_parquet(split_paths[name])
        out[name] = tmp_path / f"{prefix}_{name}.parquet"
        pd.DataFrame({"id": split["id"], "soft_pred": np.where(split["label"] == 1, 0.1, 0.9)}).to_parquet(out[name])
    return out


@pytest.mark.parametrize("probe_labels, expected_acc", [("ground_truth", 1.0), ("weak", 0.0)])
def test_linear_probe_on_frozen_features_learns_the_labels_it_is_given(tmp_path, probe_labels, expected_acc):
    split_paths = _separable_splits(tmp_path, np.random.default_rng(0))
    weak = _inverted_weak_preds(tmp_path, split_paths)
    cell = intervention_cells(
        {"lp": {"saliency": {"finetune": False, "probe_labels": probe_labels, "C": [0.01, 1.0]}}}
    )["lp"]
    out = {"test": tmp_path / "pred.parquet", "info": tmp_path / "info.json"}
    linear_probe_stage(split_paths, tmp_path / "acts.safetensors", weak, cell.record(), out)
    test = pd.read_parquet(split_paths["test"])
    pred = pd.read_parquet(out["test"]).set_index("id").loc[test["id"], "soft_pred"].to_numpy()
    assert accuracy(test["label"].to_numpy(), pred) == pytest.approx(expected_acc, abs=0.05)
    info = json.loads(out["info"].read_text())
    assert info["C"] in (0.01, 1.0) and set(info["val_cross_entropy"]) == {"0.01", "1.0"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A tiny BERT and word-separable splits (train 48, val 24, test 32)."""
    root = tmp_path_factory.mktemp("toy")
    words = {1: ["good", "great"], 0: ["bad", "awful"]}
    split_paths = {}
    for name, n in (("strong_train", 48), ("val", 24), ("test", 32)):
        labels = np.arange(n) % 2
        texts = [f"{words[y][i % 2]} film {i}" for i, y in enumerate(labels)]
        split_paths[name] = root / f"{name}.parquet"
        pd.DataFrame({"id": [f"{name}-{i}" for i in range(n)], "text": texts, "label": labels}).to_parquet(
            split_paths[name]
        )
    entry = {
        "lr": 3e-3,
        "head_lr": None,
        "batch_size": 8,
        "micro_batch_size": 8,
        "eval_batch_size": 32,
        "epochs": 6,
        "max_steps": None,
        "max_length": 16,
        "compile": False,
    }
    train_section = {"warmup_frac": 0.1, "weight_decay": 0.0, "evals_per_epoch": 1, "select_best_on_val": True}
    return root, str(tiny_bert(root / "bert")), entry, train_section, split_paths


def _test_accuracy(split_paths, pred_path):
    test = pd.read_parquet(split_paths["test"])
    pred = pd.read_parquet(pred_path).set_index("id").loc[test["id"], "soft_pred"].to_numpy()
    return accuracy(test["label"].to_numpy(), pred)


def test_bootstrap_step_learns_the_previous_steps_labels_and_relabels_every_split(toy, tmp_path):
    root, model, entry, train_section, split_paths = toy
    wrong = _inverted_weak_preds(tmp_path, split_paths)
    cell = intervention_cells({"b": {"bootstrap": {"via": ["tiny"]}}})["b"]
    out = {n: tmp_path / f"step_{n}.parquet" for n in ("strong_train", "val", "test")} | {"info": tmp_path / "i.json"}
    bootstrap_step_stage(TrainingJob("tiny", entry, model, train_section, 0, out), split_paths, wrong, cell.record(), 1)
    for name in ("strong_train", "val", "test"):
        assert set(pd.read_parquet(out[name])["id"]) == set(pd.read_parquet(split_paths[name])["id"])
    # Trained on always-wrong labels, the intermediate model is wrong on test too: it learnt its input labels.
    assert _test_accuracy(split_paths, out["test"]) < 0.25
    assert json.loads(out["info"].read_text())["step"] == 1


def test_relabelling_student_predicts_strong_train_and_val_too(toy, tmp_path):
    root, model, entry, train_section, split_paths = toy
    labels = {}
    for name, split in (("train", "strong_train"), ("val", "val")):
        table = pd.read_parquet(split_paths[split])
        labels[name] = tmp_path / f"labels_{name}.parquet"
        table.assign(soft_label=table["label"].astype(float))[["id", "text", "soft_label"]].to_parquet(labels[name])
    cell = intervention_cells({"xent": {"loss": "xent"}})["xent"]
    out = {n: tmp_path / f"s_{n}.parquet" for n in ("test", "strong_train", "val")} | {"info": tmp_path / "i.json"}
    student_stage(TrainingJob("tiny", entry, model, train_section, 0, out), labels, split_paths, cell.record())
    for name in ("test", "strong_train", "val"):
        assert set(pd.read_parquet(out[name])["id"]) == set(pd.read_parquet(split_paths[name])["id"])
    assert json.loads(out["info"].read_text())["intervention"]["name"] == "xent"


def test_finetune_then_probe_reads_ground_truth_from_the_finetuned_features(toy, tmp_path):
    """Finetuned on always-wrong weak labels, the student's own head is wrong on test; a linear probe on its
    features fit on ground truth still recovers the task: the features kept what the labels got wrong."""
    root, model, entry, train_section, split_paths = toy
    wrong = _inverted_weak_preds(tmp_path, split_paths)
    labels = {}
    for name, split in (("train", "strong_train"), ("val", "val")):
        table = pd.read_parquet(split_paths[split])[["id", "text"]]
        preds = pd.read_parquet(wrong[split])
        labels[name] = tmp_path / f"labels_{name}.parquet"
        table.merge(preds, on="id").rename(columns={"soft_pred": "soft_label"}).to_parquet(labels[name])
    cell = intervention_cells(
        {"ft": {"saliency": {"finetune": True, "probe_labels": "ground_truth", "C": [0.1, 1.0]}}}
    )["ft"]
    out = {"test": tmp_path / "ft_test.parquet", "info": tmp_path / "ft.json"}
    finetune_probe_stage(
        TrainingJob("tiny", entry, model, train_section, 0, out), labels, split_paths, wrong, cell.record()
    )
    assert _test_accuracy(split_paths, out["test"]) > 0.9
    info = json.loads(out["info"].read_text())
    assert info["features"] == "finetuned student" and info["probe_labels"] == "ground_truth"


def test_finetuned_features_batched_equal_one_at_a_time(toy):
    """The features a finetune-then-probe cell fits on: padded, length-sorted batches must give every text
    the features it has alone, in input order."""
    import torch

    from tiny_models import train_config
    from w2s.engine.finetune import TrainedModel
    from w2s.engine.modeling import ModelSpec, load_classifier, load_tokenizer
    from w2s.engine.train import make_accelerator

    root, model_path, entry, train_section, split_paths = toy
    spec = ModelSpec.from_config("tiny", entry, model_path)
    model, tokenizer = load_classifier(spec), load_tokenizer(spec)
    cfg = train_config(eval_batch_size=4, max_length=16)
    trained = TrainedModel(model, tokenizer, make_accelerator(), cfg)
    texts = ["good", "awful film 12 was not good at all", "great film", "bad", "the film is great 7"]
    batched = trained.features(texts)
    model.eval()
    with torch.no_grad():
        alone = [
            model.features(
                **{k: v for k, v in tokenizer(t, return_tensors="pt").items() if k in ("input_ids", "attention_mask")}
            )[0].numpy()
            for t in texts
        ]
    assert batched.shape == (5, 32)
    np.testing.assert_allclose(batched, np.stack(alone), atol=1e-5)
