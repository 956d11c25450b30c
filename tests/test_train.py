import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from tiny_models import tiny_bert, train_config
from w2s.engine.batching import collate, tokenize
from w2s.engine.finetune import LabelTableError, check_label_table, train_and_predict
from w2s.engine.losses import build_loss
from w2s.engine.modeling import ModelSpec, load_classifier, load_tokenizer
from w2s.engine.train import (
    BatchStream,
    TrainConfig,
    accumulate_gradients,
    build_optimizer,
    make_accelerator,
    train_classifier,
)

POS = ["good movie", "great film", "a great movie", "the film is good", "good good film", "great"]
NEG = ["bad movie", "awful film", "a bad movie", "the film is awful", "bad bad film", "awful"]


def table(texts, labels, prefix):
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(len(texts))], "text": texts, "soft_label": labels})


def toy(n_rep=8):
    texts = (POS + NEG) * n_rep
    labels = [1.0] * len(POS) + [0.0] * len(NEG)
    return table(texts, labels * n_rep, "t")


CFG = train_config(lr=3e-3, batch_size=8, micro_batch_size=4, eval_batch_size=16, epochs=4, max_length=16)


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
    cfg = train_config(lr=1e-3, batch_size=4, micro_batch_size=2, epochs=1, max_length=16)
    runs = [
        train_and_predict(ModelSpec("tiny", bert_path), cfg, train, None, {"t": train}, seed=s)[0]["t"]
        for s in (3, 3, 4)
    ]
    assert np.array_equal(runs[0]["soft_pred"], runs[1]["soft_pred"])
    assert not np.allclose(runs[0]["soft_pred"], runs[2]["soft_pred"])


def test_label_tables_keep_only_id_text_soft_label():
    df = table(["a", "b"], [0.2, 0.9], "x").assign(label=[0, 1])
    assert list(check_label_table(df, "train").columns) == ["id", "text", "soft_label"]
    with pytest.raises(LabelTableError, match="missing columns"):
        check_label_table(df.drop(columns="soft_label"), "train")
    with pytest.raises(LabelTableError, match=r"\[0, 1\]"):
        check_label_table(df.assign(soft_label=[0.2, 1.5]), "train")


def test_max_steps_overrides_epochs(bert_path):
    train = toy(2)
    cfg = train_config(lr=1e-3, batch_size=4, micro_batch_size=2, epochs=5, max_steps=3, max_length=16)
    _, info = train_and_predict(ModelSpec("tiny", bert_path), cfg, train, train.iloc[:4], {}, seed=0)
    assert info["total_steps"] == 3 and info["history"][-1]["step"] == 3


@pytest.mark.parametrize(
    "batch, micro, attempt, expected",
    [
        (32, 16, 1, 16),
        (32, 16, 2, 8),
        (32, 16, 3, 4),
        (32, 16, 6, 1),
        (32, 16, 50, 1),
        (24, 12, 2, 6),
        (24, 12, 3, 3),
        (24, 12, 4, 1),  # 12 >> 3 = 1
        (24, 24, 2, 12),
        (10, 10, 2, 5),
        (10, 10, 3, 2),
        (12, 12, 4, 1),
        (7, 7, 2, 1),
    ],
)
def test_each_retry_halves_the_micro_batch_to_a_divisor_of_the_effective_batch(batch, micro, attempt, expected):
    cfg = train_config(batch_size=batch, micro_batch_size=micro).for_attempt(attempt)
    assert cfg.micro_batch_size == expected and cfg.batch_size == batch
    assert cfg.eval_batch_size == max(1, 64 >> (attempt - 1))


def test_retries_never_grow_the_micro_batch_nor_leave_the_divisors():
    for batch in range(1, 49):
        for micro in (d for d in range(1, batch + 1) if batch % d == 0):
            cfg = train_config(batch_size=batch, micro_batch_size=micro)
            sizes = [cfg.for_attempt(a).micro_batch_size for a in range(1, 10)]
            assert sizes[0] == micro and sizes[-1] == 1 and sizes == sorted(sizes, reverse=True)
            assert all(batch % m == 0 and m <= max(1, micro >> a) for a, m in enumerate(sizes))
    with pytest.raises(ValueError):
        CFG.for_attempt(0)


def recorded_gradients(monkeypatch) -> list[list[torch.Tensor]]:
    """Every optimizer step's gradients, in the optimizer's parameter order, as training runs."""
    steps = []
    adamw_step = torch.optim.AdamW.step

    def recording(self, *args, **kwargs):
        steps.append([p.grad.clone() for group in self.param_groups for p in group["params"] if p.grad is not None])
        return adamw_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording)
    return steps


def train_tiny(path: str, cfg: TrainConfig, train: pd.DataFrame, val=None, loss_fn=None, seed=0, **kwargs):
    spec = ModelSpec("tiny", path)
    model, tokenizer, accelerator = load_classifier(spec), load_tokenizer(spec), make_accelerator()
    loss_fn = loss_fn or build_loss("xent")
    info = train_classifier(model, tokenizer, train, val, loss_fn, cfg, seed, accelerator, **kwargs)
    return model, info


