"""MLM training tokens/s: the run_mlm-equivalent step vs the pipeline's step, in one process.

Baseline (what run_mlm does): `BertForMaskedLM(labels=...)` in fp32 (the LM head projects every
position onto the vocabulary), fused torch AdamW: `TrainingArguments`' default `optim` in
transformers 5 is `adamw_torch_fused` (transformers 4's was `adamw_torch`, foreach, timed as a
second row).
Pipeline: `pipeline.mlm.use_masked_only_head` (LM head on masked positions only), bf16 autocast via
`pipeline.distributed.autocast` where the device has bf16, fused AdamW, and on CPU
`pipeline.fast_dropout` (dropout masks from 16 random bits per value) and freed memory kept for reuse
(`pipeline.allocator`: glibc's mallopt, switched before each round by `common.use_allocator`, with one
warm step, so that run_mlm keeps glibc's default in the same process); optionally torch.compile. Same
model shape (MiniLM-L6-H384 by default), batch, sequence length, data.

    python bench/bench_mlm.py [--batch 32 --seq 128 --steps 6 --rounds 3 --compile]
    python bench/bench_mlm.py --variants --compile-modes default max-autotune-no-cudagraphs   # issue 18's candidates
    python bench/bench_mlm.py --allocator      # both paths with and without freed memory kept (a 2 x 2)
    python bench/bench_mlm.py --baseline-alone # run_mlm's rows only, glibc untouched: the one-process switch's check
    python bench/bench_mlm.py --profile 3      # where the pipeline step's CPU time goes, by kind of op
    python bench/bench_mlm.py --profile 3 --shapes 12 [--glibc]   # and by op and tensor shape
    python bench/bench_mlm.py --stage 30       # the real training path (continue_pretraining: Trainer, collator,
                                               # seeded masks) against the bench's step, same process
"""

from __future__ import annotations

import argparse
import contextlib
import copy
from pathlib import Path

import torch
from transformers import BertForMaskedLM

from common import alternate, machine, minilm_config, report, use_allocator
from pipeline.precision import autocast, resolve_precision
from pipeline.fast_dropout import fast_dropout
from pipeline.mlm import use_masked_only_head


def masked_batch(batch: int, seq: int, vocab: int, device, generator) -> dict:
    ids = torch.randint(1000, vocab, (batch, seq), generator=generator)
    labels = torch.full_like(ids, -100)
    mask = torch.rand(ids.shape, generator=generator) < 0.15
    labels[mask] = ids[mask]
    ids = ids.masked_fill(mask, 103)
    return {"input_ids": ids.to(device), "labels": labels.to(device), "masked_count": int(mask.sum())}


def train_flops_per_token(config, seq: int, head_fraction: float) -> float:
    """Matmul FLOPs of one training token (forward + backward = 3 x forward): encoder layers
    (QKV/O projections, FFN, attention scores and values) plus the LM head (transform and vocabulary
    projection) on `head_fraction` of the positions."""
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    layer = 2 * (4 * h * h + 2 * h * i) + 4 * seq * h
    head = 2 * h * h + 2 * h * v
    return 3 * (config.num_hidden_layers * layer + head_fraction * head)


