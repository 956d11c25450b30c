"""Activation extraction throughput (CPU or GPU): length-sorted batches vs one example at a time.

    python benchmarks/activation_throughput.py resources/models/all-mpnet-base-v2 \
        --texts resources/data/imdb.parquet --n 512

Both modes share one loaded model, the same layers and the same texts, so the ratio is the gain from
batching alone. The features of the two modes are compared too, as a check that batching changes nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers

from w2s.atomic import write_text
from w2s.engine.activations import FrozenBackbone
from w2s.engine.batching import tokenize

WORDS = "the a movie film was is not good bad great awful plot actor scene ending story and but very".split()


def generated_texts(n: int, rng: np.random.Generator) -> list[str]:
    """Review-like lengths: log-normal word counts (median about 150, long right tail)."""
    counts = np.clip(rng.lognormal(mean=5.0, sigma=0.7, size=n).astype(int), 1, 2000)
    return [" ".join(rng.choice(WORDS, size=c)) for c in counts]


def load_texts(path: str | None, n: int, seed: int) -> tuple[list[str], str]:
    rng = np.random.default_rng(seed)
    if path is None:
        return generated_texts(n, rng), "generated (log-normal word counts)"
    texts = pd.read_parquet(path, columns=["text"])["text"]
    if len(texts) < n:
        raise SystemExit(f"{path} has {len(texts)} texts, fewer than --n {n}")
    return texts.iloc[rng.choice(len(texts), size=n, replace=False)].tolist(), f"{path} (random {n}, seed {seed})"


def timed(backbone: FrozenBackbone, texts: list[str], max_length: int, batch_size: int):
    start = time.perf_counter()
    acts = backbone.extract(texts, max_length, batch_size)
    return acts, time.perf_counter() - start


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model directory (save_pretrained layout)")
    parser.add_argument("--texts", help="a parquet with a `text` column; default: generated texts")
    parser.add_argument("--n", type=int, default=256, help="number of texts (default 256)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--layers", type=int, nargs="+", help="hidden_states indices (default: the middle layer)")
    parser.add_argument("--pooling", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--out", default="benchmarks/results/activation_throughput.md", help="markdown file the report is appended to"
    )
    args = parser.parse_args()

    texts, source = load_texts(args.texts, args.n, args.seed)
    backbone = FrozenBackbone.load(args.model, args.layers, args.pooling, device=args.device)
    n_tokens = sum(len(t) for t in tokenize(backbone.tokenizer, texts, args.max_length))
    # Untimed warm-up: the first forward passes pay for lazy initialisation and memory allocation.
    backbone.extract(texts[: args.batch_size], args.max_length, args.batch_size)

    batched, t_batched = timed(backbone, texts, args.max_length, args.batch_size)
    single, t_single = timed(backbone, texts, args.max_length, 1)
    max_diff = max(float(np.abs(batched[layer] - single[layer]).max()) for layer in backbone.layers)

    config = backbone.model.config
    rows = [("batched, length-sorted", args.batch_size, t_batched), ("one at a time", 1, t_single)]
    table = "\n".join(
        f"| {mode} | {bs} | {t:.2f} | {len(texts) / t:.1f} | {n_tokens / t:.0f} |" for mode, bs, t in rows
    )
    where = torch.cuda.get_device_name() if backbone.device.type == "cuda" else "CPU"
    report = f"""# Activation extraction throughput ({where})

- command: `python {shlex.join(sys.argv)}`
- date: {datetime.now(timezone.utc).isoformat(timespec="seconds")}
- machine: {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; \
torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}
- model: `{args.model}` ({config.model_type}, {config.num_hidden_layers} layers, hidden {config.hidden_size}); \
layers kept {backbone.layers}, pooling {backbone.pooling}
- texts: {source}; N = {len(texts)}, max_length = {args.max_length}, \
{n_tokens / len(texts):.1f} tokens per text on average

| mode | batch size | seconds | examples/s | tokens/s |
|---|---|---|---|---|
{table}

Speed-up from batching: {t_single / t_batched:.2f}x. Largest difference between the two modes' features: {max_diff:.2e}.
"""
    previous = Path(args.out).read_text() + "\n" if Path(args.out).exists() else ""
    write_text(previous + report, args.out)
    print(report)


if __name__ == "__main__":
    main()
