"""The speed ratios: the pipeline's MLM step and its fine-tune + eval path, each against what the HF
example scripts do, in one process (candidates alternate round by round, best round kept).

MLM, tokens/s (MiniLM-L6-H384 shape by default). Baseline: run_mlm's step, `BertForMaskedLM(labels=...)`
in fp32 (the LM head projects every position onto the vocabulary) with fused AdamW, transformers 5's
default `optim`; glibc's allocator as it starts. Pipeline: the masked-only head (pipeline.mlm), bf16
autocast where the device has it, fused AdamW and, on CPU, fast dropout masks (pipeline.fast_dropout)
and freed memory kept (pipeline.allocator). Each path's allocator is set before its rounds, with one
untimed step (`common.use_allocator`).

Fine-tune + eval, examples/s on IMDB's length distribution. All rows run the pipeline's own code
(`finetune_arguments` + the Trainer, `evaluate.predict`): padding every text to max_length in fp32
(run_glue's default), the same at the pipeline's precision, and the pipeline's path (length-grouped
batches, dynamic padding; on CPU fast dropout and freed memory kept).

    python bench/bench_speed.py [--part mlm|finetune|both] [--batch 32 --seq 128 --steps 4 --rounds 3]
    python bench/bench_speed.py --part mlm --compile --peak-tflops 989     # GPU: + torch.compile, MFU
    python bench/bench_speed.py --part finetune [--model DIR --data FILE --train 128 --eval 256]

Retired benches (the candidates they measured are in BENCHMARKS.md) are in git history: see there.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import shutil
import tempfile
import time

import numpy as np
import torch
from datasets import Dataset
from transformers import BertForMaskedLM, BertForSequenceClassification, DataCollatorWithPadding, Trainer

from common import alternate, bench_tokenizer, imdb_texts, machine, minilm_config, report, use_allocator
from pipeline.config import from_dict
from pipeline.encoding import dynamic_padding, encode_split
from pipeline.evaluate import predict
from pipeline.fast_dropout import fast_dropout
from pipeline.finetune import finetune_arguments
from pipeline.mlm import use_masked_only_head
from pipeline.precision import autocast, resolve_precision

ON_CPU = not torch.cuda.is_available()


def masked_batch(batch: int, seq: int, vocab: int, device) -> dict:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, seq), generator=gen)
    mask = torch.rand(ids.shape, generator=gen) < 0.15
    labels = torch.where(mask, ids, -100)
    return {"input_ids": ids.masked_fill(mask, 103).to(device), "labels": labels.to(device),
            "masked_count": int(mask.sum())}


def train_flops_per_token(config, seq: int, head_fraction: float) -> float:
    """Matmul FLOPs of one training token (forward + backward = 3 x forward): the encoder layers plus
    the LM head (transform and vocabulary projection) on `head_fraction` of the positions."""
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    layer = 2 * (4 * h * h + 2 * h * i) + 4 * seq * h
    return 3 * (config.num_hidden_layers * layer + head_fraction * (2 * h * h + 2 * h * v))


def mlm_step(base, batch: dict, pipeline: bool, precision: str, swaps: contextlib.ExitStack, compile_: bool = False):
    """One optimizer step of run_mlm's path (`pipeline` False: full head, at `precision`, `--bf16` or not) or
    the pipeline's. `step.enter` sets the path's allocator and runs one untimed step: `alternate` calls it
    before each of the path's rounds."""
    model = copy.deepcopy(base).train()
    swaps.enter_context(fast_dropout(model, enabled=pipeline and ON_CPU))
    module = use_masked_only_head(model, enabled=pipeline)
    module = torch.compile(module) if compile_ else module
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    inputs = batch if pipeline else {k: v for k, v in batch.items() if k != "masked_count"}

    def step():
        with autocast(precision):
            loss = module(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def enter():
        if ON_CPU:
            use_allocator(keep_freed=pipeline)
            step()
    step.enter = enter
    return step


def bench_mlm(args) -> None:
    device, precision = ("cpu" if ON_CPU else "cuda"), resolve_precision("auto")
    torch.manual_seed(0)
    config = minilm_config(num_hidden_layers=args.layers, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                           num_attention_heads=args.heads or max(1, args.hidden // 32))
    base = BertForMaskedLM(config).to(device)
    batch = masked_batch(args.batch, args.seq, config.vocab_size, device)
    with contextlib.ExitStack() as swaps:
        # the baseline (first row): run_mlm as its users run it, fp32 on CPU (its default), `--bf16` on a GPU
        runs = (("fp32", "bf16") if ON_CPU else ("bf16", "fp32")) if precision == "bf16" else ("fp32",)
        candidates = {f"run_mlm ({p}, full head, fused AdamW)": mlm_step(base, batch, False, p, swaps) for p in runs}
        candidates[f"pipeline (masked-only head, {precision}, fused AdamW"
                   f"{', CPU fast dropout, freed memory kept' if ON_CPU else ''})"] = mlm_step(base, batch, True,
                                                                                              precision, swaps)
        if args.compile:
            candidates["pipeline + torch.compile"] = mlm_step(base, batch, True, precision, swaps, compile_=True)
        results = alternate(candidates, args.batch * args.seq, args.steps, args.rounds, warmup=2)
    report(f"MLM training, tokens/s (batch {args.batch}, seq {args.seq}, {args.layers} layers, hidden {args.hidden})",
           results, next(iter(candidates)), "tokens/s")
    if args.peak_tflops:
        masked = float((batch["labels"] != -100).float().mean())
        for name, tok_s in results.items():
            flops = train_flops_per_token(config, args.seq, 1.0 if name.startswith("run_mlm") else masked)
            print(f"- {name}: {flops / 1e9:.2f} GFLOP/token, MFU {100 * tok_s * flops / (args.peak_tflops * 1e12):.1f}% "
                  f"of {args.peak_tflops:g} TFLOP/s")


def time_finetune(tokenizer, train, evals, params, padded: bool, fast: bool, max_length: int, batch: int, work: str,
                  base: dict) -> tuple[float, float]:
    model = BertForSequenceClassification(minilm_config(num_labels=2))
    model.load_state_dict(base)
    collator = (DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
                if padded else dynamic_padding(tokenizer))
    targs = finetune_arguments(work, params.finetune, params.train, params.seed, max_steps=len(train) // batch,
                               eval_strategy="no", save_strategy="no", load_best_model_at_end=False, report_to=[],
                               logging_strategy="no", disable_tqdm=True,
                               train_sampling_strategy="random" if padded else "group_by_length")
    trainer = Trainer(model=model, args=targs, data_collator=collator,
                      train_dataset=train.select_columns(["input_ids", "attention_mask", "label", "length"]))
    start = time.perf_counter()
    with fast_dropout(model, enabled=fast):
        trainer.train()
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    predict(model, tokenizer, evals, params.train, params.finetune.eval_batch_size, work,
            pad_to=max_length if padded else None)
    return train_s, time.perf_counter() - start


def bench_finetune(args) -> None:
    texts, source = imdb_texts(args.train + args.eval, **({"path": args.data} if args.data else {}))
    tokenizer, tokenizer_source = bench_tokenizer(args.model, texts)
    precision = resolve_precision("auto")

    def params(prec: str):  # the allocator is set by hand before each row (it is process-wide)
        return from_dict({"model": {"max_length": args.max_length}, "train": {"precision": prec, "keep_freed_memory": False},
                          "finetune": {"batch_size": args.batch, "eval_batch_size": 2 * args.batch}})
    data = encode_split(Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]}),
                        tokenizer, args.max_length, params("auto").finetune)
    train, evals = data.select(range(args.train)), data.select(range(args.train, len(data)))
    torch.manual_seed(0)
    base = BertForSequenceClassification(minilm_config(num_labels=2)).state_dict()
    # (name, precision, pad to max_length, fast dropout and freed memory kept)
    rows = [("pad to max_length, fp32 (run_glue default)", "fp32", True, False),
            (f"pad to max_length, {precision}", precision, True, False),
            (f"pipeline: length-grouped, dynamic padding, {precision}"
             f"{', CPU fast dropout, freed memory kept' if ON_CPU else ''}", precision, False, ON_CPU)]
    work, results = tempfile.mkdtemp(), {}
    for name, prec, padded, cpu_path in rows[1:] if precision == "fp32" else rows:
        if ON_CPU:
            use_allocator(keep_freed=cpu_path)
        train_s, eval_s = time_finetune(tokenizer, train, evals, params(prec), padded, cpu_path, args.max_length,
                                        args.batch, work, base)
        results[name] = (args.train / train_s, args.eval / eval_s, (args.train + args.eval) / (train_s + eval_s))
    shutil.rmtree(work, ignore_errors=True)
    lengths, first = np.asarray(data["length"]), next(iter(results))
    print(f"## Fine-tune + eval, examples/s ({source}; tokenizer: {tokenizer_source}; {args.train} train / "
          f"{args.eval} eval, max_length {args.max_length}, batch {args.batch}, MiniLM-L6-H384 shape)\nmachine: {machine()}\nlengths after "
          f"truncation: mean {lengths.mean():.0f}, median {np.median(lengths):.0f}\n\n"
          f"| path | train ex/s | eval ex/s | train+eval ex/s | ratio vs {first} | ratio vs padding at {precision} "
          f"|\n|---|---:|---:|---:|---:|---:|")
    padded = results[rows[1][0]][2]  # run_glue's padding at the pipeline's precision (`--bf16` on a GPU)
    for name, (tr, ev, both) in results.items():
        print(f"| {name} | {tr:.2f} | {ev:.2f} | {both:.2f} | {both / results[first][2]:.2f}x | {both / padded:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["mlm", "finetune", "both"], default="both")
    ap.add_argument("--batch", type=int, default=0, help="per step (default: MLM 32, fine-tune 16)")
    ap.add_argument("--seq", type=int, default=128, help="MLM sequence length")
    ap.add_argument("--steps", type=int, default=4, help="MLM steps per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=0, help="default hidden/32 (MiniLM's 12); bert-base: "
                                                         "--layers 12 --hidden 768 --heads 12")
    ap.add_argument("--compile", action="store_true", help="MLM: also the pipeline step under torch.compile")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="MLM: the card's dense bf16 peak, for MFU")
    ap.add_argument("--model", default=None, help="fine-tune: tokenizer directory (default: the demo encoder's, "
                                                   "else one trained on the texts)")
    ap.add_argument("--data", default=None, help="fine-tune: texts (.parquet or .jsonl[.gz] with `text`)")
    ap.add_argument("--train", type=int, default=128)
    ap.add_argument("--eval", type=int, default=256)
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args()
    if args.part in ("mlm", "both"):
        bench_mlm(argparse.Namespace(**{**vars(args), "batch": args.batch or 32}))
    if args.part in ("finetune", "both"):
        bench_finetune(argparse.Namespace(**{**vars(args), "batch": args.batch or 16}))


if __name__ == "__main__":
    main()