def make_step(module, optimizer, batches: list[dict], precision: str, keep_freed: bool | None = None):
    """One optimizer step over `batches` (more than one: gradient accumulation). `keep_freed` picks the
    C allocator (`common.use_allocator`): True as the pipeline does on CPU, False glibc's steady state
    (what run_mlm gets), None leaves it alone. So that each path keeps its own in one process,
    `step.enter` (which `alternate` calls before each round) switches it and then runs one untimed
    step: every round is timed in its path's steady state. With None, `enter` does nothing."""
    def enter():
        if keep_freed is not None:
            use_allocator(keep_freed)
            step()

    def step():
        for batch in batches:
            with autocast(precision):
                out = module(**batch)
            (out.loss / len(batches)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    step.enter = enter
    return step


# torch.profiler op names -> what they are, for the profile's share table (first match wins)
OP_KINDS = (("matrix products", ("addmm", "mm", "bmm", "matmul", "linear", "baddbmm")),
            ("optimizer step", ("adam", "_foreach")),
            ("dropout", ("bernoulli", "dropout", "fast_dropout", "random_")),
            ("softmax / log-softmax", ("softmax",)),
            ("layer norm", ("layer_norm",)),
            ("GELU", ("gelu",)),
            ("dtype casts and copies", ("_to_copy", "copy_", "to", "clone", "contiguous")),
            ("embeddings and gathers", ("embedding", "index", "gather", "masked_select", "nonzero")),
            ("elementwise (add, mul, div, where, fill)", ("add", "mul", "div", "where", "fill", "sum", "mean",
                                                          "sub", "neg", "sqrt", "pow", "exp", "log")))


def op_kind(name: str) -> str:
    key = name.removeprefix("aten::").lower()
    for kind, needles in OP_KINDS:
        if any(key == n or key.startswith(n) or n in key for n in needles):
            return kind
    return "other"


def profile(step, steps: int, shapes: int = 0) -> str:
    """Self CPU time of each kind of op over `steps` calls of `step` (after 2 warm-up calls); with
    `shapes`, also the `shapes` largest (op, input shapes) entries with their time per call."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step.enter()  # the step's allocator setting, and a first untimed step
    step()
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=bool(shapes)) as prof:
        for _ in range(steps):
            step()
    shares: dict[str, float] = {}
    for evt in prof.key_averages():
        if evt.key.startswith("aten::") or evt.key.startswith("Optimizer") or "dropout" in evt.key:
            shares[op_kind(evt.key)] = shares.get(op_kind(evt.key), 0.0) + evt.self_cpu_time_total
    total = sum(shares.values())
    lines = [f"CPU time of {steps} pipeline steps: {total / 1e6:.2f} s (self time of aten ops)", "",
             "| what | share of CPU time |", "|---|---:|"]
    lines += [f"| {k} | {v / total:.0%} |" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])]
    top = sorted((e for e in prof.key_averages() if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    lines += ["", "top ops: " + ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in top[:8])]
    if shapes:
        by_shape = sorted((e for e in prof.key_averages(group_by_input_shape=True) if e.key.startswith("aten::")),
                          key=lambda e: -e.self_cpu_time_total)
        lines += ["", "| op | input shapes | calls per step | ms per call | share of CPU time |", "|---|---|---:|---:|---:|"]
        lines += [f"| `{e.key}` | {' '.join(str(x) for x in e.input_shapes if x)} | {e.count / steps:g} | "
                  f"{e.self_cpu_time_total / e.count / 1e3:.1f} | {e.self_cpu_time_total / total:.1%} |"
                  for e in by_shape[:shapes]]
    return "\n".join(lines)


def stage_vs_step(base, step, args, vocab_size: int) -> None:
    """tokens/s of `continue_pretraining` on packed random-word text, next to the bench step's (best of
    `args.rounds` rounds before and after it). The stage's figure is its own `tokens_per_second`:
    Trainer start-up, the collator's seeded masks and the data loader included, packing not."""
    import os
    import tempfile

    from datasets import Dataset
    from transformers import BertTokenizerFast

    from pipeline.config import from_dict
    from pipeline.mlm import continue_pretraining

    os.environ.setdefault("WANDB_MODE", "disabled")  # a bench is not a tracked run
    words = [f"w{i}" for i in range(vocab_size - 5)]
    with tempfile.TemporaryDirectory() as tmp:
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
        tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
        rng = torch.Generator().manual_seed(0)
        n_words = args.stage * args.batch * args.seq + 10 * args.seq
        ids = torch.randint(1000, len(words), (n_words,), generator=rng).tolist()
        texts = [" ".join(words[i] for i in ids[k:k + 500]) for k in range(0, n_words, 500)]
        params = from_dict({"pretrain": {"max_tokens": args.stage * args.batch * args.seq, "block_size": args.seq,
                                         "batch_size": args.batch, "lr": 5e-5},
                            "train": {"checkpoint_steps": 0}})
        tokens = args.batch * args.seq
        before = alternate({"step": step}, tokens, args.steps, args.rounds, warmup=2)["step"]
        stats = continue_pretraining(copy.deepcopy(base).train(), tokenizer, Dataset.from_dict({"text": texts}),
                                     params.pretrain, params.train, Path(tmp) / "work")
        after = alternate({"step": step}, tokens, args.steps, args.rounds, warmup=0)["step"]
    bench = (before + after) / 2
    print(f"\nmachine: {machine()}\n\n| path | tokens/s | ratio vs the bench step |\n|---|---:|---:|\n"
          f"| bench: pipeline step (best of {args.rounds} rounds before: {before:,.0f}, after: {after:,.0f}) | "
          f"{bench:,.0f} | 1.00 |\n| pretrain stage: `continue_pretraining`, {stats['steps']} steps of "
          f"{args.batch} x {args.seq} | {stats['tokens_per_second']:,.0f} | {stats['tokens_per_second'] / bench:.2f} |")


