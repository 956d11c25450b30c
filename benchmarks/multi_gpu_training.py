"""Multi-GPU training inside one job: the same model and data trained on 1 GPU and, through `accelerate
launch`, on k GPUs with the same effective batch; compares the predictions and the training throughput.

    PYTHONPATH=workflow/scripts python benchmarks/multi_gpu_training.py --arch gpt2-medium --gpus 2 \
        --batch-size 64 --micro-batch-size 64 --out multi_gpu.md
    PYTHONPATH=workflow/scripts python benchmarks/multi_gpu_training.py --arch llama-13b --lora-r 8 --lora-alpha 16 \
        --gpus 2 --n-train 1024 --n-eval 512 --epochs 1 --batch-size 32 --micro-batch-size 32 --max-length 128 \
        --lr 2e-4 --out lora.md

Three runs from one seed: 1 GPU with the configured micro-batch (the reference); 1 GPU with half that
micro-batch, i.e. the same per-GPU arithmetic as two GPUs, whose distance to the reference shows how far
float rounding alone moves a run; and k GPUs (DDP, each process taking its share of every micro-batch).
The two single-GPU runs go side by side on GPUs 0 and 1, the k-GPU run after them. The model is built from
a config with random weights and without dropout (whose masks depend on how a batch is shared out); the
task is generated: a text's label is the class of the marker words that make up a quarter of it.

With `--lora-r` the backbone is frozen and LoRA adapters (no dropout, for the same reason) train with the
head, as a model entry's `lora:` makes the workflow do; the frozen base weights are then made in bf16 on a
GPU, where the workers also hold them, so that a model of billions of parameters is built in seconds. Each
run records its peak GPU memory (the largest over its processes) from the loading of its model onwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, gather_object
from shapes import SHAPES, WORDS, save_model, texts

from w2s.atomic import write_json, write_text
from w2s.engine.losses import build_loss
from w2s.engine.modeling import ModelSpec, load_classifier, load_tokenizer
from w2s.engine.train import TrainConfig, make_accelerator, predict_proba, train_classifier
from w2s.execution.launch import launch_command

MARKERS = {1: WORDS[:20], 0: WORDS[20:40]}
DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "attention_dropout",
)
# The attention projections of each family, LoRA's usual targets.
LORA_TARGETS = {
    "bert": ["query", "key", "value"],
    "gpt2": ["c_attn"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
GIB = 2**30


def make_data(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Random texts in which a quarter of the words are markers of the label's class: a signal that a
    randomly initialised model picks up within a few dozen steps, so that predictions differ between examples."""
    labels = rng.integers(0, 2, size=n)
    rows = []
    for text, label in zip(texts(n, rng), labels):
        words = np.array(text.split(), dtype=object)
        marked = rng.random(len(words)) < 0.25
        words[marked] = rng.choice(MARKERS[label], size=int(marked.sum()))
        rows.append(" ".join(words))
    return pd.DataFrame({"id": [str(i) for i in range(n)], "text": rows, "soft_label": labels.astype(float)})


def prepare(directory: Path, arch: str, sizes: dict[str, int], lora: bool) -> None:
    (directory / "model").mkdir()
    if lora and torch.cuda.is_available():
        # A frozen LoRA base is held in bf16 on a GPU (load_classifier's choice), so it loses nothing by being
        # made so; fully trained models keep the fp32 weights made on a CPU that the earlier runs used. Seeded:
        # unseeded, two invocations on a GPU built different weights.
        torch.manual_seed(0)
        save_model(arch, directory / "model", dtype=torch.bfloat16, device="cuda")
        torch.cuda.empty_cache()
    else:
        save_model(arch, directory / "model")
    config_path = directory / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config.update({k: 0.0 for k in DROPOUT_KEYS if k in config})
    config_path.write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    for name, n in sizes.items():
        make_data(n, rng).to_json(directory / f"{name}.json", orient="records")


def lora_settings(args: argparse.Namespace) -> dict:
    """A model entry's `lora:` section for the command line's settings; empty for full finetuning."""
    if not args.lora_r:
        return {}
    targets = args.lora_targets.split(",") if args.lora_targets else LORA_TARGETS[args.arch.split("-")[0]]
    return {
        "enabled": True,
        "r": args.lora_r,
        "alpha": args.lora_alpha or 2 * args.lora_r,
        "dropout": 0.0,
        "target_modules": targets,
    }


def gpu_memory(accelerator: Accelerator) -> dict[str, float]:
    """Since the last reset: the peak GPU memory allocated and reserved (GiB), and the allocator's retries (a
    failed cudaMalloc, after which it frees its cache and synchronises: slow); each the largest over the
    processes, NaN on CPUs."""
    if accelerator.device.type == "cuda":
        mine = {
            "allocated": torch.cuda.max_memory_allocated() / GIB,
            "reserved": torch.cuda.max_memory_reserved() / GIB,
            "retries": torch.cuda.memory_stats().get("num_alloc_retries", 0),
        }
    else:
        mine = dict.fromkeys(("allocated", "reserved", "retries"), float("nan"))
    every = gather_object([mine])
    return {key: max(m[key] for m in every) for key in mine}


