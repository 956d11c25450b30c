"""A pretrained backbone (encoder or decoder) with a 2-way classification head."""

from __future__ import annotations

import functools
import importlib.util
import inspect
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from huggingface_hub import constants as hub_constants
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from w2s.engine.lower_states import LowerStates, StateTokenizer, top_blocks
from w2s.engine.packing import packed_features

DECODER_ARCH_SUFFIXES = ("ForCausalLM", "LMHeadModel")


@dataclass(frozen=True)
class ModelSpec:
    """One entry of config `models`, resolved to a loadable path."""

    alias: str
    path: str
    pooling: str = "auto"
    dtype: str = "auto"
    max_length: int = 256
    gradient_checkpointing: bool = False
    lora: dict[str, Any] = field(default_factory=dict)
    # The file of the lower blocks' states (w2s.engine.lower_states) that a model with frozen layers reads.
    lower_states: str | None = None

    @classmethod
    def from_config(
        cls, alias: str, entry: dict[str, Any], path: str | None = None, lower_states: str | None = None
    ) -> ModelSpec:
        if entry.get("frozen_layers") and lower_states is None:
            raise ValueError(f"models.{alias}.frozen_layers is set, but the job was given no lower states file")
        return cls(
            alias=alias,
            path=path or entry["path"],
            pooling=entry.get("pooling", "auto"),
            dtype=entry.get("dtype", "auto"),
            max_length=entry.get("max_length", 256),
            gradient_checkpointing=entry.get("gradient_checkpointing", False),
            lora=dict(entry.get("lora") or {}),
            lower_states=lower_states,
        )


def is_decoder(config) -> bool:
    """Causal LMs pool on their last real token; encoders on the mean."""
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(DECODER_ARCH_SUFFIXES) for a in architectures):
        return True
    # A bare backbone (e.g. "LlamaModel") names no head: decide by model type. Encoders such as BERT also
    # have a causal-LM class, but only they have a masked-LM one.
    model_type = getattr(config, "model_type", "")
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def resolve_pooling(pooling: str, config) -> str:
    if pooling != "auto":
        return pooling
    return "last" if is_decoder(config) else "mean"


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool token states using the attention mask only, whatever the padding side or pad id."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if how == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r}; use mean, cls or last")


def mask_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only, so that a left-padded row gets the positions it would have
    unpadded (models with learned absolute positions, such as GPT-2, otherwise shift it by its padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def takes_position_ids(model: nn.Module) -> bool:
    return "position_ids" in inspect.signature(model.forward).parameters


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, hidden_size: int, pooling: str, positions_from_mask: bool = False):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        # Decoders only: encoders such as RoBERTa and MPNet number positions from an offset of their own.
        self.positions_from_mask = positions_from_mask
        self.head = nn.Linear(hidden_size, 2)
        # Zero-initialised head (as Burns et al.): the student starts at p = 1/2 on every example, so early
        # gradients come from the labels rather than from a random projection of the features.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"position_ids": mask_positions(attention_mask)} if self.positions_from_mask else {}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return pool(out.last_hidden_state, attention_mask, self.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **packed) -> torch.Tensor:
        """Logits of a padded batch; or, given `packed` (the rest of w2s.engine.packing.pack's output), of each
        segment of one packed row."""
        if packed:
            feats = packed_features(self.backbone, self.pooling, input_ids, **packed)
        else:
            feats = self.features(input_ids, attention_mask)
        return self.head(feats.to(self.head.weight.dtype))


def _torch_dtype(spec: ModelSpec, on_gpu: bool) -> torch.dtype:
    if spec.dtype == "bfloat16":
        return torch.bfloat16
    if spec.dtype == "float32":
        return torch.float32
    # auto: frozen LoRA base weights on a GPU can live in bf16; fully trained weights stay fp32 under autocast.
    return torch.bfloat16 if (on_gpu and spec.lora.get("enabled")) else torch.float32


