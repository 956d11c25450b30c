"""Tiny randomly initialised models built from configs, so tests never download anything."""

from __future__ import annotations

import dataclasses
import string
from pathlib import Path

from transformers import BertConfig, BertModel, BertTokenizerFast, GPT2Config, GPT2LMHeadModel

from w2s.config import schema_defaults
from w2s.engine.finetune import train_config_from
from w2s.engine.train import TrainConfig

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_vocab(directory: Path) -> Path:
    words = ["good", "bad", "great", "awful", "movie", "the", "a", "is", "was", "not", "film"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = SPECIALS + words + chars + ["##" + c for c in chars]
    path = directory / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return path


def tiny_tokenizer(directory: Path) -> BertTokenizerFast:
    directory.mkdir(parents=True, exist_ok=True)
    return BertTokenizerFast(str(write_vocab(directory)), do_lower_case=True)


def tiny_bert(directory: Path, hidden: int = 32, layers: int = 2, seed: int = 0, dropout: float = 0.1) -> Path:
    import torch

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(directory)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
        architectures=["BertModel"],
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_mpnet(directory: Path, hidden: int = 32, layers: int = 3, seed: int = 0) -> Path:
    """A tiny random MPNet (relative position bias in every block, as all-mpnet-base-v2) with the tiny BERT
    tokenizer, whose pad id it shares."""
    import torch
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(directory)
    config = MPNetConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=258,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        architectures=["MPNetModel"],
    )
    MPNetModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_gpt2(directory: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(directory)
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_embd=hidden,
        n_layer=layers,
        n_head=2,
        n_positions=256,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    # Saved as a causal LM, as decoders come from the hub; the backbone loads from it with AutoModel.
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def train_config(**fields) -> TrainConfig:
    """The training config a model entry gets from the schema's defaults, with `fields` set."""
    entry, train_section = schema_defaults()
    return dataclasses.replace(train_config_from(entry, train_section), **fields)


def tiny_decoder(directory: Path, shape: str, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A tiny random causal LM of a Llama or Qwen2 shape (rotary positions, grouped-query attention), saved
    with its language-model head; the tiny tokenizer's [CLS] serves as its BOS token."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[
        shape
    ]
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(directory)
    config = config_class(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    model_class(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
