"""Frozen pretrained features for the probes: chosen layers of a backbone, pooled per example.

EleutherAI/w2s ran one example at a time and kept every layer; here examples go in length-sorted batches
with dynamic padding, only the requested layers are kept, and blocks above the deepest one are not run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from w2s.engine.batching import iterate, sorted_batches, tokenize
from w2s.engine.modeling import ModelSpec, hub_errors, load_tokenizer, pool, pretrained_kwargs, resolve_pooling


def middle_layer(num_hidden_layers: int) -> int:
    return num_hidden_layers // 2


def _drop_blocks_above(model: PreTrainedModel, num_hidden_layers: int, deepest: int) -> None:
    """Skip the blocks that cannot affect hidden_states[deepest]: half the compute at the middle layer.

    hidden_states[i] is the output of block i-1, so blocks 0..deepest-1 suffice, but one more is kept: models
    such as GPT-2 and Llama return their final norm's output as the last hidden state, which must not be one
    we keep. The block list is found as the only ModuleList with one entry per layer; if there is none or
    several (an unfamiliar architecture), every block runs, which is slower but still correct.
    """
    keep = deepest + 1
    if keep >= num_hidden_layers:
        return
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == num_hidden_layers]
    if len(stacks) == 1:
        del stacks[0][keep:]


@dataclass
class FrozenBackbone:
    """A loaded backbone that extracts pooled features of fixed layers; load once, extract many times."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    layers: list[int]
    pooling: str
    device: torch.device

    @classmethod
    def load(
        cls, model_path: str, layers: list[int] | None = None, pooling: str = "auto", device: str | None = None
    ) -> FrozenBackbone:
        spec = ModelSpec(alias=os.path.basename(model_path.rstrip("/")), path=model_path)
        with hub_errors(spec):
            config = AutoConfig.from_pretrained(model_path, **pretrained_kwargs(model_path))
        n = config.num_hidden_layers
        layers = sorted(set(layers)) if layers is not None else [middle_layer(n)]
        if not layers or not all(0 <= layer <= n for layer in layers):
            raise ValueError(f"layers must be in 0..{n} (0 = embeddings, {n} = last block); got {layers}")
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # fp32 weights on every device: on a GPU, autocast runs the matmuls in bf16 while norms and the
        # residual stream keep fp32 precision.
        with hub_errors(spec):
            model = AutoModel.from_pretrained(model_path, dtype=torch.float32, **pretrained_kwargs(model_path))
        _drop_blocks_above(model, n, max(layers))
        model.to(dev).eval().requires_grad_(False)
        tokenizer = load_tokenizer(spec)
        return cls(model, tokenizer, layers, resolve_pooling(pooling, config), dev)

    @torch.inference_mode()
    def extract(self, texts: list[str], max_length: int = 256, batch_size: int = 64) -> dict[int, np.ndarray]:
        hidden = self.model.config.hidden_size
        out = {layer: np.empty((len(texts), hidden), dtype=np.float32) for layer in self.layers}
        if not texts:  # tokenizers fail on an empty list
            return out
        ids = tokenize(self.tokenizer, texts, max_length)
        batches = sorted_batches([len(t) for t in ids], batch_size)
        on_gpu = self.device.type == "cuda"
        for idx, batch in iterate(ids, batches, self.tokenizer.pad_token_id):
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=on_gpu):
                states = self.model(**batch, output_hidden_states=True).hidden_states
            for layer in self.layers:
                pooled = pool(states[layer].float(), batch["attention_mask"], self.pooling)
                out[layer][idx] = pooled.cpu().numpy()
        return out


def extract_activations(
    model_path: str,
    texts: list[str],
    layers: list[int] | None = None,
    pooling: str = "auto",
    max_length: int = 256,
    batch_size: int = 64,
    device: str | None = None,
) -> dict[int, np.ndarray]:
    """Pooled features {layer: float32 (n_examples, hidden)} in input order; layer 0 is the embeddings and
    the default is the middle layer, num_hidden_layers // 2."""
    backbone = FrozenBackbone.load(model_path, layers, pooling, device)
    return backbone.extract(texts, max_length, batch_size)
