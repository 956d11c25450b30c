"""Padding-free micro-batches for decoders: the examples of a micro-batch laid end to end in one row.

Each example keeps its own positions (0, 1, ...) and attends only to itself and causally. On a GPU the
attention is FlashAttention's variable-length kernel, which takes the examples' boundaries (cumulative
lengths) and computes no padding and no mask; elsewhere, or in float32, scaled-dot-product attention under a
block-diagonal causal mask computes the same function. Padded batches (inference, evaluation) that reach
the same model take transformers' own SDPA path unchanged.

A packed row ends in a tail of pad tokens when its length is rounded up to a compile bucket, and its list of
boundaries may hold empty examples so that it has the same length in every micro-batch: the tail is one more
segment (attending only to itself), and the outputs of empty and tail segments are dropped by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "w2s_packed"
# Attention variants that the packed kernels here do not implement, by the keyword a model passes them under.
UNSUPPORTED = {"sliding_window": "sliding-window attention", "softcap": "logit soft-capping", "s_aux": "sinks"}


class PackingUnsupported(ValueError):
    pass


def _flash(query, key, value, cu_seqlens, max_seqlen: int, scaling, dropout: float, dtype) -> torch.Tensor:
    # (1, heads, tokens, dim) -> (tokens, heads, dim) in the compute dtype (under autocast, rotary embeddings
    # leave queries and keys in float32); grouped-query heads are shared by the kernel itself.
    q, k, v = (t[0].transpose(0, 1).to(dtype) for t in (query, key, value))
    out = torch.ops.aten._flash_attention_forward(
        q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout, True, False, scale=scaling
    )[0]
    return out.unsqueeze(0)


def _masked(query, key, value, cu_seqlens, scaling, dropout: float) -> torch.Tensor:
    positions = torch.arange(query.shape[2], device=query.device)
    segment = torch.searchsorted(cu_seqlens[1:], positions.to(cu_seqlens.dtype), right=True)
    allowed = (segment[:, None] == segment[None, :]) & (positions[:, None] >= positions[None, :])
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2)


def packed_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask,
    scaling: float | None = None,
    dropout: float = 0.0,
    packed_cu_seqlens: torch.Tensor | None = None,
    packed_max_seqlen: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """A transformers attention function: packed rows (given their boundaries) or, without them, SDPA."""
    if packed_cu_seqlens is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    used = [what for name, what in UNSUPPORTED.items() if kwargs.get(name) is not None]
    if used:
        raise PackingUnsupported(
            f"packing: this model uses {', '.join(used)}, which packed attention does not; set packing: false for it"
        )
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else query.dtype
    if query.is_cuda and dtype in (torch.float16, torch.bfloat16):
        return _flash(query, key, value, packed_cu_seqlens, packed_max_seqlen, scaling, dropout, dtype), None
    return _masked(query, key, value, packed_cu_seqlens, scaling, dropout), None


def enable_packing(classifier) -> None:
    """Give the classifier's backbone packed attention, or say why it cannot have it."""
    backbone = classifier.backbone
    kind = getattr(backbone.config, "model_type", type(backbone).__name__)
    if not classifier.positions_from_mask:
        raise PackingUnsupported(
            f"packing: a {kind!r} model cannot be packed: packing needs a decoder (causal attention) that takes "
            "position ids, and an encoder's examples would attend to each other in a shared row; set packing: "
            "false for this model"
        )
    AttentionInterface.register(ATTENTION, packed_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    backbone.set_attn_implementation(ATTENTION)
    # transformers only warns when a model's attention cannot be swapped (it does not call attention functions).
    if backbone.config._attn_implementation != ATTENTION:
        raise PackingUnsupported(
            f"packing: transformers' {kind!r} model does not take a custom attention function, which packing "
            "needs; set packing: false for this model"
        )


def pack(
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    max_seqlen: int,
    length: int | None = None,
    segments: int | None = None,
) -> dict:
    """One packed row of `token_ids` (host tensors): input_ids and position_ids of shape (1, length), the
    boundaries `cu_seqlens` (int32: 0, the end of each example, `segments - n` empty examples, and the end of
    the pad tail, so segments + 2 entries) and `max_seqlen`, a bound on any segment's length. `length` and
    `segments` default to the examples' own total and count."""
    lengths = [len(t) for t in token_ids]
    real = sum(lengths)
    length = real if length is None else length
    segments = len(lengths) if segments is None else segments
    input_ids = torch.full((1, length), pad_id, dtype=torch.long)
    input_ids[0, :real] = torch.as_tensor(list(chain.from_iterable(token_ids)), dtype=torch.long)
    position_ids = torch.zeros((1, length), dtype=torch.long)
    position_ids[0, :real] = torch.as_tensor(np.concatenate([np.arange(n) for n in lengths]), dtype=torch.long)
    ends = np.cumsum(lengths).tolist()
    cu_seqlens = torch.tensor([0, *ends, *[real] * (segments - len(lengths)), length], dtype=torch.int32)
    return {"input_ids": input_ids, "position_ids": position_ids, "cu_seqlens": cu_seqlens, "max_seqlen": max_seqlen}


def pool_segments(hidden: torch.Tensor, cu_seqlens: torch.Tensor, how: str) -> torch.Tensor:
    """Pool the token states (tokens, hidden) of a packed row per segment, the pad tail left out."""
    if how == "last":
        return hidden[(cu_seqlens[1:-1].long() - 1).clamp(min=0)]
    if how == "cls":
        return hidden[cu_seqlens[:-2].long().clamp(max=hidden.shape[0] - 1)]
    if how == "mean":
        positions = torch.arange(hidden.shape[0], device=hidden.device, dtype=cu_seqlens.dtype)
        segment = torch.searchsorted(cu_seqlens[1:], positions, right=True)
        sums = hidden.new_zeros(len(cu_seqlens) - 1, hidden.shape[1]).index_add_(0, segment, hidden)
        counts = (cu_seqlens[1:] - cu_seqlens[:-1]).clamp(min=1).to(hidden.dtype)
        return (sums / counts[:, None])[:-1]
    raise ValueError(f"unknown pooling {how!r}; use mean, cls or last")


def packed_features(
    backbone,
    pooling: str,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
) -> torch.Tensor:
    """Pooled features of every segment of one packed row (see `pack`), through a backbone that has packed
    attention (`enable_packing`)."""
    length = input_ids.shape[1]
    # A 4-d mask reaches the attention function as it is, so transformers builds none (and reads none back to
    # the host); all true, because a packed row holds no padding and packed_attention keeps examples apart.
    everything = torch.ones((), dtype=torch.bool, device=input_ids.device).expand(1, 1, length, length)
    out = backbone(
        input_ids=input_ids,
        attention_mask=everything,
        position_ids=position_ids,
        use_cache=False,
        packed_cu_seqlens=cu_seqlens,
        packed_max_seqlen=max_seqlen,
    )
    return pool_segments(out.last_hidden_state[0], cu_seqlens, pooling)
