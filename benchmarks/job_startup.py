"""Where a training job's time goes before its first step: imports, model load, tokenization.

    python benchmarks/job_startup.py --shapes llama-1b gpt2-medium --texts 4000 --out benchmarks/results/job_startup.md

Each shape's random-weight model is saved once (float32 safetensors, as a hub checkpoint is read) with this
benchmark's word tokenizer. Then every measurement runs in a fresh Python process, as a workflow job does,
which trains one step of w2s.engine.finetune.train_model on --texts review-like texts (the workflow's
training path: tokenizer and model load, tokenization, the loop's set-up) and reports, from its info
record and the process's own clock: the seconds from the process's start to the end of its imports
(torch, transformers, accelerate, the engine), the model and tokenizer load, the tokenization of the
training texts, and the process's age when its first training step began (`startup_seconds`).

Two ways of loading are compared, each in --repeats fresh processes: "direct", the engine's (on a GPU the
weights go straight to the device in their dtype, device_map), and "host" (weights read into host memory,
then copied to the device: what the engine did before). The file system cache is warm after the save, as it
is for every job but a machine's first.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from w2s.clock import job_seconds


def child(model_dir: str, n_texts: int, variant: str) -> None:
    """One job's start: import, load, tokenize, one step; print the timings as JSON."""
    import numpy as np
    import pandas as pd
    import torch

    import w2s.engine.finetune as finetune
    from w2s.engine.modeling import ModelSpec, load_classifier
    from w2s.engine.train import TrainConfig

    imported = job_seconds()
    sys.path.insert(0, str(Path(__file__).parent))
    from shapes import texts

    if variant == "host":
        finetune.load_classifier = lambda spec, device=None: load_classifier(spec)
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"id": range(n_texts), "text": texts(n_texts, rng), "soft_label": rng.uniform(size=n_texts)})
    spec = ModelSpec("m", model_dir, max_length=512)
    cfg = TrainConfig(
        lr=1e-5,
        batch_size=32,
        micro_batch_size=8,
        eval_batch_size=64,
        epochs=1,
        max_steps=1,
        warmup_frac=0.0,
        weight_decay=0.0,
        evals_per_epoch=1,
        select_best_on_val=False,
        max_length=512,
        compile=False,
    )
    _, info = finetune.train_model(spec, cfg, train, None, seed=0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    print(
        json.dumps(
            {
                "imports_seconds": imported,
                "load_seconds": info["load_seconds"],
                "tokenize_seconds": info["tokenize_seconds"],
                "startup_seconds": info["startup_seconds"],
                "device": info["device"],
            }
        )
    )


def measure(model_dir: Path, n_texts: int, variant: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(model_dir), "--texts", str(n_texts), "--variant", variant],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"the measured job failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["llama-1b"])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child")
    parser.add_argument("--variant", choices=["direct", "host"], default="direct")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.texts, args.variant)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    rows = []
    for shape in args.shapes:
        with tempfile.TemporaryDirectory() as folder:
            from shapes import save_model

            save_model(shape, Path(folder))
            measure(Path(folder), args.texts, "direct")  # warm-up: the page cache, compiled kernels' caches
            for variant in ("host", "direct"):
                runs = [measure(Path(folder), args.texts, variant) for _ in range(args.repeats)]
                median = {k: float(sorted(r[k] for r in runs)[len(runs) // 2]) for k in runs[0] if k != "device"}
                rows.append({"shape": shape, "variant": variant, "device": runs[0]["device"], **median})
                print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/job_startup.py " + shlex.join(sys.argv[1:])
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `{command}`; median of {args.repeats} "
        f"fresh processes per row, {args.texts} training texts.",
        "",
        "| shape | loading | device | imports s | model load s | tokenize s | process start to first step s |",
        "|---|---|---|---:|---:|---:|---:|",
        *(
            f"| {r['shape']} | {r['variant']} | {r['device']} | {r['imports_seconds']:.2f} | {r['load_seconds']:.2f} "
            f"| {r['tokenize_seconds']:.2f} | {r['startup_seconds']:.2f} |"
            for r in rows
        ),
    ]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
