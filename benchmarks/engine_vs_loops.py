"""The training engine against a plain loop and an OAI-style loop, side by side on one GPU, on the same shapes
and data: steady-state tokens/s, MFU, peak memory and time to the first step; and the engine's inference
against its training on the same shapes and texts.

    python benchmarks/engine_vs_loops.py --shapes gpt2-medium qwen2-0.5b llama-1b llama-8b-lora
    python benchmarks/engine_vs_loops.py --shapes llama-1b --loops engine --inference defaults tokens=65536,packing

Models are built from configs with random weights on the GPU (nothing is downloaded or written to disk), with
this benchmark's 2,005-word vocabulary; texts have review-like lengths (lognormal, median about 150 words,
truncated at 512 tokens). Every loop trains a classifier (w2s.engine.modeling.Classifier) on the same
effective batches of 32 examples (w2s.engine.batching.length_grouped_batches, one seed):

- engine: w2s.engine.train.train_classifier, once per set of options given by --variants: "defaults"
  (micro-batches of 32 examples, padded), or a comma-separated list of tokens=N (micro_batch_tokens),
  packing, and compile=K (compile with K buckets);
- plain: 30 lines of the usual loop: bf16 autocast, the batch padded to its longest example, one forward per
  batch, fused AdamW;
- OAI-style: as openai/weak-to-strong trains: no autocast (float32 weights compute in float32), one example
  per forward, gradients accumulated over the batch, Adam.

Timing never makes the host wait for the device: a CUDA event is recorded after every optimizer step and
read at the end. Time to first step runs from the start of the loop (tokenization and any compilation
included) to the end of the first step. Steady state is the real (non-pad) tokens of the steps after
--warmup over their time. MFU counts per real token 6 x the non-embedding parameters (forward 2, backward
4), or, with LoRA, 4 x the frozen non-embedding parameters (forward and input gradients; frozen weights get
no weight gradient) + 6 x the trainable ones; attention scores (sequence-length-squared terms), embedding
lookups and pad tokens are not counted; the denominator is the dense bf16 peak given by --peak-tflops.

Inference (--inference): the engine's predictions (w2s.engine.train.predict_token_ids, as the workflow
predicts and validates) over every text, once as warm-up and once timed (the host waits for the device at
both ends), with the options of each --inference entry: "defaults" (eval_batch_size 64 examples a forward,
padded), or tokens=N (eval_batch_tokens) with packing, compile=K (through the layers compiled as training
compiles them, in K buckets of inference's own; the first pass compiles) and rows=N (eval_batch_size).
Its MFU counts 2 x the non-embedding parameters per real token (the forward alone). With --tables, each is
also timed table by table (the texts cut into tables of those fractions, as a job predicts on its splits one
after another) against one pass over all of them.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import peft
import torch
import transformers
from shapes import SHAPES, texts, word_tokenizer
from transformers import AutoModel

from w2s.atomic import write_text
from w2s.engine.batching import collate, length_grouped_batches, tokenize
from w2s.engine.losses import build_loss
from w2s.engine.modeling import ModelSpec, build_classifier
from w2s.engine.packing import enable_packing, pack
from w2s.engine.train import TrainConfig, compile_blocks, make_accelerator, predict_token_ids, train_classifier

LORA = {"enabled": True, "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
# Shapes trained with LoRA on a bf16 base, by the shape whose body they have.
LORA_SHAPES = {"llama-8b-lora": "llama-8b"}
SHAPE_NAMES = sorted([*SHAPES, *LORA_SHAPES])


def build(shape: str, vocab_size: int, device: torch.device, seed: int = 0):
    """A classifier on a random backbone of `shape`, as the engine loads one (bf16 base under LoRA)."""
    lora = shape in LORA_SHAPES
    config = SHAPES[LORA_SHAPES.get(shape, shape)](vocab_size)
    torch.manual_seed(seed)
    with torch.device(device):
        backbone = AutoModel.from_config(config, dtype=torch.bfloat16 if lora else torch.float32)
    spec = ModelSpec(shape, "(random weights)", lora=LORA if lora else {})
    return build_classifier(backbone, spec).to(device)


def flops_per_token(model) -> float:
    embeddings = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    weights = [p for p in model.parameters() if id(p) not in embeddings]
    trainable = sum(p.numel() for p in weights if p.requires_grad)
    frozen = sum(p.numel() for p in weights if not p.requires_grad)
    return 6 * trainable + 4 * frozen


class StepClock:
    """A CUDA event after every optimizer step, read at the end, so that timing never stalls the host; and
    the number of graphs torch.compile has made by each step."""

    def __init__(self):
        self.events: list[torch.cuda.Event] = []
        self.graphs: list[int] = []
        self.graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        self.start = torch.cuda.Event(enable_timing=True)
        self.start.record()

    def tick(self) -> None:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        self.events.append(event)
        self.graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])

    def result(self, step_tokens: list[int], warmup: int) -> dict:
        torch.cuda.synchronize()
        measured = len(self.events) - 1 - warmup
        seconds = self.events[warmup].elapsed_time(self.events[-1]) / 1000
        return {
            "first_step_s": self.start.elapsed_time(self.events[0]) / 1000,
            "steps": measured,
            "seconds": seconds,
            "tokens_per_s": sum(step_tokens[warmup + 1 : warmup + 1 + measured]) / seconds,
            "graphs": self.graphs[-1] - self.graphs_before,
            "graphs_measured": self.graphs[-1] - self.graphs[warmup],
        }


def patched_step(clock: StepClock, after: Callable[[int], None] | None = None):
    """AdamW.step, ticking `clock` after each call (the engine builds its optimizer itself)."""
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        clock.tick()
        if after is not None:
            after(len(clock.events))
        return out

    return original, step


def xent(logits: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
    target = torch.stack([1 - p1, p1], dim=-1)
    return -(target * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def run_engine(model, tokenizer, train: pd.DataFrame, cfg: TrainConfig, profile_steps: int):
    """The engine's run of cfg.max_steps steps, the last `profile_steps` of them under the profiler."""
    clock = StepClock()
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
    measured_end = cfg.max_steps - profile_steps

    def control(done: int) -> None:
        if profile_steps and done == measured_end:
            torch.cuda.synchronize()
            profiler.__enter__()
        if profile_steps and done == cfg.max_steps:
            torch.cuda.synchronize()
            profiler.__exit__(None, None, None)

    original, step = patched_step(clock, control)
    torch.optim.AdamW.step = step
    try:
        train_classifier(model, tokenizer, train, None, build_loss("xent"), cfg, 0, make_accelerator())
    finally:
        torch.optim.AdamW.step = original
    profiled_seconds = None
    if profile_steps:
        torch.cuda.synchronize()
        profiled_seconds = clock.events[measured_end - 1].elapsed_time(clock.events[-1]) / 1000
    clock.events = clock.events[:measured_end]
    clock.graphs = clock.graphs[:measured_end]
    return clock, (profiler, profiled_seconds) if profile_steps else None


