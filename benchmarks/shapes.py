"""The model shapes, vocabulary and texts that the GPU benchmarks share: random weights of real shapes
(nothing is downloaded), a 2,005-word tokenizer, and texts of review-like lengths (lognormal, median about
150 words), so that dynamic padding and length-grouped batches are exercised as in a real run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    BertConfig,
    BertTokenizerFast,
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
    Qwen2Config,
)

WORDS = [f"w{i}" for i in range(2000)]


def _llama(hidden: int, ffn: int, layers: int, heads: int, kv_heads: int) -> Callable[[int], PretrainedConfig]:
    return lambda vocab: LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
    )


# Shape name -> config for a vocabulary size. The Llama bodies are those of Llama-3.2-1B, Llama-3-8B (7.0B
# parameters with this vocabulary) and Llama-2-13B (12.7B); qwen2-0.5b is Qwen2-0.5B's body.
SHAPES: dict[str, Callable[[int], PretrainedConfig]] = {
    "bert-base": lambda vocab: BertConfig(vocab_size=vocab, architectures=["BertModel"]),
    "gpt2": lambda vocab: GPT2Config(vocab_size=vocab),
    "gpt2-medium": lambda vocab: GPT2Config(vocab_size=vocab, n_embd=1024, n_layer=24, n_head=16),
    "gpt2-large": lambda vocab: GPT2Config(vocab_size=vocab, n_embd=1280, n_layer=36, n_head=20),
    "qwen2-0.5b": lambda vocab: Qwen2Config(
        vocab_size=vocab,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
    ),
    "llama-tiny": _llama(64, 128, 2, 4, 2),
    "llama-1b": _llama(2048, 8192, 16, 32, 8),
    "llama-8b": _llama(4096, 14336, 32, 32, 8),
    "llama-13b": _llama(5120, 13824, 40, 40, 40),
}


def word_tokenizer(directory: Path) -> BertTokenizerFast:
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast(str(vocab))


def texts(n: int, rng: np.random.Generator) -> list[str]:
    counts = np.clip(rng.lognormal(mean=5.0, sigma=0.7, size=n).astype(int), 4, 2000)
    return [" ".join(rng.choice(WORDS, size=c)) for c in counts]


def save_model(shape: str, directory: Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Path:
    """Random weights of `shape` saved with the word tokenizer, as a hub checkpoint is (decoders with their
    language-model head). They are made on `device` in `dtype`: a multi-billion-parameter model initialised
    in fp32 on a CPU would take minutes and four bytes a parameter of host memory."""
    tokenizer = word_tokenizer(directory)
    config = SHAPES[shape](tokenizer.vocab_size)
    auto = AutoModel if config.model_type == "bert" else AutoModelForCausalLM
    with torch.device(device):
        model = auto.from_config(config, dtype=dtype)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
