"""Frozen lower blocks read from their cached states: the same model as running them, and the same training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModel

from tiny_models import tiny_bert, tiny_decoder, tiny_gpt2, tiny_mpnet, train_config
from w2s.engine.batching import collate, tokenize
from w2s.engine.losses import build_loss
from w2s.engine.lower_states import FrozenLayersUnsupported, LowerStates, StateTokenizer, compute_lower_states
from w2s.engine.modeling import ModelSpec, load_classifier, load_tokenizer
from w2s.engine.train import make_accelerator, predict_proba, train_classifier

TEXTS = [
    "good movie",
    "the film was not good at all, awful",
    "bad",
    "a great great film is a great film",
    "good movie",
    "awful awful awful",
    "the movie is not bad",
    "a film",
    "awful " * 20,
]
BUILDERS = {
    "bert": lambda d: tiny_bert(d, layers=3, dropout=0.0),
    "mpnet": lambda d: tiny_mpnet(d, layers=3),
    "llama": lambda d: tiny_decoder(d, "llama", layers=3),
    "qwen2": lambda d: tiny_decoder(d, "qwen2", layers=3),
}


def write_states(path: str, frozen_layers: int, out, texts=TEXTS, max_length: int = 16) -> str:
    spec = ModelSpec(alias="m", path=path, max_length=max_length)
    backbone = AutoModel.from_pretrained(path, dtype=torch.float32)
    lower = compute_lower_states(
        backbone, load_tokenizer(spec), texts, frozen_layers, max_length, 3, torch.device("cpu")
    )
    lower.save(out)
    return str(out)


def random_head(model) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=gen))
        model.head.bias.copy_(torch.randn(model.head.bias.shape, generator=gen))


def logits(model, tokenizer, texts) -> torch.Tensor:
    batch = collate(tokenize(tokenizer, texts, 16), tokenizer.pad_token_id)
    return model(**batch)


@pytest.mark.parametrize("shape", sorted(BUILDERS))
@pytest.mark.parametrize("frozen", [1, 2])
def test_top_blocks_on_cached_states_are_the_full_model(tmp_path, shape, frozen):
    path = str(BUILDERS[shape](tmp_path / shape))
    states = write_states(path, frozen, tmp_path / "states.pt")
    full_spec = ModelSpec(alias="m", path=path, max_length=16)
    top_spec = ModelSpec(alias="m", path=path, max_length=16, lower_states=states)
    full, top = load_classifier(full_spec).eval(), load_classifier(top_spec).eval()
    random_head(full)
    random_head(top)
    assert len(list(top.backbone.parameters())) < len(list(full.backbone.parameters()))

    expected = logits(full, load_tokenizer(full_spec), TEXTS)
    got = logits(top, load_tokenizer(top_spec), TEXTS)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # Not a coincidence of the head: the texts' logits differ among themselves.
    assert expected[:, 1].std() > 1e-3

    # MPNet's blocks share a position bias, which the frozen blocks used as pretrained: it stays frozen.
    frozen_names = {n for n, p in top.named_parameters() if not p.requires_grad}
    assert frozen_names == ({"backbone.encoder.relative_attention_bias.weight"} if shape == "mpnet" else set())

    # Gradients of the trainable blocks and the head agree too (the lookup passes none to the states).
    for model, spec in ((full, full_spec), (top, top_spec)):
        logits(model, load_tokenizer(spec), TEXTS)[:, 1].square().sum().backward()
    full_grads = dict(full.named_parameters())
    for name, param in top.named_parameters():
        if not param.requires_grad:
            continue
        layer = name.split(".")
        # Block i of the top model is block i + frozen of the full one.
        for pos, part in enumerate(layer[:-1]):
            if part.isdigit() and layer[pos - 1] in ("layer", "layers"):
                layer[pos] = str(int(part) + frozen)
        twin = full_grads[".".join(layer)]
        torch.testing.assert_close(param.grad, twin.grad, rtol=1e-3, atol=1e-5)


def test_training_on_cached_states_is_training_with_frozen_lower_blocks(tmp_path):
    """The cached run's trajectory equals a full model's whose embeddings and lower blocks do not train."""
    path = str(tiny_bert(tmp_path / "bert", layers=3, dropout=0.0))
    states = write_states(path, 2, tmp_path / "states.pt")
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS, "soft_label": rng.uniform(size=len(TEXTS))})
    cfg = train_config(lr=1e-3, head_lr=1e-2, batch_size=4, micro_batch_size=2, epochs=3, max_length=16)
    preds = []
    for lower in (None, states):
        spec = ModelSpec(alias="m", path=path, max_length=16, lower_states=lower)
        model, tokenizer = load_classifier(spec), load_tokenizer(spec)
        if lower is None:
            for module in (model.backbone.embeddings, *model.backbone.encoder.layer[:2]):
                module.requires_grad_(False)
        accelerator = make_accelerator()
        loss = build_loss("xent", train_labels=train["soft_label"].to_numpy())
        history = train_classifier(model, tokenizer, train, train, loss, cfg, 0, accelerator)
        preds.append(predict_proba(model, tokenizer, TEXTS, 4, 16, accelerator))
        assert history["total_steps"] == 9
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-5, atol=1e-6)
    # Training moved the predictions away from the zero head's 1/2.
    assert np.abs(preds[0] - 0.5).max() > 0.01


def test_states_table_holds_each_distinct_text_once_without_padding(tmp_path):
    path = str(tiny_bert(tmp_path / "bert", layers=3))
    lower = LowerStates.load(write_states(path, 1, tmp_path / "states.pt"))
    tokenizer = load_tokenizer(ModelSpec(alias="m", path=path, max_length=16))
    lengths = [len(t) for t in tokenize(tokenizer, list(dict.fromkeys(TEXTS)), 16)]
    assert lower.texts == list(dict.fromkeys(TEXTS))
    assert lower.states.shape[0] == 1 + sum(lengths)
    assert torch.all(lower.states[0] == 0)
    # A text truncated to max_length keeps max_length rows.
    assert max(lengths) == 16


def test_state_tokenizer_maps_texts_to_their_rows_and_refuses_others(tmp_path):
    path = str(tiny_bert(tmp_path / "bert", layers=3))
    spec = ModelSpec(alias="m", path=path, max_length=16, lower_states=write_states(path, 1, tmp_path / "s.pt"))
    tokenizer = load_tokenizer(spec)
    assert isinstance(tokenizer, StateTokenizer)
    ids = tokenize(tokenizer, ["bad", "good movie", "good movie"], 16)
    text_ids = tokenize(load_tokenizer(ModelSpec(alias="m", path=path, max_length=16)), ["bad", "good movie"], 16)
    assert [len(i) for i in ids] == [len(text_ids[0]), len(text_ids[1]), len(text_ids[1])]
    assert ids[1] == ids[2] and ids[1][0] == ids[1][-1] - len(ids[1]) + 1
    assert 0 not in ids[0]
    with pytest.raises(KeyError, match="1 texts have no lower states"):
        tokenize(tokenizer, ["bad", "a text never seen"], 16)
    with pytest.raises(ValueError, match="max_length 16"):
        tokenize(tokenizer, ["bad"], 32)


def test_unsupported_architectures_and_depths_are_refused(tmp_path):
    gpt2 = str(tiny_gpt2(tmp_path / "gpt2"))
    with pytest.raises(FrozenLayersUnsupported, match="'gpt2' is not supported"):
        write_states(gpt2, 1, tmp_path / "g.pt")
    bert = str(tiny_bert(tmp_path / "bert", layers=3))
    for frozen in (0, 3):
        with pytest.raises(ValueError, match=f"{frozen} frozen blocks, but the model has 3"):
            write_states(bert, frozen, tmp_path / "b.pt")


def test_a_frozen_model_entry_needs_its_states():
    with pytest.raises(ValueError, match="models.m.frozen_layers is set"):
        ModelSpec.from_config("m", {"path": "x", "frozen_layers": 2})
