"""Training throughput of the engine (w2s.engine.train): tokens/s and model FLOPs utilisation (MFU).

    python benchmarks/train_throughput.py --arch gpt2-medium --steps 30 --peak-tflops 989

The model is built from a config with random weights (nothing is downloaded), and trained through the same
`train_classifier` the rules use, on generated texts with review-like lengths, so dynamic padding and
length-grouped batches are exercised as in a real run. MFU counts 6 * parameters FLOPs per trained token
(forward + backward, attention FLOPs left out), against the accelerator's dense bf16 peak given on the
command line.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers
from shapes import SHAPES, save_model, texts

from w2s.atomic import write_text
from w2s.engine.losses import build_loss
from w2s.engine.modeling import ModelSpec, load_classifier, load_tokenizer
from w2s.engine.train import TrainConfig, make_accelerator, train_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(SHAPES), default="gpt2-medium")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--micro-batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--peak-tflops", type=float, required=True, help="dense bf16 peak of the accelerator")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_throughput.md"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.steps * args.batch_size
    train = pd.DataFrame({"id": [str(i) for i in range(n)], "text": texts(n, rng), "soft_label": rng.random(n)})
    cfg = TrainConfig(
        lr=1e-5,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        eval_batch_size=64,
        epochs=1,
        warmup_frac=0.1,
        weight_decay=0.01,
        evals_per_epoch=1,
        select_best_on_val=True,
        max_length=args.max_length,
        compile=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec = ModelSpec(args.arch, str(save_model(args.arch, Path(tmp))))
        accelerator = make_accelerator()
        model = load_classifier(spec, device=accelerator.device).to(accelerator.device)
        tokenizer = load_tokenizer(spec)
        params = sum(p.numel() for p in model.parameters())
        # A short warm-up run absorbs one-off costs (CUDA context, kernel selection, allocator growth).
        train_classifier(
            model, tokenizer, train.iloc[: 2 * args.batch_size], None, build_loss("xent"), cfg, 0, accelerator
        )
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        history = train_classifier(model, tokenizer, train, None, build_loss("xent"), cfg, 0, accelerator)
        wall = time.perf_counter() - start
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    tokens_per_s = history["tokens_per_second"]
    mfu = 6 * params * tokens_per_s / (args.peak_tflops * 1e12)
    row = (
        f"| {args.arch} | {params / 1e6:.0f}M | {device} | {args.batch_size}/{args.micro_batch_size} | "
        f"{args.max_length} | {history['total_steps']} | {history['train_tokens']} | {tokens_per_s:,.0f} | "
        f"{n / wall:,.1f} | {100 * mfu:.1f}% |"
    )
    header = (
        "| arch | params | device | batch/micro | max_length | steps | tokens | tokens/s | examples/s | MFU |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"# Training throughput ({datetime.now(timezone.utc):%Y-%m-%d})",
        "",
        f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"torch {torch.__version__}, transformers {transformers.__version__}; peak {args.peak_tflops} TFLOP/s bf16;"
        " tokens are real (non-pad) tokens; bf16 autocast on GPU, fp32 on CPU.",
        "",
        header + row,
        "",
    ]
    previous = args.out.read_text() if args.out.exists() else ""
    write_text(previous + "\n".join(lines), args.out)
    print(row)


if __name__ == "__main__":
    main()
