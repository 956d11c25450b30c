import pandas as pd
import pytest
import torch
from huggingface_hub import constants as hub_constants

from tiny_models import tiny_bert, tiny_decoder, tiny_gpt2, train_config
from w2s.engine import modeling
from w2s.engine.finetune import train_and_predict
from w2s.engine.modeling import (
    ModelSpec,
    gguf_file,
    is_decoder,
    load_classifier,
    load_tokenizer,
    pool,
    pretrained_kwargs,
    resolve_pooling,
)

DECODER_SHAPES = ("gpt2", "llama", "qwen2")


def build_decoder(directory, shape):
    return tiny_gpt2(directory) if shape == "gpt2" else tiny_decoder(directory, shape)


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool(hidden, mask, "mean").squeeze(-1).tolist() == [2.0, 4.0]


def test_last_pool_uses_mask_for_right_and_left_padding():
    hidden = torch.arange(8, dtype=torch.float).view(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "last").squeeze(-1).tolist() == [1.0, 7.0]
    assert pool(hidden, left, "last").squeeze(-1).tolist() == [3.0, 7.0]


def test_last_pool_is_not_fooled_by_token_id_zero(tmp_path):
    """openai/weak-to-strong found the last token as (input_ids != 0).sum() - 1: wrong whenever a text
    contains token 0. Pooling here reads the attention mask only."""
    model = load_classifier(ModelSpec("dec", str(tiny_gpt2(tmp_path / "gpt2"))))
    ids = torch.tensor([[5, 0, 7, 9]])  # a real token with id 0 in the middle
    mask = torch.ones_like(ids)
    out = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(model.features(ids, mask), out[:, 3])


def test_auto_pooling_follows_architecture(tmp_path):
    enc = load_classifier(ModelSpec("enc", str(tiny_bert(tmp_path / "bert"))))
    dec = load_classifier(ModelSpec("dec", str(tiny_gpt2(tmp_path / "gpt2"))))
    assert (enc.pooling, dec.pooling) == ("mean", "last")
    assert is_decoder(dec.backbone.config) and not is_decoder(enc.backbone.config)
    assert resolve_pooling("cls", dec.backbone.config) == "cls"


def test_head_starts_at_one_half_and_padding_does_not_change_logits(tmp_path):
    path = str(tiny_bert(tmp_path / "bert"))
    model = load_classifier(ModelSpec("enc", path)).eval()
    tok = load_tokenizer(ModelSpec("enc", path))
    alone = tok(["good movie"], return_tensors="pt", return_token_type_ids=False)
    padded = tok(
        ["good movie", "the film was not great at all"], padding=True, return_tensors="pt", return_token_type_ids=False
    )
    with torch.no_grad():
        assert torch.allclose(torch.softmax(model(**alone), -1), torch.full((1, 2), 0.5))
        torch.nn.init.normal_(model.head.weight)
        a = model.features(**alone)
        b = model.features(**padded)[:1]
    assert torch.allclose(a, b, atol=1e-5)


def test_lora_trains_adapters_and_head_only(tmp_path):
    spec = ModelSpec(
        "enc",
        str(tiny_bert(tmp_path / "bert")),
        lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"]},
    )
    model = load_classifier(spec)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.weight", "head.bias"} <= trainable
    assert all("lora_" in n for n in trainable - {"head.weight", "head.bias"})
    assert any("lora_" in n for n in trainable)


def test_bare_backbones_are_classified_by_model_type():
    from transformers import BertConfig, GPT2Config

    assert is_decoder(GPT2Config(architectures=["GPT2Model"]))
    assert not is_decoder(BertConfig(architectures=["BertModel"]))


@pytest.mark.parametrize("load", [load_tokenizer, load_classifier])
def test_a_hub_id_that_cannot_be_loaded_names_the_model_and_the_fix(monkeypatch, load):
    # Offline, transformers fails at once, from its own code, without a network call.
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=r"model 'ghost': 'no-such-org/no-such-model' is not a local directory") as info:
        load(ModelSpec("ghost", "no-such-org/no-such-model"))
    assert "hub_offline is set (HF_HUB_OFFLINE=1)" in str(info.value)
    assert "set hub_offline: false, or point models.ghost.path at a local directory" in str(info.value)


