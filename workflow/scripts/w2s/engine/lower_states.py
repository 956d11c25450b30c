"""Frozen lower blocks, run once: a model entry with `frozen_layers: N` trains only the blocks above the N-th
and the head, on the hidden states that the pretrained lower N blocks give each text.

Those states depend on the text alone, so one job computes them for every text of a task that the model's
jobs read (all seeds) and every job of the model reads them from its file instead of running the lower blocks again: a
student of MPNet with 10 of its 12 blocks frozen costs a sixth of a full finetune per step, and its
predictions a sixth of the inference. The model is the pretrained one with its lower blocks frozen in
evaluation mode (no dropout in them), which is not full finetuning: config/README.md says so.

The states of every text lie end to end in one table; a text's "token ids" are the numbers of its rows,
and the model's embedding layer is replaced by a lookup into the table. So the training loop, its batches,
checkpoints and data parallelism run unchanged on these ids (`StateTokenizer` stands in for the tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from w2s.atomic import atomic_path
from w2s.engine.batching import collate, sorted_batches, tokenize

# Where each supported architecture keeps its embedding module, its list of blocks, and the parameters its
# blocks share (MPNet's relative position bias: the frozen blocks' states were computed with it as
# pretrained, so it stays frozen). Only models whose blocks read nothing from the embedding module but its
# output qualify: GPT-2 adds its position embeddings beside the token embeddings' module, and Gemma scales
# the embeddings' output in the model's forward.
ARCHITECTURES = {
    "bert": ("embeddings", "encoder.layer", ()),
    "mpnet": ("embeddings", "encoder.layer", ("encoder.relative_attention_bias",)),
    "llama": ("embed_tokens", "layers", ()),
    "qwen2": ("embed_tokens", "layers", ()),
}


class FrozenLayersUnsupported(ValueError):
    pass


def _parts(model_type: str) -> tuple[str, str, tuple[str, ...]]:
    if model_type not in ARCHITECTURES:
        raise FrozenLayersUnsupported(
            f"frozen_layers: model type {model_type!r} is not supported (supported: "
            f"{', '.join(sorted(ARCHITECTURES))}); remove frozen_layers from its model entry to finetune every block"
        )
    return ARCHITECTURES[model_type]


def _blocks(backbone: nn.Module) -> nn.ModuleList:
    return backbone.get_submodule(_parts(backbone.config.model_type)[1])


def check_frozen_layers(config, frozen_layers: int, key: str) -> None:
    """At least one block must stay trainable above the frozen ones."""
    _parts(config.model_type)
    if not 1 <= frozen_layers < config.num_hidden_layers:
        raise ValueError(
            f"{key}: {frozen_layers} frozen blocks, but the model has {config.num_hidden_layers}; freeze between 1 "
            f"and {config.num_hidden_layers - 1} so that at least one block trains"
        )


@dataclass(frozen=True)
class LowerStates:
    """The states after the lower `frozen_layers` blocks of every text in `texts`. Row 0 of `states` is the
    padding row (zeros); the rows of text i are offsets[i] + 1 .. offsets[i + 1]."""

    texts: list[str]
    offsets: np.ndarray
    states: torch.Tensor
    frozen_layers: int
    max_length: int

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            torch.save(
                {
                    "texts": self.texts,
                    "offsets": torch.from_numpy(self.offsets),
                    "states": self.states,
                    "frozen_layers": self.frozen_layers,
                    "max_length": self.max_length,
                },
                tmp,
            )

    @classmethod
    def load(cls, path: str | Path) -> LowerStates:
        saved = torch.load(path, weights_only=True)
        return cls(
            texts=saved["texts"],
            offsets=saved["offsets"].numpy(),
            states=saved["states"].float(),
            frozen_layers=saved["frozen_layers"],
            max_length=saved["max_length"],
        )


@torch.inference_mode()
def compute_lower_states(
    backbone: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    frozen_layers: int,
    max_length: int,
    batch_size: int,
    device: torch.device,
    key: str = "frozen_layers",
) -> LowerStates:
    """The states that the lower blocks of the pretrained `backbone` (loaded in float32; modified in place)
    give each distinct text of `texts`, truncated to `max_length` tokens. Only the blocks up to the first
    trainable one run: hidden_states[N] is block N-1's output, and the top one is kept because some models
    return their final norm's output as the last hidden state."""
    config = backbone.config
    check_frozen_layers(config, frozen_layers, key)
    del _blocks(backbone)[frozen_layers + 1 :]
    backbone.to(device).eval()
    texts = list(dict.fromkeys(texts))
    ids = tokenize(tokenizer, texts, max_length)
    lengths = np.array([len(t) for t in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    states = torch.zeros((1 + int(offsets[-1]), config.hidden_size), dtype=torch.float32)
    for batch in sorted_batches(lengths, batch_size):
        inputs = {k: v.to(device) for k, v in collate([ids[i] for i in batch], tokenizer.pad_token_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            hidden = backbone(**inputs, output_hidden_states=True).hidden_states[frozen_layers]
        hidden = hidden.float().cpu()
        for row, i in enumerate(batch):
            states[offsets[i] + 1 : offsets[i + 1] + 1] = hidden[row, : lengths[i]]
    return LowerStates(texts, offsets, states, frozen_layers, max_length)


class StateTokenizer:
    """A tokenizer whose vocabulary is the rows of a `LowerStates` table: a text's ids are its rows. Texts
    that the table lacks are an error (they would need the lower blocks, which the model no longer has)."""

    pad_token_id = 0

    def __init__(self, lower: LowerStates, tokenizer: PreTrainedTokenizerBase):
        self.max_length = lower.max_length
        self.index = {text: i for i, text in enumerate(lower.texts)}
        self.offsets = lower.offsets
        self.tokenizer = tokenizer

    def __call__(self, texts: Sequence[str], truncation: bool, max_length: int, add_special_tokens: bool) -> dict:
        if max_length != self.max_length or not (truncation and add_special_tokens):
            raise ValueError(
                f"the lower states were computed for max_length {self.max_length} with special tokens and "
                f"truncation; asked for max_length {max_length}"
            )
        missing = [t for t in texts if t not in self.index]
        if missing:
            raise KeyError(f"{len(missing)} texts have no lower states (first: {missing[0][:80]!r})")
        rows = [self.index[t] for t in texts]
        return {"input_ids": [list(range(self.offsets[i] + 1, self.offsets[i + 1] + 1)) for i in rows]}

    def save_pretrained(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(directory)


class StateLookup(nn.Module):
    """Stands in for the embedding module: rows of the states table for the ids it is given. The table is
    a buffer that moves with the model but is left out of its state dict and checkpoints."""

    def __init__(self, states: torch.Tensor):
        super().__init__()
        self.register_buffer("states", states, persistent=False)

    def forward(self, input_ids: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.states[input_ids]


def top_blocks(backbone: nn.Module, lower: LowerStates) -> nn.Module:
    """`backbone` in place without its lower `lower.frozen_layers` blocks, reading their states from `lower`."""
    embeddings, _, shared = _parts(backbone.config.model_type)
    check_frozen_layers(backbone.config, lower.frozen_layers, "frozen_layers")
    del _blocks(backbone)[: lower.frozen_layers]
    backbone.set_submodule(embeddings, StateLookup(lower.states))
    for name in shared:
        backbone.get_submodule(name).requires_grad_(False)
    return backbone