def variant_options(variant: str, tokens_field: str, compiles: bool) -> dict:
    """TrainConfig fields of a comma-separated variant: "tokens=N" sets `tokens_field`, "packing" packs,
    "compile=K" (where `compiles`) compiles with K buckets, "defaults" sets nothing."""
    options = {}
    for item in variant.split(","):
        name, _, value = item.partition("=")
        if name == "tokens":
            options[tokens_field] = int(value)
        elif name == "packing":
            options["packing"] = True
        elif name == "compile" and compiles:
            options.update(compile=True, compile_buckets=int(value))
        elif name != "defaults":
            raise ValueError(f"unknown option {item!r} in {variant!r}")
    return options


def inference_options(variant: str) -> dict:
    """TrainConfig fields of an --inference entry ("defaults": none): tokens=N (eval_batch_tokens), packing,
    compile=K (the layers compiled, the forwards in K buckets) and rows=N (eval_batch_size, by default 64:
    under compile, the most examples a forward holds)."""
    rows = [item for item in variant.split(",") if item.startswith("rows=")]
    rest = ",".join(item for item in variant.split(",") if not item.startswith("rows=")) or "defaults"
    return {
        "eval_batch_size": int(rows[-1].partition("=")[2]) if rows else 64,
        "compile": False,
        **variant_options(rest, "eval_batch_tokens", compiles=True),
    }


