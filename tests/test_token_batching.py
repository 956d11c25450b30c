"""Micro-batches cut by a token budget, and shapes bounded for compilation: the effective batch and its gradient
stay those of micro-batches cut by example count; a run checkpointed under the new batching resumes. Inference
cut by a token budget (padded, or packed) gives every example its own output, as count-cut batches do."""

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from test_checkpoint import Killed, kill_at_step, params
from test_train import AsProcess, toy, train_tiny
from tiny_models import tiny_bert, tiny_decoder, tiny_gpt2, train_config
from w2s.config import schema_defaults
from w2s.engine import train as train_module
from w2s.engine.batching import MicroBatching, collate, tokenize
from w2s.engine.finetune import TrainedModel, train_and_predict, train_config_from
from w2s.engine.losses import build_loss
from w2s.engine.modeling import Classifier, ModelSpec, load_classifier, load_tokenizer
from w2s.engine.packing import enable_packing
from w2s.engine.train import accumulate_gradients, make_accelerator

WORDS = ["good", "bad", "great", "awful", "movie", "film", "the", "a", "is", "not"]


def varied(n: int, seed: int = 0) -> pd.DataFrame:
    """Texts of 1 to 30 words, so that micro-batches cut by tokens differ from those cut by examples."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(1, 31))) for _ in range(n)]
    return pd.DataFrame({"id": [f"v{i}" for i in range(n)], "text": texts, "soft_label": rng.random(n)})


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("world", [1, 3])
def test_micro_batches_hold_every_example_once_within_the_budget(packed, world):
    rng = np.random.default_rng(world)
    lengths = rng.integers(1, 64, size=40)
    batch = rng.permutation(200)[:40]
    batching = MicroBatching(examples=8, batch_size=40, max_length=64, tokens=150, packed=packed)
    micros = batching.split(batch, lengths, world)
    assert sorted(np.concatenate(micros).tolist()) == sorted(batch.tolist())
    assert len(micros) > 1
    length_of = dict(zip(batch.tolist(), lengths.tolist()))
    for micro in micros:
        for share in (micro[r::world] for r in range(world)):
            sizes = [length_of[i] for i in share]
            laid_out = sum(sizes) if packed else len(sizes) * max(sizes, default=0)
            assert laid_out <= 150 or len(micro) == 1
        # Longest first, so that a padded share is no wider than it must be.
        assert [length_of[i] for i in micro] == sorted((length_of[i] for i in micro), reverse=True)


def test_a_token_budget_gives_the_loss_and_gradient_of_example_count_micro_batches(tmp_path):
    spec = ModelSpec("tiny", str(tiny_bert(tmp_path / "bert", dropout=0.0)))
    model, tokenizer, accelerator = load_classifier(spec), load_tokenizer(spec), make_accelerator()
    train = varied(12)
    ids = tokenize(tokenizer, train["text"].tolist(), 64)
    labels = torch.tensor(train["soft_label"].to_numpy(dtype=np.float32))
    batch = np.arange(12)
    loss_fn = build_loss("xent")

    def gradient(micro_batching, rank=0, world=1):
        model.zero_grad()
        process = AsProcess(accelerator, rank, world)
        loss = accumulate_gradients(
            model, model, loss_fn, ids, labels, batch, tokenizer.pad_token_id, micro_batching, 0.0, process
        )
        return loss, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    by_examples, want = gradient(4)
    budget = MicroBatching(examples=4, batch_size=12, max_length=64, tokens=120)
    assert [len(m) for m in budget.split(batch, np.array([len(t) for t in ids]), 1)] != [4, 4, 4]
    by_tokens, got = gradient(budget)
    assert torch.isclose(by_tokens, by_examples, rtol=1e-5)
    assert len(got) == len(want) and all(torch.allclose(x, y, rtol=1e-4, atol=1e-7) for x, y in zip(got, want))
    # Shared out over two processes, the shares still average to the effective batch's gradient.
    parts = [gradient(budget, rank, 2) for rank in range(2)]
    assert torch.isclose(sum(loss for loss, _ in parts), by_examples, rtol=1e-5)
    averaged = [sum(g) / 2 for g in zip(*(grads for _, grads in parts))]
    assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-7) for x, y in zip(averaged, want))


def test_training_with_a_token_budget_trains_the_same_model(tmp_path):
    path = str(tiny_bert(tmp_path / "bert", dropout=0.0))
    train = varied(24)
    cfg = train_config(lr=1e-3, batch_size=8, micro_batch_size=8, eval_batch_size=16, epochs=2, max_length=64)
    runs = [
        train_and_predict(ModelSpec("tiny", path), c, train, train.iloc[:8], {"t": train}, seed=0)
        for c in (cfg, dataclasses.replace(cfg, micro_batch_tokens=60), dataclasses.replace(cfg, eval_batch_tokens=60))
    ]
    for preds, info in runs[1:]:
        assert np.allclose(runs[0][0]["t"]["soft_pred"], preds["t"]["soft_pred"], atol=1e-5)
        # Validation under either budget sees the same model at every evaluation.
        for want, got in zip(runs[0][1]["history"], info["history"], strict=True):
            assert np.isclose(want["val_loss"], got["val_loss"], atol=1e-6) and want["val_acc"] == got["val_acc"]


def test_a_retry_halves_the_token_budgets():
    cfg = train_config(batch_size=32, micro_batch_size=16, micro_batch_tokens=4096, eval_batch_tokens=8192)
    assert [cfg.for_attempt(a).micro_batch_tokens for a in (1, 2, 3)] == [4096, 2048, 1024]
    assert [cfg.for_attempt(a).eval_batch_tokens for a in (1, 2, 3)] == [8192, 4096, 2048]
    assert cfg.for_attempt(20).micro_batch_tokens == 1 and cfg.for_attempt(20).eval_batch_tokens == 1
    unset = train_config(micro_batch_tokens=None, eval_batch_tokens=None).for_attempt(2)
    assert unset.micro_batch_tokens is None and unset.eval_batch_tokens is None


def test_a_model_entry_sets_the_inference_token_budget():
    entry, section = schema_defaults()
    assert train_config_from(entry, section).eval_batch_tokens is None
    assert train_config_from({**entry, "eval_batch_tokens": 512}, section).eval_batch_tokens == 512


def alone(model: Classifier, ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and p(class 1) of each example in a forward of its own (no padding, no batch mates)."""
    with torch.no_grad():
        feats = torch.cat([model.features(**collate([t], pad_id)) for t in ids])
        return feats.numpy(), torch.softmax(model.head(feats), dim=-1)[:, 1].double().numpy()