def test_a_hub_id_not_found_online_says_to_check_the_id(monkeypatch):
    def not_found(path, **kwargs):
        raise OSError(f"{path} is not a local folder and is not a valid model identifier")

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(modeling.AutoTokenizer, "from_pretrained", not_found)
    with pytest.raises(
        OSError,
        match=r"the hub id was not found or the hub was unreachable; check the hub id in "
        r"models.ghost.path, or point models.ghost.path at a local directory",
    ):
        load_tokenizer(ModelSpec("ghost", "no-such-org/no-such-model"))


def test_a_local_directory_keeps_its_own_error(tmp_path):
    path = tiny_bert(tmp_path / "bert")
    (path / "model.safetensors").unlink()
    with pytest.raises(OSError) as info:
        load_classifier(ModelSpec("local", str(path)))
    assert "Hugging Face hub" not in str(info.value)


@pytest.mark.parametrize("shape", DECODER_SHAPES)
def test_decoder_features_do_not_depend_on_padding_side_or_batch_mates(tmp_path, shape):
    """A decoder pools its last real token: an example's feature is the one it gets alone, whether its batch
    pads on the right or on the left (GPT-2's learned positions would shift with left padding unless the
    positions are counted from the attention mask) and whatever else is in the batch."""
    path = str(build_decoder(tmp_path / shape, shape))
    model = load_classifier(ModelSpec(shape, path)).eval()
    tok = load_tokenizer(ModelSpec(shape, path))
    texts = ["good movie", "the film was not great at all, it was awful", "a bad film"]
    with torch.no_grad():
        alone = torch.cat([model.features(**tok([t], return_tensors="pt", return_token_type_ids=False)) for t in texts])
        for side in ("right", "left"):
            tok.padding_side = side
            for batch in (texts, texts[::-1], texts[:1] + texts[1:2] * 3):
                inputs = tok(batch, padding=True, return_tensors="pt", return_token_type_ids=False)
                got = model.features(**inputs)
                want = alone[[texts.index(t) for t in batch]]
                assert torch.allclose(got, want, atol=1e-5), (side, batch)


POS = ["good movie", "great film", "a great movie", "the film is good", "good good film", "great"]
NEG = ["bad movie", "awful film", "a bad movie", "the film is awful", "bad bad film", "awful"]


def table(texts, labels, prefix):
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(len(texts))], "text": texts, "soft_label": labels})


def test_tiny_decoders_train_as_weak_and_as_strong_models(tmp_path):
    """A GPT-2-shaped weak model learns ground truth; Llama- and Qwen2-shaped students learn its soft labels;
    all of them separate the classes of held-out copies."""
    cfg = train_config(lr=1e-2, batch_size=8, micro_batch_size=8, eval_batch_size=16, epochs=4, max_length=16)
    truth = [1.0] * len(POS) + [0.0] * len(NEG)
    train = table((POS + NEG) * 6, truth * 6, "t")
    test = table(POS + NEG, truth, "x")
    weak_spec = ModelSpec("weak", str(build_decoder(tmp_path / "gpt2", "gpt2")))
    weak_preds, _ = train_and_predict(weak_spec, cfg, train, train.iloc[:12], {"train": train, "test": test}, seed=0)
    assert ((weak_preds["test"]["soft_pred"] > 0.5) == (test["soft_label"] > 0.5)).all()
    weak_labels = train.assign(soft_label=weak_preds["train"]["soft_pred"].to_numpy())
    for shape in ("llama", "qwen2"):
        spec = ModelSpec(shape, str(build_decoder(tmp_path / shape, shape)))
        preds, info = train_and_predict(spec, cfg, weak_labels, weak_labels.iloc[:12], {"test": test}, seed=0)
        assert ((preds["test"]["soft_pred"] > 0.5) == (test["soft_label"] > 0.5)).all(), shape
        assert info["history"]


def test_a_directory_with_one_gguf_file_and_no_config_loads_it_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(modeling.importlib.util, "find_spec", lambda name: object())
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert pretrained_kwargs(str(tmp_path)) == {"gguf_file": "m.gguf"}
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(OSError, match="several GGUF files"):
        gguf_file(str(tmp_path))
    assert pretrained_kwargs(str(tiny_bert(tmp_path / "bert"))) == {}
    assert pretrained_kwargs("org/hub-id") == {}


def test_a_gguf_model_without_the_gguf_package_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setattr(modeling.importlib.util, "find_spec", lambda name: None)
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(ImportError, match=r"a dependency of this project: pip install 'gguf>=0.17.1'"):
        load_tokenizer(ModelSpec("smol", str(tmp_path)))