def inference_layout(cfg: TrainConfig, ids) -> tuple[int, float]:
    """The forwards of one inference pass over `ids`, and the share of their laid-out tokens that is real."""
    batching = cfg.inference_batching()
    lengths = np.sort([len(t) for t in ids])[::-1]
    order = np.argsort([-len(t) for t in ids], kind="stable")
    forwards = batching.split(np.arange(len(ids)), lengths, 1)
    laid_out = sum(batching.layout([ids[order[i]] for i in f], 0, 1)["input_ids"].numel() for f in forwards)
    return len(forwards), int(lengths.sum()) / laid_out


def run_inference(model, ids, pad_id: int, cfg: TrainConfig, tables: list[float], profile: bool) -> dict:
    """Seconds of one timed pass of the engine's predictions over `ids` (after a warm-up pass, which under
    compile compiles); with `tables`, of the same texts predicted table by table; with `profile`, a further
    pass under the profiler; and the predictions. Under compile, also the eager predictions of the same
    forwards."""
    accelerator = make_accelerator()
    if cfg.packing:
        enable_packing(model)
    # A random head rather than the zero one a classifier starts with, so that predictions differ from 1/2
    # and the check against eager predictions means something.
    torch.manual_seed(1)
    torch.nn.init.normal_(model.head.weight, std=model.head.in_features**-0.5)
    predictions = []

    def timed(parts) -> float:
        torch.cuda.synchronize()
        started = time.perf_counter()
        for part in parts:
            predictions.append(predict_token_ids(model, part, pad_id, cfg.inference_batching(), accelerator, "infer"))
        torch.cuda.synchronize()
        return time.perf_counter() - started

    result = {}
    if cfg.compile:
        # The same bucketed forwards, before the layers are compiled.
        eager = predict_token_ids(model, ids, pad_id, cfg.inference_batching(), accelerator, "eager")
        compile_blocks(model, cfg.compile_buckets)
        started = time.perf_counter()
        timed([ids])
        result["compile_seconds"] = time.perf_counter() - started
        result["eager"] = eager
    else:
        timed([ids])
    result["seconds"] = timed([ids])
    result["predictions"] = predictions[-1]
    if tables:
        ends = np.cumsum(np.round(np.array(tables) / sum(tables) * len(ids)).astype(int))
        result["table_seconds"] = timed([ids[a:b] for a, b in zip([0, *ends[:-1]], ends)])
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profiler:
            seconds = timed([ids])
        result["profile"] = (profiler, seconds)
    return result


def gap(p: np.ndarray, q: np.ndarray) -> str:
    """The largest and the mean absolute difference of two prediction vectors."""
    return f"{np.abs(p - q).max():.1e} / {np.abs(p - q).mean():.1e}"


def layout_efficiency(cfg: TrainConfig, ids, batches) -> float:
    """Real tokens over the tokens the engine lays out (padding, pad tails and throwaway rows included)."""
    micro_batching = cfg.micro_batching()
    real = laid_out = 0
    for batch in batches:
        lengths = np.array([len(ids[i]) for i in batch])
        real += int(lengths.sum())
        for micro in micro_batching.split(batch, lengths, 1):
            laid_out += micro_batching.layout([ids[i] for i in micro], 0, 1)["input_ids"].numel()
    return real / laid_out


