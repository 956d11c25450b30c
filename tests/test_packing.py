"""Padding-free packing: a packed row gives each example the logits and gradients it gets in a padded batch,
for the decoders that support it; other models are refused with the reason and the fix."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from tiny_models import tiny_bert, tiny_decoder, tiny_gpt2, tiny_tokenizer
from w2s.engine.batching import collate
from w2s.engine.modeling import ModelSpec, load_classifier
from w2s.engine.packing import PackingUnsupported, enable_packing, pack

IDS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15, 16, 17, 18, 19, 20], [21], [22, 23, 24]]


def test_a_packed_row_lays_examples_end_to_end_with_their_own_positions():
    row = pack([[5, 6, 7], [8]], pad_id=0, max_seqlen=9, length=6, segments=3)
    assert row["input_ids"].tolist() == [[5, 6, 7, 8, 0, 0]]
    assert row["position_ids"].tolist() == [[0, 1, 2, 0, 0, 0]]
    # Two examples, one empty slot, then the pad tail.
    assert row["cu_seqlens"].tolist() == [0, 3, 4, 4, 6] and row["cu_seqlens"].dtype == torch.int32
    assert row["max_seqlen"] == 9


def logits_and_grads(model, inputs):
    model.zero_grad()
    logits = model(**inputs)[: len(IDS)]
    logits.sum().backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("shape", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_packed_rows_give_each_example_its_padded_logits_and_gradients(tmp_path, shape, pooling):
    path = tiny_gpt2(tmp_path / "m") if shape == "gpt2" else tiny_decoder(tmp_path / "m", shape)
    model = load_classifier(ModelSpec("tiny", str(path), pooling=pooling)).eval()  # eval: no dropout
    torch.nn.init.normal_(model.head.weight)  # the zero-initialised head would hide the features
    padded, padded_grads = logits_and_grads(model, collate(IDS, 0))
    enable_packing(model)
    layouts = {
        "exact": pack(IDS, 0, 9),
        "with a pad tail and empty slots": pack(IDS, 0, 40, length=40, segments=8),
    }
    for name, layout in layouts.items():
        logits, grads = logits_and_grads(model, layout)
        assert torch.allclose(logits, padded, atol=1e-5), name
        assert all(torch.allclose(g, w, atol=1e-5) for g, w in zip(grads, padded_grads)), name
    # Padded batches (inference) through the same model still take the padded path.
    assert torch.allclose(model(**collate(IDS, 0)), padded, atol=1e-6)


def test_encoders_are_refused_with_the_fix(tmp_path):
    model = load_classifier(ModelSpec("tiny", str(tiny_bert(tmp_path / "bert"))))
    with pytest.raises(PackingUnsupported, match=r"'bert'.*decoder.*set packing: false"):
        enable_packing(model)


def test_a_model_that_keeps_its_own_attention_is_refused(tmp_path):
    model = load_classifier(ModelSpec("tiny", str(tiny_decoder(tmp_path / "llama", "llama"))))
    model.backbone.set_attn_implementation = lambda name: None  # as transformers does for such models: a warning
    with pytest.raises(PackingUnsupported, match="custom attention function.*set packing: false"):
        enable_packing(model)


def test_sliding_window_attention_is_refused_at_the_first_packed_forward(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path / "qwen")
    config = Qwen2Config(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=4,
        max_window_layers=0,
    )
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "qwen")
    tokenizer.save_pretrained(tmp_path / "qwen")
    model = load_classifier(ModelSpec("tiny", str(tmp_path / "qwen")))
    enable_packing(model)
    with pytest.raises(PackingUnsupported, match="sliding-window attention.*set packing: false"):
        model(**pack(IDS, 0, 9))