@contextmanager
def hub_errors(spec: ModelSpec) -> Iterator[None]:
    """A failed download re-raised naming the model and the fix. transformers says only that it could not
    connect or that the id is no model, deep inside a job that started long after the config was read (the
    config check makes no network calls). A local directory's errors are about its files and pass as they are.
    """
    try:
        yield
    except OSError as error:
        if Path(spec.path).expanduser().is_dir():
            raise
        key = f"models.{spec.alias}.path"
        if hub_constants.HF_HUB_OFFLINE:
            why = "hub_offline is set (HF_HUB_OFFLINE=1) and the model is not in the local Hugging Face cache"
            fix = f"set hub_offline: false, or point {key} at a local directory with the weights"
        else:
            why = "the hub id was not found or the hub was unreachable"
            fix = f"check the hub id in {key}, or point {key} at a local directory with the weights"
        raise OSError(
            f"model {spec.alias!r}: {spec.path!r} is not a local directory and could not be loaded from the "
            f"Hugging Face hub: {why}; {fix}"
        ) from error


def gguf_file(path: str) -> str | None:
    """The GGUF file of a local directory that holds one and no config.json (a quantised llama.cpp model,
    e.g. an offline package), which transformers loads with `gguf_file=` (dequantised); None otherwise."""
    folder = Path(path).expanduser()
    if not folder.is_dir() or (folder / "config.json").exists():
        return None
    found = sorted(p.name for p in folder.glob("*.gguf"))
    if len(found) > 1:
        raise OSError(f"{path}: several GGUF files {found}; keep one model per directory")
    if found and importlib.util.find_spec("gguf") is None:
        raise ImportError(
            f"{path} holds a GGUF model ({found[0]}), which transformers reads with the gguf package, a "
            "dependency of this project: pip install 'gguf>=0.17.1'"
        )
    return found[0] if found else None


def pretrained_kwargs(path: str) -> dict[str, str]:
    """What from_pretrained needs besides the path: the GGUF file name, for a GGUF directory."""
    name = gguf_file(path)
    return {"gguf_file": name} if name else {}


@functools.cache
def _lower_states(path: str) -> LowerStates:
    # The tokenizer and the classifier of one job both read the file: once.
    return LowerStates.load(path)


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase | StateTokenizer:
    """The model's tokenizer; for a model with frozen lower blocks, one whose ids are rows of their states."""
    with hub_errors(spec):
        tokenizer = AutoTokenizer.from_pretrained(spec.path, **pretrained_kwargs(spec.path))
    if tokenizer.pad_token is None:
        # Decoders such as GPT-2 ship no pad token; any id works because pooling reads the attention mask.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer if spec.lower_states is None else StateTokenizer(_lower_states(spec.lower_states), tokenizer)


def load_backbone(spec: ModelSpec, device: torch.device | None = None) -> nn.Module:
    """The pretrained backbone, without the blocks whose states `spec.lower_states` holds; on a GPU `device`,
    its weights go straight there in their dtype rather than through host memory."""
    on_gpu = device is not None and device.type == "cuda"
    placement = {"device_map": {"": device}} if on_gpu else {}
    with hub_errors(spec):
        dtype = _torch_dtype(spec, on_gpu)
        backbone = AutoModel.from_pretrained(spec.path, dtype=dtype, **placement, **pretrained_kwargs(spec.path))
    if spec.lower_states is not None:
        backbone = top_blocks(backbone, _lower_states(spec.lower_states))
    return backbone


def load_classifier(spec: ModelSpec, device: torch.device | None = None) -> Classifier:
    return build_classifier(load_backbone(spec, device), spec)


def build_classifier(backbone: nn.Module, spec: ModelSpec) -> Classifier:
    """The classifier on a loaded backbone, with the gradient checkpointing and adapters that `spec` asks for."""
    config = backbone.config
    positions_from_mask = is_decoder(config) and takes_position_ids(backbone)
    if spec.gradient_checkpointing:
        backbone.gradient_checkpointing_enable()
    if spec.lora.get("enabled"):
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=spec.lora["r"],
            lora_alpha=spec.lora["alpha"],
            lora_dropout=spec.lora["dropout"],
            target_modules=spec.lora["target_modules"],
        )
        backbone = get_peft_model(backbone, lora)
    return Classifier(backbone, config.hidden_size, resolve_pooling(spec.pooling, config), positions_from_mask)


def software_versions() -> dict[str, str]:
    """What a job's record names, so that a result can be traced to the software that produced it."""
    return {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}
