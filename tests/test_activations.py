import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, LlamaConfig, LlamaModel

from tiny_models import tiny_bert, tiny_gpt2, tiny_tokenizer
from w2s.data.activations import load_activations, save_activations
from w2s.engine.activations import FrozenBackbone, extract_activations

LAYERS = 4
TEXTS = [
    "the film was not great at all, " * 12,
    "good",
    "bad movie",
    "a " * 70 + "awful",
    "the movie is great",
    "not good. " * 30,
    "x",
]
MAX_LENGTH = 64  # below the longest texts, so truncation is exercised too


def tiny_llama(directory):
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(directory)
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        architectures=["LlamaForCausalLM"],
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", params=["bert", "gpt2", "llama"])
def model_path(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "bert":
        return str(tiny_bert(directory, layers=LAYERS, dropout=0.0))
    if request.param == "gpt2":
        return str(tiny_gpt2(directory, layers=LAYERS))
    return str(tiny_llama(directory))


def reference(model_path, texts, layer):
    """The slow way, independent of the code under test: the full model, one example at a time, pooled by hand
    (mean over tokens for encoders, the last token for decoders)."""
    model = AutoModel.from_pretrained(model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    decoder = model.config.model_type != "bert"
    rows = []
    for text in texts:
        enc = tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt", return_token_type_ids=False)
        with torch.no_grad():
            states = model(**enc, output_hidden_states=True).hidden_states[layer][0]
        rows.append(states[-1] if decoder else states.mean(0))
    return torch.stack(rows).numpy()


def test_batched_features_equal_one_example_at_a_time(model_path):
    batched = extract_activations(model_path, TEXTS, layers=[1, 3], max_length=MAX_LENGTH, batch_size=4, device="cpu")
    for layer in (1, 3):
        assert batched[layer].dtype == np.float32 and batched[layer].shape == (len(TEXTS), 32)
        np.testing.assert_allclose(batched[layer], reference(model_path, TEXTS, layer), atol=1e-5)


def test_default_is_the_middle_layer_and_upper_blocks_are_not_run(model_path):
    backbone = FrozenBackbone.load(model_path, device="cpu")
    assert backbone.layers == [LAYERS // 2]
    stacks = [m for m in backbone.model.modules() if isinstance(m, torch.nn.ModuleList)]
    assert max(len(m) for m in stacks) == LAYERS // 2 + 1
    acts = backbone.extract(TEXTS, max_length=MAX_LENGTH, batch_size=3)
    assert list(acts) == [LAYERS // 2]
    np.testing.assert_allclose(acts[LAYERS // 2], reference(model_path, TEXTS, LAYERS // 2), atol=1e-5)


def test_only_requested_layers_are_returned_including_embeddings_and_last(model_path):
    acts = extract_activations(model_path, TEXTS[:3], layers=[LAYERS, 0], max_length=MAX_LENGTH, device="cpu")
    assert sorted(acts) == [0, LAYERS]
    np.testing.assert_allclose(acts[LAYERS], reference(model_path, TEXTS[:3], LAYERS), atol=1e-5)


def test_input_order_is_preserved(model_path):
    backbone = FrozenBackbone.load(model_path, layers=[1], device="cpu")
    forward = backbone.extract(TEXTS, max_length=MAX_LENGTH, batch_size=2)[1]
    backward = backbone.extract(TEXTS[::-1], max_length=MAX_LENGTH, batch_size=2)[1]
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)


def test_no_texts_give_empty_arrays(model_path):
    acts = extract_activations(model_path, [], device="cpu")
    assert acts[LAYERS // 2].shape == (0, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_bf16_autocast_stays_close_to_fp32(model_path):
    acts = extract_activations(model_path, TEXTS, layers=[3], max_length=MAX_LENGTH, batch_size=4, device="cuda")
    expected = reference(model_path, TEXTS, 3)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(acts[3], expected, atol=0.03 * scale)


def test_layers_out_of_range_are_refused(model_path):
    with pytest.raises(ValueError, match="layers must be in"):
        FrozenBackbone.load(model_path, layers=[LAYERS + 1])


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    acts = {12: rng.normal(size=(3, 5)).astype(np.float32), 2: rng.normal(size=(3, 5)).astype(np.float32)}
    ids = ["b", "a", "c"]
    path = tmp_path / "acts.safetensors"
    save_activations(acts, ids, path)
    loaded_ids, loaded = load_activations(path)
    assert loaded_ids == ids and list(loaded) == [2, 12]
    for layer in acts:
        np.testing.assert_array_equal(loaded[layer], acts[layer])
    assert [p.name for p in tmp_path.iterdir()] == ["acts.safetensors"]  # no temp file left behind


def test_save_refuses_rows_that_do_not_match_ids(tmp_path):
    with pytest.raises(ValueError, match="rows"):
        save_activations({1: np.zeros((2, 4), np.float32)}, ["only-one"], tmp_path / "acts.safetensors")
    assert not (tmp_path / "acts.safetensors").exists()