TINY = {
    "bert": lambda d: tiny_bert(d, dropout=0.0),
    "llama": lambda d: tiny_decoder(d, "llama"),
    "gpt2": tiny_gpt2,
}


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("model_kind, packed", [("bert", False), ("llama", False), ("llama", True), ("gpt2", True)])
def test_inference_cut_by_tokens_gives_every_example_its_own_output_in_input_order(
    tmp_path, monkeypatch, model_kind, packed, world
):
    spec = ModelSpec("tiny", str(TINY[model_kind](tmp_path / "m")))
    model, tokenizer = load_classifier(spec), load_tokenizer(spec)
    torch.manual_seed(1)
    # A random head, so that predictions (not only features) tell the examples apart.
    torch.nn.init.normal_(model.head.weight)
    if packed:
        enable_packing(model)
    table = varied(40, seed=3).drop_duplicates("text").reset_index(drop=True)
    texts = table["text"].tolist()
    ids = tokenize(tokenizer, texts, 64)
    want_features, want_p = alone(model, ids, tokenizer.pad_token_id)
    # Every process's share (dealt out in turn) comes back through gather_object: collect them all.
    pieces = []
    monkeypatch.setattr(train_module, "gather_object", lambda local: pieces.extend(local) or local)
    cfg = train_config(eval_batch_size=4, max_length=64, packing=packed)
    # Under compile, the forwards are laid out in compile buckets (pad tails, empty segments, throwaway rows).
    for budget, compiled in ((None, False), (90, False), (None, True), (90, True)):
        budgeted = dataclasses.replace(cfg, eval_batch_tokens=budget, compile=compiled, compile_buckets=3)
        batching = budgeted.inference_batching()
        assert batching.packed == (packed and budget is not None)
        sizes = [len(b) for b in batching.split(np.arange(len(ids)), np.sort([len(t) for t in ids])[::-1], 1)]
        # A budget changes the forwards, some of which hold several examples that could get mixed up.
        assert all(n == 4 for n in sizes[:-1]) == (budget is None) and max(sizes) > 1
        assert max(sizes) <= 4 or not compiled
        for kind, want in (("features", want_features), ("predict", want_p)):
            got = np.full_like(want, np.nan)
            covered = np.zeros(len(ids), dtype=int)
            for rank in range(world):
                pieces.clear()
                trained = TrainedModel(model, tokenizer, AsProcess(make_accelerator(), rank, world), budgeted)
                if kind == "features":
                    trained.features(texts)
                else:
                    trained.predict(table, "t")
                ((idx, rows),) = pieces
                got[idx], covered[idx] = rows, covered[idx] + 1
            assert (covered == 1).all()
            np.testing.assert_allclose(got, want, atol=1e-5)


