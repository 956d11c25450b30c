import numpy as np
import pandas as pd
import pytest

from tiny_models import tiny_bert
from w2s.jobs import LabelTableError, check_label_table, train_and_predict
from w2s.modeling import ModelSpec
from w2s.train import TrainConfig

POS = ["good movie", "great film", "a great movie", "the film is good", "good good film", "great"]
NEG = ["bad movie", "awful film", "a bad movie", "the film is awful", "bad bad film", "awful"]


def table(texts, labels, prefix):
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(len(texts))], "text": texts, "soft_label": labels})


def toy(n_rep=8):
    texts = (POS + NEG) * n_rep
    labels = [1.0] * len(POS) + [0.0] * len(NEG)
    return table(texts, labels * n_rep, "t")


CFG = TrainConfig(lr=3e-3, batch_size=8, micro_batch_size=4, eval_batch_size=16, epochs=4, max_length=16)


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory):
    return str(tiny_bert(tmp_path_factory.mktemp("bert")))


def test_training_learns_a_separable_task(bert_path):
    train = toy()
    test = table(POS + NEG, [1.0] * 6 + [0.0] * 6, "x")
    preds, info = train_and_predict(ModelSpec("tiny", bert_path), CFG, train, train.iloc[:12], {"test": test}, seed=0)
    p = preds["test"].set_index("id").loc[test["id"], "soft_pred"].to_numpy()
    assert ((p > 0.5) == (test["soft_label"].to_numpy() > 0.5)).mean() == 1.0
    assert info["total_steps"] == 4 * len(train) // 8
    assert info["history"] and info["tokens_per_second"] > 0


def test_training_is_deterministic_given_a_seed(bert_path):
    train = toy(2)
    cfg = TrainConfig(lr=1e-3, batch_size=4, micro_batch_size=2, epochs=1, max_length=16)
    runs = [train_and_predict(ModelSpec("tiny", bert_path), cfg, train, None, {"t": train}, seed=s)[0]["t"]
            for s in (3, 3, 4)]
    assert np.array_equal(runs[0]["soft_pred"], runs[1]["soft_pred"])
    assert not np.allclose(runs[0]["soft_pred"], runs[2]["soft_pred"])


def test_gradient_accumulation_matches_a_full_batch(tmp_path):
    """Same effective batch, different micro-batch: same trained model (up to float error)."""
    bert_path = str(tiny_bert(tmp_path / "bert", dropout=0.0))
    train = toy(1)
    kw = dict(lr=1e-3, batch_size=12, eval_batch_size=16, epochs=2, max_length=16, warmup_frac=0.0)
    full = train_and_predict(ModelSpec("tiny", bert_path), TrainConfig(micro_batch_size=12, **kw), train, None,
                             {"t": train}, seed=0)[0]["t"]["soft_pred"]
    accum = train_and_predict(ModelSpec("tiny", bert_path), TrainConfig(micro_batch_size=4, **kw), train, None,
                              {"t": train}, seed=0)[0]["t"]["soft_pred"]
    assert np.allclose(full, accum, atol=1e-4)


def test_label_tables_keep_only_id_text_soft_label():
    df = table(["a", "b"], [0.2, 0.9], "x").assign(label=[0, 1])
    assert list(check_label_table(df, "train").columns) == ["id", "text", "soft_label"]
    with pytest.raises(LabelTableError, match="missing columns"):
        check_label_table(df.drop(columns="soft_label"), "train")
    with pytest.raises(LabelTableError, match=r"\[0, 1\]"):
        check_label_table(df.assign(soft_label=[0.2, 1.5]), "train")


def test_max_steps_overrides_epochs(bert_path):
    train = toy(2)
    cfg = TrainConfig(lr=1e-3, batch_size=4, micro_batch_size=2, epochs=5, max_steps=3, max_length=16)
    _, info = train_and_predict(ModelSpec("tiny", bert_path), cfg, train, train.iloc[:4], {}, seed=0)
    assert info["total_steps"] == 3 and info["history"][-1]["step"] == 3
