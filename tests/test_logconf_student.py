"""A logconf student trained for real on an easy task with noisy weak labels: it must learn the task at least as
well as its xent twin. A hardening threshold taken from a buffer of stale predictions sent such students to
chance (every prediction of one class) in the default run; this catches that end to end, on a tiny model."""

import numpy as np
import pandas as pd
import pytest

from tiny_models import tiny_bert, train_config
from w2s.engine.finetune import train_and_predict
from w2s.engine.modeling import ModelSpec

POSITIVE, NEGATIVE = ["good", "great"], ["bad", "awful"]
FILLERS = ["the movie", "a film", "the film is", "movie was", "a movie"]
# 6 epochs of 12 steps, each step two micro-batches of 4: logconf's window spans micro-batches and steps.
CFG = train_config(lr=3e-3, batch_size=8, micro_batch_size=4, eval_batch_size=64, epochs=6, max_length=16)


def sentiment_table(n: int, rng: np.random.Generator, weak_accuracy: float, confidence: float):
    """n texts of a filler and three sentiment words of one class; soft_label is a weak label on the right
    side of 1/2 with probability `weak_accuracy`, at distance `confidence` from 1/2. Returns (table, truth)."""
    truth = rng.integers(0, 2, n)
    texts = [
        f"{FILLERS[rng.integers(len(FILLERS))]} "
        + " ".join((POSITIVE if y else NEGATIVE)[rng.integers(2)] for _ in "abc")
        for y in truth
    ]
    right = rng.random(n) < weak_accuracy
    labels = np.where(right == (truth == 1), 0.5 + confidence, 0.5 - confidence)
    return pd.DataFrame({"id": [str(i) for i in range(n)], "text": texts, "soft_label": labels}), truth


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory):
    return str(tiny_bert(tmp_path_factory.mktemp("bert"), dropout=0.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logconf_student_learns_an_easy_task_at_least_as_well_as_xent(bert_path, seed):
    # A supervisor right on 70% of the training examples, with labels of 0.7 / 0.3.
    train, _ = sentiment_table(96, np.random.default_rng(seed), weak_accuracy=0.7, confidence=0.2)
    test, truth = sentiment_table(200, np.random.default_rng(1000 + seed), weak_accuracy=1.0, confidence=0.5)
    accuracy = {}
    for loss, params in (("xent", {}), ("logconf", {"alpha_max": 0.5, "warmup_frac": 0.2})):
        preds, _ = train_and_predict(ModelSpec("tiny", bert_path), CFG, train, None, {"test": test}, seed, loss, params)
        accuracy[loss] = float(((preds["test"]["soft_pred"].to_numpy() > 0.5) == (truth == 1)).mean())
    assert accuracy["logconf"] >= accuracy["xent"], accuracy
    assert accuracy["logconf"] > 0.9, accuracy