def recorded_shapes(monkeypatch) -> dict[bool, list[tuple]]:
    """The shapes of every forward's tensors, by whether the model trains (True) or infers (False): what
    compilation would compile once per shape, which is why it is skipped here."""
    shapes = {True: [], False: []}
    monkeypatch.setattr(train_module, "compile_blocks", lambda model, buckets: None)
    forward = Classifier.forward

    def recording(self, input_ids, attention_mask=None, **packed):
        tensors = (tuple(v.shape) for v in packed.values() if torch.is_tensor(v))
        shapes[self.training].append((tuple(input_ids.shape), *tensors))
        return forward(self, input_ids, attention_mask, **packed)

    monkeypatch.setattr(Classifier, "forward", recording)
    return shapes


PACKED_BUDGETS = {"packing": True, "micro_batch_tokens": 100, "eval_batch_tokens": 100}


def bucketed_run(**options):
    """Config, training and validation tables of a small run whose micro-batches and validation forwards come
    in more shapes than 3 compile buckets allow."""
    cfg = train_config(lr=1e-3, batch_size=8, micro_batch_size=4, eval_batch_size=6, epochs=2, max_length=32, **options)
    return cfg, varied(48), varied(30, seed=1)


@pytest.mark.parametrize(
    "model, options",
    [
        ("bert", {}),
        ("bert", {"micro_batch_tokens": 100, "eval_batch_tokens": 100}),
        ("llama", {"packing": True}),
        ("llama", PACKED_BUDGETS),
    ],
)
def test_compile_buckets_bound_the_shapes_fed_to_the_model(tmp_path, monkeypatch, model, options):
    """In training and, apart, in validation's inference forwards."""
    path = tiny_bert(tmp_path / "m", dropout=0.0) if model == "bert" else tiny_decoder(tmp_path / "m", "llama")
    cfg, train, val = bucketed_run(**options)
    shapes = recorded_shapes(monkeypatch)
    loose, loose_info = train_tiny(str(path), cfg, train, val)
    uncompiled = {mode: set(seen) for mode, seen in shapes.items()}
    shapes[True].clear(), shapes[False].clear()
    bucketed, info = train_tiny(str(path), dataclasses.replace(cfg, compile=True, compile_buckets=3), train, val)
    for training in (True, False):
        assert len(set(shapes[training])) <= 3 < len(uncompiled[training])
    # Padding to a bucket, throwaway rows and empty segments change nothing but float error.
    want = params(loose)
    assert all(torch.allclose(p, want[n], atol=1e-5) for n, p in params(bucketed).items())
    for a, b in zip(loose_info["history"], info["history"], strict=True):
        assert np.isclose(a["val_loss"], b["val_loss"], atol=1e-6)


