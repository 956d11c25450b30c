import pytest
import torch
from huggingface_hub import constants as hub_constants

from tiny_models import tiny_bert, tiny_gpt2
from w2s.engine import modeling
from w2s.engine.modeling import ModelSpec, is_decoder, load_classifier, load_tokenizer, pool, resolve_pooling


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