class _NoStep:
    """An optimizer stand-in that only clears gradients: times forward + backward alone."""

    def __init__(self, opt):
        self.opt = opt

    def step(self):
        pass

    def zero_grad(self, set_to_none: bool = True):
        self.opt.zero_grad(set_to_none=set_to_none)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=0, help="attention heads (default hidden/32: MiniLM's 12 at 384; "
                                                         "bert-base: --layers 12 --hidden 768 --heads 12)")
    ap.add_argument("--peak-tflops", type=float, default=0.0,
                    help="the card's dense bf16 peak, for model FLOPs utilisation (H100 SXM: 989)")
    ap.add_argument("--compile", action="store_true", help="also time the pipeline path under torch.compile")
    ap.add_argument("--components", action="store_true", help="also time masked-only and bf16 alone")
    ap.add_argument("--variants", action="store_true",
                    help="issue 18's candidates: the model kept in bf16, larger per-step batches at the same tokens "
                         "per optimizer step, the optimizer step left out (its cost)")
    ap.add_argument("--compile-modes", nargs="*", default=[], metavar="MODE",
                    help="also time the pipeline path under torch.compile(mode=MODE) for each MODE")
    ap.add_argument("--stage", type=int, default=0, metavar="STEPS",
                    help="only compare `pipeline.mlm.continue_pretraining` (what the pretrain stage runs) over STEPS "
                         "steps with the bench's pipeline step, timed before and after it")
    ap.add_argument("--shapes", type=int, default=0, metavar="N",
                    help="with --profile: also the N largest ops by input shape (which tensors the time goes to)")
    ap.add_argument("--allocator", action="store_true",
                    help="also time run_mlm with freed memory kept and the pipeline with glibc's default allocator "
                         "(the pipeline keeps freed memory on CPU, train.keep_freed_memory; run_mlm does not)")
    ap.add_argument("--baseline-alone", action="store_true",
                    help="time only run_mlm's rows, with the allocator as glibc starts it (no mallopt, no pipeline "
                         "rows in this process): what the one-process bench's switch to glibc must reproduce")
    ap.add_argument("--glibc", action="store_true",
                    help="with --profile: profile the pipeline step with the allocator left as glibc starts it "
                         "(freed memory not kept; this process only runs the profile)")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="only profile STEPS pipeline steps (torch.profiler) and print the share of each kind of op")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = resolve_precision("auto")
    torch.manual_seed(0)
    config = minilm_config(num_hidden_layers=args.layers, hidden_size=args.hidden,
                           num_attention_heads=args.heads or max(1, args.hidden // 32), intermediate_size=4 * args.hidden)
    base = BertForMaskedLM(config).to(device)
    gen = torch.Generator().manual_seed(0)
    batch = masked_batch(args.batch, args.seq, config.vocab_size, device, gen)
    double = masked_batch(2 * args.batch, args.seq, config.vocab_size, device, gen)
    halves = [{k: v[:args.batch] if torch.is_tensor(v) else v for k, v in double.items()},
              {k: v[args.batch:] if torch.is_tensor(v) else v for k, v in double.items()}]
    for half in halves:
        half["masked_count"] = int((half["labels"] != -100).sum())
    double["masked_count"] = int((double["labels"] != -100).sum())

    def standard(b: dict) -> dict:
        return {k: v for k, v in b.items() if k != "masked_count"}  # what the standard forward takes

    keep_swaps = contextlib.ExitStack()  # holds the fast-dropout swaps for the whole run
    on_cpu = device == "cpu"

    def build(masked_only: bool, prec: str, fused: bool, compile_: bool | str = False, fast: bool = False,
              batches: list[dict] | None = None, dtype=None, optimizer: bool = True, keep: bool | None = True):
        model = copy.deepcopy(base).train()
        if dtype is not None:
            model.to(dtype)
        keep_swaps.enter_context(fast_dropout(model, enabled=fast))
        module = use_masked_only_head(model, enabled=masked_only)
        if compile_:
            module = torch.compile(module, **({"mode": compile_} if isinstance(compile_, str) else {}))
        opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=fused or None)
        batches = batches or [batch]
        if not optimizer:  # forward and backward only: the optimizer step's cost is the difference
            opt = _NoStep(opt)
        step = make_step(module, opt, batches if masked_only else [standard(b) for b in batches], prec,
                         keep_freed=keep if on_cpu else None)
        step.work = sum(b["input_ids"].numel() for b in batches)
        return step

    if args.stage:
        stage_vs_step(base, build(True, precision, True, fast=on_cpu), args, config.vocab_size)
        return
    if args.profile:
        print(f"machine: {machine()}\n")
        print(profile(build(True, precision, True, fast=on_cpu, keep=None if args.glibc else True), args.profile, args.shapes))
        return

    # every row but run_mlm's keeps freed memory on CPU, as the pipeline does (train.keep_freed_memory)
    alone = args.baseline_alone  # run_mlm in a process of its own: glibc's allocator untouched
    candidates = {"run_mlm baseline (fp32, full head, fused AdamW)": build(False, "fp32", True, keep=None if alone else False),
                  "run_mlm as in transformers 4 (foreach AdamW)": build(False, "fp32", False, keep=None if alone else False)}
    if alone:
        report(f"run_mlm alone in this process, glibc's allocator untouched, tokens/s (batch {args.batch}, seq "
               f"{args.seq})", alternate(candidates, args.batch * args.seq, args.steps, args.rounds, warmup=2),
               next(iter(candidates)), "tokens/s")
        return
    if args.components:
        candidates["masked-only head, fp32"] = build(True, "fp32", True)
        candidates[f"full head, {precision}"] = build(False, precision, True)
    candidates[f"masked-only head, {precision}, fused AdamW"] = build(True, precision, True)
    pipeline = f"pipeline (masked-only head, {precision}, fused AdamW{', CPU fast dropout' if on_cpu else ''})"
    if on_cpu:
        candidates[pipeline] = build(True, precision, True, fast=True)
    if args.compile:
        candidates["pipeline + torch.compile"] = build(True, precision, True, compile_=True, fast=on_cpu)
    for mode in args.compile_modes:
        candidates[f"pipeline + torch.compile(mode={mode})"] = build(True, precision, True, compile_=mode, fast=on_cpu)
    if args.allocator and on_cpu:
        candidates["run_mlm baseline, freed memory kept (as the pipeline does)"] = build(False, "fp32", True, keep=True)
        candidates[f"{pipeline}, glibc's default allocator"] = build(True, precision, True, fast=True, keep=False)
    if args.variants:
        candidates["pipeline, model held in bf16 (no fp32 master, no casts: the most bf16 weights can give)"] = \
            build(True, precision, True, fast=on_cpu, dtype=torch.bfloat16)
        candidates[f"pipeline, {2 * args.batch} rows per step as 2 x {args.batch} accumulated"] = \
            build(True, precision, True, fast=on_cpu, batches=halves)
        candidates[f"pipeline, {2 * args.batch} rows per step as 1 x {2 * args.batch}"] = \
            build(True, precision, True, fast=on_cpu, batches=[double])
        candidates["pipeline without the optimizer step (its cost)"] = \
            build(True, precision, True, fast=on_cpu, optimizer=False)
    tokens = args.batch * args.seq
    results = alternate(candidates, tokens, args.steps, args.rounds, warmup=2)
    report(f"MLM training, tokens/s (batch {args.batch}, seq {args.seq}, {args.layers} layers, "
           f"hidden {args.hidden})", results, next(iter(candidates)), "tokens/s")
    if args.peak_tflops:
        masked = float((batch["labels"] != -100).float().mean())
        print(f"\nModel FLOPs utilisation vs {args.peak_tflops:g} TFLOP/s (each path's own FLOPs: the full head "
              f"decodes every position, the masked-only head {masked:.1%} of them):")
        for name, tok_s in results.items():
            flops = train_flops_per_token(config, args.seq, 1.0 if name.startswith("run_mlm") or "full head" in name
                                          else masked)
            print(f"- {name}: {flops / 1e9:.2f} GFLOP/token, {tok_s * flops / 1e12:.1f} TFLOP/s, "
                  f"MFU {100 * tok_s * flops / (args.peak_tflops * 1e12):.1f}%")


if __name__ == "__main__":
    main()