def test_compiled_layers_serve_training_and_validation_with_eager_results(tmp_path):
    """A real torch.compile (inductor, on the CPU) of a packed decoder: training and validation both run
    through the compiled layers, at most compile_buckets graphs each, and give the eager run's model and
    validation losses up to float error."""
    path = str(tiny_decoder(tmp_path / "m", "llama"))
    cfg, train, val = bucketed_run(**PACKED_BUDGETS)
    eager_model, eager = train_tiny(path, cfg, train, val)
    torch._dynamo.reset()
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled_model, compiled = train_tiny(path, dataclasses.replace(cfg, compile=True, compile_buckets=3), train, val)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - before
    torch._dynamo.reset()
    # Training alone makes at most 3; more means validation's forwards were compiled too, in 3 at most.
    assert 3 < graphs <= 6
    for a, b in zip(eager["history"], compiled["history"], strict=True):
        assert np.isclose(a["val_loss"], b["val_loss"], atol=1e-6)
    want = params(eager_model)
    assert all(torch.allclose(p, want[n], atol=1e-5) for n, p in params(compiled_model).items())


def test_a_run_with_packed_token_budget_micro_batches_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    path = str(tiny_decoder(tmp_path / "llama", "llama"))
    train, val = varied(12), toy(1).iloc[::2]
    cfg = train_config(
        lr=1e-3, batch_size=4, micro_batch_size=2, evals_per_epoch=2, max_length=32, micro_batch_tokens=40, packing=True
    )
    whole_model, whole = train_tiny(path, cfg, train, val)
    ckpt = tmp_path / "ckpt"
    kill_at_step(monkeypatch, 5)
    with pytest.raises(Killed):
        train_tiny(path, cfg, train, val, checkpoint_dir=ckpt, checkpoint_every=2)
    monkeypatch.undo()
    retry = tmp_path / "retry"
    shutil.copytree(ckpt, retry)
    resumed_model, resumed = train_tiny(path, cfg, train, val, checkpoint_dir=ckpt, checkpoint_every=2)
    assert resumed["resumed_from_step"] == 4 and resumed["history"] == whole["history"]
    want = params(whole_model)
    assert all(torch.equal(p, want[n]) for n, p in params(resumed_model).items())
    # A retry after running out of memory (half the budget) and a switch of the speed options all resume.
    switched = dataclasses.replace(cfg, packing=False, micro_batch_tokens=None)
    for other in (cfg.for_attempt(2), switched, dataclasses.replace(cfg, eval_batch_tokens=40)):
        shutil.copytree(retry, tmp_path / "again", dirs_exist_ok=True)
        assert train_tiny(path, other, train, val, checkpoint_dir=tmp_path / "again")[1]["resumed_from_step"] == 4


def test_ddp_looks_for_unused_parameters_only_where_there_are_some(tmp_path):
    """A multi-process run tells DDP to search for unused parameters at every backward only if one forward
    and backward leaves some trainable parameter without a gradient (BERT's pooler), not for a decoder."""
    bert = load_classifier(ModelSpec("b", str(tiny_bert(tmp_path / "bert", dropout=0.0))))
    llama = load_classifier(ModelSpec("l", str(tiny_decoder(tmp_path / "llama", "llama"))))
    ids = [[2, 5, 6, 3]]
    assert train_module._unused_parameters(bert, ids, 0, torch.device("cpu")) == [
        "backbone.pooler.dense.weight",
        "backbone.pooler.dense.bias",
    ]
    assert train_module._unused_parameters(llama, ids, 0, torch.device("cpu")) == []
    assert llama.training and all(p.grad is None for p in llama.parameters())