def test_accumulated_gradient_is_the_mean_gradient_of_the_effective_batch(tmp_path, monkeypatch):
    """AdamW hardly sees a constant factor on the gradient, so results alone would not catch a missing
    division by the micro-batch count: gradients are compared, and against a hand-computed full batch."""
    path = str(tiny_bert(tmp_path / "bert", dropout=0.0))
    train = toy(1)  # 12 examples, batches of 8 then 4: micro-batches of 3 split them 3+3+2 and 3+1
    cfg = train_config(lr=1e-3, batch_size=8, micro_batch_size=3, epochs=1, warmup_frac=0.0, max_length=16)
    grads = recorded_gradients(monkeypatch)
    train_tiny(path, cfg, train)
    accumulated = list(grads)
    grads.clear()
    train_tiny(path, dataclasses.replace(cfg, micro_batch_size=8), train)
    assert len(accumulated) == len(grads) == 2
    for a, b in zip(accumulated, grads):
        assert len(a) == len(b) and all(torch.allclose(x, y, rtol=1e-4, atol=1e-7) for x, y in zip(a, b))

    spec = ModelSpec("tiny", path)
    model, tokenizer = load_classifier(spec), load_tokenizer(spec)
    ids = tokenize(tokenizer, train["text"].tolist(), 16)
    first = next(BatchStream([len(t) for t in ids], 8, seed=0))
    logits = model(**collate([ids[i] for i in first], tokenizer.pad_token_id))
    build_loss("xent")(logits, torch.tensor(train["soft_label"].to_numpy()[first]), 0.0).backward()
    groups = build_optimizer(model, cfg, False).param_groups
    by_hand = [p.grad for group in groups for p in group["params"] if p.grad is not None]
    assert len(by_hand) == len(accumulated[0])
    assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-7) for x, y in zip(accumulated[0], by_hand))


class AsProcess:
    """An accelerator that says it is process `rank` of `world`, to run one process's share in place."""

    def __init__(self, accelerator, rank: int, world: int):
        self.accelerator, self.process_index, self.num_processes = accelerator, rank, world

    def __getattr__(self, name):
        return getattr(self.accelerator, name)


def test_shares_of_processes_average_to_the_full_gradient_even_when_unequal_or_empty(tmp_path):
    """DDP averages the processes' gradients: that average must be the effective batch's mean gradient, also
    when micro-batches do not split evenly and some process gets no example of a micro-batch."""
    path = str(tiny_bert(tmp_path / "bert", dropout=0.0))
    spec = ModelSpec("tiny", path)
    model, tokenizer, accelerator = load_classifier(spec), load_tokenizer(spec), make_accelerator()
    train = toy(1)
    ids = tokenize(tokenizer, train["text"].tolist(), 16)
    labels = torch.tensor(train["soft_label"].to_numpy(dtype=np.float32))
    # Micro-batches of 3, 3 and 1: shares of 2+1, 2+1, 1+0 examples over 2 processes, 1+1+1 and 1+0+0 over 3.
    batch = np.array([0, 7, 3, 8, 5, 11, 1])
    loss_fn = build_loss("xent")

    def gradient(rank, world):
        model.zero_grad()
        part = accumulate_gradients(
            model,
            model,
            loss_fn,
            ids,
            labels,
            batch,
            tokenizer.pad_token_id,
            3,
            0.0,
            AsProcess(accelerator, rank, world),
        )
        return part, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    loss, full = gradient(0, 1)
    for world in (2, 3):
        parts = [gradient(rank, world) for rank in range(world)]
        assert torch.isclose(sum(part for part, _ in parts), loss, rtol=1e-5)
        averaged = [sum(g) / world for g in zip(*(grads for _, grads in parts))]
        assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-7) for x, y in zip(averaged, full))


def test_training_with_a_retry_micro_batch_gives_the_same_model(tmp_path):
    """An out-of-memory retry halves the micro-batch: the same effective batches, so the same predictions."""
    path = str(tiny_bert(tmp_path / "bert", dropout=0.0))
    train = toy(2)
    cfg = train_config(lr=1e-3, batch_size=8, micro_batch_size=8, eval_batch_size=16, max_length=16)
    runs = [
        train_and_predict(ModelSpec("tiny", path), cfg.for_attempt(a), train, train.iloc[:12], {"t": train}, seed=0)[0][
            "t"
        ]["soft_pred"]
        for a in (1, 3)
    ]
    assert np.allclose(runs[0], runs[1], atol=1e-5)


def test_progress_bars_show_on_the_main_process_only():
    from types import SimpleNamespace

    from w2s.engine.train import progress

    assert progress(SimpleNamespace(is_main_process=False), range(3)).disable


@pytest.mark.parametrize("env, disabled", [(None, False), ("1", True)])
def test_tqdm_disable_turns_the_main_process_bars_off(env, disabled):
    """tqdm reads TQDM_DISABLE when it is imported, for the arguments a bar is not given."""
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"} | (
        {} if env is None else {"TQDM_DISABLE": env}
    )
    code = (
        "from types import SimpleNamespace; from w2s.engine.train import progress; "
        "print(progress(SimpleNamespace(is_main_process=True), range(3)).disable)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(disabled)