def run_plain(
    model, tokenizer, texts: list[str], labels, batches, lr: float, micro: int, warmup: int, seconds: float | None
) -> StepClock:
    """The plain loop over `batches`, `micro` examples per forward; with `seconds`, it stops once it has
    measured that long after warm-up."""
    device = next(model.parameters()).device
    clock = StepClock()
    ids, pad_id = tokenize(tokenizer, texts, 512), tokenizer.pad_token_id
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, fused=True)
    model.train()
    for batch in batches:
        for part in (batch[i : i + micro] for i in range(0, len(batch), micro)):
            inputs = {k: v.to(device) for k, v in collate([ids[i] for i in part], pad_id).items()}
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(**inputs)
            (xent(logits, labels[part].to(device)) * len(part) / len(batch)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.tick()
        if seconds is not None and len(clock.events) == warmup + 1:
            measuring = time.perf_counter()
        if seconds is not None and len(clock.events) > warmup + 1 and time.perf_counter() - measuring > seconds:
            break
    return clock


def run_oai(model, tokenizer, texts: list[str], labels, batches, lr: float, seconds: float) -> StepClock:
    device = next(model.parameters()).device
    clock = StepClock()
    ids, pad_id = tokenize(tokenizer, texts, 512), tokenizer.pad_token_id
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    started = time.perf_counter()
    for batch in batches:
        for i in batch:
            inputs = {k: v.to(device) for k, v in collate([ids[i]], pad_id).items()}
            (xent(model(**inputs), labels[i : i + 1].to(device)) / len(batch)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.tick()
        if time.perf_counter() - started > seconds and len(clock.events) >= 3:
            break
    return clock


def kernel_profile(profiler, seconds: float, top: int = 12) -> list[str]:
    """Where the device time of the profiled steps (`seconds` of wall time) goes: kernel families and the top
    kernels."""
    families = {
        "matrix products (GEMM)": ("gemm", "cutlass", "sm90_xmma", "nvjet", "cublas"),
        "attention (flash)": ("flash",),
        "optimizer (fused AdamW)": ("fused_adam", "adam"),
        "compiled fused kernels (triton)": ("triton",),
        "copies and casts": ("copy", "memcpy", "to_copy", "cast", "convert"),
    }
    averages = profiler.key_averages()
    rows = [(e.key, e.self_device_time_total, e.count) for e in averages if e.self_device_time_total > 0]
    total = sum(t for _, t, _ in rows)
    split: dict[str, float] = {}
    for name, t, _ in rows:
        family = next((f for f, keys in families.items() if any(k in name.lower() for k in keys)), "other elementwise")
        split[family] = split.get(family, 0.0) + t
    lines = [
        f"Kernels ran {total / 1e6:.3f} s of the {seconds:.3f} s these steps took ({100 * total / 1e6 / seconds:.0f}%"
        " busy; the rest the device waited for the host).",
        "",
        "| kernel family | share of kernel time |",
        "|---|---|",
    ]
    lines += [f"| {f} | {100 * t / total:.1f}% |" for f, t in sorted(split.items(), key=lambda x: -x[1])]
    lines += ["", "| top kernels | calls | share |", "|---|---|---|"]
    for name, t, count in sorted(rows, key=lambda r: -r[1])[:top]:
        lines.append(f"| `{name[:90]}` | {count} | {100 * t / total:.1f}% |")
    return lines


def gpu_checks(tokenizer, device) -> list[str]:
    """Packed attention on the GPU (FlashAttention's variable-length kernel, bf16) against padded SDPA:
    logits and gradients of a tiny Llama, with the layout that compile buckets give (a pad tail and empty
    segments) and without."""
    rng = np.random.default_rng(1)
    ids = [list(rng.integers(5, 2000, size=n)) for n in rng.integers(1, 60, size=12)]
    lines = ["| layout | max abs Δ logits | ‖Δ grad‖ / ‖grad‖ |", "|---|---|---|"]
    for name, layout in {
        "packed, exact": lambda: pack(ids, 0, 64),
        "packed, tail + empty segments": lambda: pack(ids, 0, 1024, length=1024, segments=20),
    }.items():
        results = []
        for packed in (False, True):
            model = build("llama-tiny", tokenizer.vocab_size, device)
            model.eval()
            torch.nn.init.normal_(model.head.weight)
            if packed:
                enable_packing(model)
            inputs = layout() if packed else collate(ids, 0)
            inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(**inputs)[: len(ids)].float()
            logits.sum().backward()
            grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            results.append((logits.detach(), grad))
        (ref, ref_grad), (got, got_grad) = results
        error = (got_grad - ref_grad).norm() / ref_grad.norm()
        lines.append(f"| {name} | {(got - ref).abs().max().item():.2e} | {error.item():.2e} |")
    return lines


def engine_options(variant: str) -> dict:
    """TrainConfig fields of a --variants entry ("defaults": none): tokens=N, packing, compile=K."""
    return {"compile": False, **variant_options(variant, "micro_batch_tokens", compiles=True)}


def free() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=SHAPE_NAMES, default=["llama-1b"])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["defaults", "tokens=16384,packing", "tokens=8192,packing,compile=8"],
        help="engine option sets: defaults, or e.g. tokens=16384,packing,compile=8",
    )
    parser.add_argument("--loops", nargs="+", default=["engine", "plain", "oai"], choices=["engine", "plain", "oai"])
    parser.add_argument("--steps", type=int, default=100, help="measured steps after warm-up")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--oai-seconds", type=float, default=15.0, help="the OAI-style loop's measuring time")
    parser.add_argument("--plain-seconds", type=float, default=None, help="a cap on the plain loop's measuring time")
    parser.add_argument("--plain-micro-batch", type=int, default=32, help="the plain loop's examples per forward")
    parser.add_argument(
        "--profile",
        nargs="*",
        default=[],
        help="shape:variant pairs to profile for 5 steps; shape:infer:variant to profile an inference pass",
    )
    parser.add_argument(
        "--inference", nargs="*", default=[], help="inference option sets: defaults, or e.g. tokens=65536,packing"
    )
    parser.add_argument(
        "--tables", nargs="*", type=float, default=[], help="with --inference, also time these fractions table by table"
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the accelerator")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/engine_vs_loops.md"))
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch_size, max_length, lr = 32, 512, 1e-5
    total = 1 + args.warmup + args.steps
    rng = np.random.default_rng(0)
    n = total * batch_size
    frame = pd.DataFrame({"id": [str(i) for i in range(n)], "text": texts(n, rng), "soft_label": rng.random(n)})
    tmp = tempfile.TemporaryDirectory()
    tokenizer = word_tokenizer(Path(tmp.name))
    ids = tokenize(tokenizer, frame["text"].tolist(), max_length)
    lengths = [len(t) for t in ids]
    labels = torch.tensor(frame["soft_label"].to_numpy(dtype=np.float32))
    # The engine's first epoch: BatchStream draws length_grouped_batches from a generator seeded with the seed.
    batches = length_grouped_batches(lengths, batch_size, np.random.default_rng(0))[:total]
    step_tokens = [int(sum(lengths[i] for i in b)) for b in batches]
    print(f"{n} examples, {np.mean(lengths):.0f} tokens on average, {np.mean(step_tokens):.0f} per step", flush=True)

    lines = [f"## GPU check: packed vs padded ({torch.cuda.get_device_name()})", "", *gpu_checks(tokenizer, device), ""]
    print("\n".join(lines), flush=True)
    table = [
        "| shape | loop | options | tokens/s | MFU | peak memory | time to first step | measured | compiled graphs "
        "(in window) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    profiles = []
    inference = [
        "| shape | options | tokens/s | MFU (forward) | x best engine training | peak memory | forwards; real share | "
        "p(class 1) vs the first entry, max / mean abs difference | table by table |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shape in args.shapes:
        best_training = 0.0
        runs = []
        if "engine" in args.loops:
            runs += [("engine", v) for v in args.variants]
        runs += [(loop, "") for loop in ("plain", "oai") if loop in args.loops]
        for loop, variant in runs:
            free()
            torch.cuda.reset_peak_memory_stats()
            model = build(shape, tokenizer.vocab_size, device)
            per_token = flops_per_token(model)
            try:
                if loop == "engine":
                    profile_steps = 5 if f"{shape}:{variant}" in args.profile else 0
                    options = engine_options(variant)
                    cfg = TrainConfig(
                        lr=lr,
                        batch_size=batch_size,
                        micro_batch_size=batch_size,
                        eval_batch_size=64,
                        epochs=1,
                        max_steps=total + profile_steps,
                        warmup_frac=0.1,
                        weight_decay=0.01,
                        evals_per_epoch=1,
                        select_best_on_val=False,
                        max_length=max_length,
                        **options,
                    )
                    clock, profiled = run_engine(model, tokenizer, frame, cfg, profile_steps)
                    if profiled is not None:
                        profiles.append((f"{shape}, engine {variant}", kernel_profile(*profiled)))
                    options = f"{variant}; {100 * layout_efficiency(cfg, ids, batches):.0f}% of laid-out tokens real"
                elif loop == "plain":
                    texts_ = frame["text"].tolist()
                    micro = args.plain_micro_batch
                    clock = run_plain(
                        model, tokenizer, texts_, labels, batches, lr, micro, args.warmup, args.plain_seconds
                    )
                    options = f"bf16 autocast, padded, micro-batch {micro}, fused AdamW"
                else:
                    clock = run_oai(model, tokenizer, frame["text"].tolist(), labels, batches, lr, args.oai_seconds)
                    options = "no autocast, 1 example per forward, Adam"
                warmup = args.warmup if loop != "oai" else 1
                r = clock.result(step_tokens, warmup)
            except Exception as error:  # one failing loop must not cost the others' numbers
                print(f"{shape} {loop} {variant}: {type(error).__name__}: {error}", flush=True)
                table.append(f"| {shape} | {loop} | {variant} | failed: {type(error).__name__} | | | | | |")
                del model
                continue
            mfu = per_token * r["tokens_per_s"] / (args.peak_tflops * 1e12)
            peak = torch.cuda.max_memory_allocated() / 2**30
            row = (
                f"| {shape} | {loop} | {options} | {r['tokens_per_s']:,.0f} | {100 * mfu:.1f}% | {peak:.1f} GiB | "
                f"{r['first_step_s']:.1f} s | {r['steps']} steps, {r['seconds']:.1f} s | "
                f"{r['graphs']} ({r['graphs_measured']}) |"
            )
            table.append(row)
            print(row, flush=True)
            if loop == "engine":
                best_training = max(best_training, r["tokens_per_s"])
            del model
        reference = None
        for variant in args.inference:
            free()
            torch.cuda.reset_peak_memory_stats()
            model = build(shape, tokenizer.vocab_size, device)
            forward_flops = flops_per_token(model) / 3 if shape not in LORA_SHAPES else None
            cfg = TrainConfig(
                lr=lr,
                batch_size=batch_size,
                micro_batch_size=batch_size,
                epochs=1,
                warmup_frac=0.1,
                weight_decay=0.01,
                evals_per_epoch=1,
                select_best_on_val=False,
                max_length=max_length,
                **inference_options(variant),
            )
            try:
                profile = f"{shape}:infer:{variant}" in args.profile
                r = run_inference(model, ids, tokenizer.pad_token_id, cfg, args.tables, profile)
                if profile:
                    profiles.append((f"{shape}, inference {variant}", kernel_profile(*r["profile"])))
            except Exception as error:  # one failing run must not cost the others' numbers
                print(f"{shape} inference {variant}: {type(error).__name__}: {error}", flush=True)
                inference.append(f"| {shape} | {variant} | failed: {type(error).__name__} | | | | | | |")
                del model
                continue
            rate = sum(lengths) / r["seconds"]
            forwards, real = inference_layout(cfg, ids)
            mfu = f"{100 * forward_flops * rate / (args.peak_tflops * 1e12):.1f}%" if forward_flops else "n/a (LoRA)"
            ratio = f"{rate / best_training:.2f}x" if best_training else "(no training run)"
            by_table = (
                f"{sum(lengths) / r['table_seconds']:,.0f} tokens/s ({r['table_seconds'] / r['seconds']:.2f}x the time)"
                if "table_seconds" in r
                else ""
            )
            compiled = (
                f"; first pass {r['compile_seconds']:.1f} s (compiles); vs eager: {gap(r['predictions'], r['eager'])}"
                if cfg.compile
                else ""
            )
            if reference is None:
                reference = r["predictions"]
            row = (
                f"| {shape} | {variant}{compiled} | {rate:,.0f} | {mfu} | {ratio} | "
                f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB | {forwards}; {100 * real:.0f}% | "
                f"{gap(r['predictions'], reference)} | {by_table} |"
            )
            inference.append(row)
            print(row, flush=True)
            del model
    device_name = torch.cuda.get_device_name()
    out = [
        f"# Engine vs plain and OAI-style loops ({datetime.now(timezone.utc):%Y-%m-%d}, {device_name})",
        "",
        f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; "
        f"MFU against {args.peak_tflops:g} TFLOP/s dense bf16; effective batch {batch_size}, max_length "
        f"{max_length}, {np.mean(lengths):.0f} real tokens per example and {np.mean(step_tokens):.0f} per step "
        f"on average; warm-up {args.warmup} steps (OAI-style: 1), then up to {args.steps} steps "
        f"(OAI-style: {args.oai_seconds:g} s).",
        "",
        *table,
        "",
        *(["## Inference", "", *inference, ""] if args.inference else []),
        *lines,
    ]
    for title, rows in profiles:
        when = "a pass after the timed ones" if ", inference " in title else "5 steps after the measured ones"
        out += [f"## Profile: {title} ({when})", "", *rows, ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text("\n".join(out) + "\n", args.out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