def worker(args: argparse.Namespace) -> None:
    """One training run: every process of a launch runs this; the main process writes the result."""
    data = {
        name: pd.read_json(args.dir / f"{name}.json", orient="records", dtype={"id": str})
        for name in ("train", "val", "test")
    }
    if args.precision == "bf16":
        accelerator = make_accelerator()
    else:
        accelerator = Accelerator(
            mixed_precision="no", kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)]
        )
    lora = lora_settings(args)
    # fp32 runs hold a LoRA base in fp32 too; otherwise load_classifier picks (bf16 for a LoRA base on a GPU).
    spec = ModelSpec(
        args.arch,
        str(args.dir / "model"),
        pooling="mean",
        dtype="float32" if args.precision == "fp32" else "auto",
        lora=lora,
    )
    on_gpu = accelerator.device.type == "cuda"
    tokenizer = load_tokenizer(spec)
    cfg = TrainConfig(
        lr=args.lr,
        head_lr=args.head_lr,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        eval_batch_size=128,
        epochs=args.epochs,
        warmup_frac=0.1,
        weight_decay=0.01,
        evals_per_epoch=1,
        select_best_on_val=True,
        max_length=args.max_length,
        compile=False,
    )
    # A few steps on a throwaway model absorb one-off costs (CUDA context, NCCL setup, kernel selection).
    warm = load_classifier(spec, device=accelerator.device).to(accelerator.device)
    train_classifier(
        warm,
        tokenizer,
        data["train"].iloc[: 3 * args.batch_size],
        None,
        build_loss("xent"),
        dataclasses.replace(cfg, max_steps=3),
        0,
        accelerator,
    )
    accelerator.free_memory()
    del warm

    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.reset_accumulated_memory_stats()
    # Seeded as a job seeds before loading (w2s.engine.finetune), so that every run starts from the same LoRA adapters.
    transformers.set_seed(0)
    model = load_classifier(spec, device=accelerator.device).to(accelerator.device)
    params = {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    info = train_classifier(model, tokenizer, data["train"], data["val"], build_loss("xent"), cfg, 0, accelerator)
    info["memory_train"] = gpu_memory(accelerator)
    # How far the adapters moved: a LoRA run whose adapters never got a gradient would still learn the head.
    info["adapter_update_norm"] = float(
        sum((p.detach() - adapters[n]).float().pow(2).sum() for n, p in model.named_parameters() if n in adapters)
        ** 0.5
    )
    start = time.perf_counter()
    preds = {
        name: predict_proba(
            model, tokenizer, data[name]["text"].tolist(), cfg.eval_batch_size, cfg.max_length, accelerator, name
        ).tolist()
        for name in ("val", "test")
    }
    info["predict_seconds"] = time.perf_counter() - start
    info["memory"] = gpu_memory(accelerator)
    if accelerator.is_main_process:
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        write_json({"info": info, "preds": preds, "device": device, "params": params}, args.result)
    accelerator.end_training()


def compare(ref: dict, run: dict, labels: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for name in ("val", "test"):
        a, b = np.asarray(ref["preds"][name]), np.asarray(run["preds"][name])
        out[f"{name}_max_abs_diff"] = float(np.abs(a - b).max())
        out[f"{name}_mean_abs_diff"] = float(np.abs(a - b).mean())
        out[f"{name}_agreement"] = float(((a > 0.5) == (b > 0.5)).mean())
        out[f"{name}_acc"] = float(((b > 0.5) == (labels[name] > 0.5)).mean())
    return out


def gib(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.1f}"


def orchestrate(args: argparse.Namespace) -> None:
    sizes = {"train": args.n_train, "val": args.n_eval, "test": 2 * args.n_eval}
    me = [sys.executable, str(Path(__file__).resolve()), "worker"]
    common = [
        "--arch",
        args.arch,
        "--precision",
        args.precision,
        "--lr",
        str(args.lr),
        "--head-lr",
        str(args.head_lr),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--max-length",
        str(args.max_length),
        "--lora-r",
        str(args.lora_r),
        "--lora-alpha",
        str(args.lora_alpha),
        "--lora-targets",
        args.lora_targets,
    ]
    lora = lora_settings(args)
    with tempfile.TemporaryDirectory(prefix="multi-gpu-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        prepare(tmp, args.arch, sizes, bool(lora))
        print(f"model built and saved, data generated in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        runs = {
            "1 GPU": (me, "0", args.micro_batch_size),
            "1 GPU, half micro-batch": (me, "1", args.micro_batch_size // 2),
            f"{args.gpus} GPUs (DDP)": (
                launch_command(args.gpus) + me[1:],
                ",".join(map(str, range(args.gpus))),
                args.micro_batch_size,
            ),
        }
        results, walls, started = {}, {}, {}
        for group in (list(runs)[:2], list(runs)[2:]):
            procs = {}
            for name in group:
                command, devices, micro = runs[name]
                result = tmp / f"{len(results) + len(procs)}.json"
                argv = command + common + ["--micro-batch-size", str(micro), "--dir", str(tmp), "--result", str(result)]
                started[name] = time.perf_counter()
                procs[name] = (subprocess.Popen(argv, env={**os.environ, "CUDA_VISIBLE_DEVICES": devices}), result)
            for name, (proc, result) in procs.items():
                if proc.wait() != 0:
                    raise SystemExit(f"{name} failed with exit code {proc.returncode}")
                walls[name] = time.perf_counter() - started[name]
                results[name] = json.loads(result.read_text())
        labels = {
            name: pd.read_json(tmp / f"{name}.json", orient="records")["soft_label"].to_numpy()
            for name in ("val", "test")
        }

    ref = results["1 GPU"]
    rows = []
    for name, run in results.items():
        info, cmp = run["info"], compare(ref, run, labels)
        rows.append(
            f"| {name} | {run['info']['num_processes']} | "
            f"{args.batch_size}/{runs[name][2]} | {info['total_steps']} | {info['chosen_step']} | "
            f"{info['train_seconds']:.1f} | {info['tokens_per_second']:,.0f} | {walls[name]:.0f} | "
            f"{gib(info['memory_train']['allocated'])} / {gib(info['memory']['allocated'])} | "
            f"{cmp['val_acc']:.4f} / {cmp['test_acc']:.4f} | "
            f"{cmp['val_max_abs_diff']:.2e} / {cmp['test_max_abs_diff']:.2e} | "
            f"{cmp['test_mean_abs_diff']:.2e} | {cmp['val_agreement']:.4f} / {cmp['test_agreement']:.4f} |"
        )
    speedup = ref["info"]["train_seconds"] / results[f"{args.gpus} GPUs (DDP)"]["info"]["train_seconds"]
    total, trainable = ref["params"]["total"], ref["params"]["trainable"]
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if lora:
        import peft

        versions += f", peft {peft.__version__}"
    title = f", LoRA r={lora['r']} alpha={lora['alpha']} on {','.join(lora['target_modules'])}" if lora else ""
    lines = [
        f"## {args.arch}, {args.precision}{title} ({datetime.now(timezone.utc):%Y-%m-%d}, {ref['device']})",
        "",
        f"Command: `PYTHONPATH=workflow/scripts python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"{versions}; {args.n_train} training examples, "
        f"{args.epochs:g} epochs, max_length {args.max_length}, mean pooling, no dropout, seed 0.",
        f"Parameters: {total:,} in all, {trainable:,} trained ({100 * trainable / total:.3f}%).",
        "",
        "| run | processes | batch/micro | steps | chosen step | train s | tokens/s | job wall s "
        "| peak GPU GiB, train / all | acc val / test "
        "| max abs diff to 1 GPU, val / test | mean abs diff, test | agreement with 1 GPU, val / test |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Training speedup, {args.gpus} GPUs over 1: {speedup:.2f}x. Train seconds exclude a 3-step warm-up run and "
        "the predictions; job wall seconds include process start, model loading, warm-up and predictions. Peak "
        "GPU memory (allocated) counts from the loading of the trained model: to the end of training, and to the "
        "end of the predictions. Reserved by the allocator in training, GiB (its retries): "
        + ", ".join(
            f"{name} {gib(run['info']['memory_train']['reserved'])} ({run['info']['memory_train']['retries']:g})"
            for name, run in results.items()
        )
        + ".",
        "",
    ]
    if lora:
        moved = ", ".join(f"{name} {run['info']['adapter_update_norm']:.3g}" for name, run in results.items())
        # Full finetuning with AdamW holds fp32 weights, gradients and two moments: 16 bytes a parameter.
        lines += [
            f"Norm of the adapters' update: {moved}. Full finetuning of this model with AdamW would hold "
            f"{16 * total / GIB:.1f} GiB of fp32 weights, gradients and Adam moments before any activation.",
            "",
        ]
    write_text("\n".join(lines), args.out)
    write_json(
        {
            name: {
                "info": run["info"],
                "params": run["params"],
                "compare": compare(ref, run, labels),
                "preds": run["preds"],
            }
            for name, run in results.items()
        },
        args.out.with_suffix(".json"),
    )
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", choices=["orchestrate", "worker"], default="orchestrate")
    parser.add_argument("--arch", choices=sorted(SHAPES), default="gpt2-medium")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=4096)
    parser.add_argument("--n-eval", type=int, default=1024)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    # The head starts at zero; at the backbone's rate it would barely move its logits in a short run.
    parser.add_argument("--head-lr", type=float, default=1e-2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--micro-batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lora-r", type=int, default=0, help="LoRA rank; 0 trains the whole model")
    parser.add_argument("--lora-alpha", type=int, default=0, help="LoRA alpha; 0 means twice the rank")
    parser.add_argument(
        "--lora-targets", default="", help="comma-separated module names; default: the arch's attention projections"
    )
    parser.add_argument("--dir", type=Path, help="worker: the prepared model and data")
    parser.add_argument("--result", type=Path, help="worker: where the main process writes its result")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multi_gpu_training.md"))
    args = parser.parse_args()
    worker(args) if args.role == "worker" else orchestrate(args)


if __name__ == "__main__":
    main()
