"""Fine-tune and eval examples/s on IMDB's real length distribution: length-grouped batches with
dynamic padding (the pipeline) vs padding every text to max_length, in one process.

All rows run the pipeline's own code (`pipeline.finetune.finetune_arguments` + the Trainer for training,
`pipeline.evaluate.predict` for evaluation), the same model, data and batch size. Two baselines
pad every text to max_length: one in fp32 (what run_glue does by default), one at the pipeline's
precision (bf16 where the device has it), so the gain of length grouping alone is shown too.
On CPU the last row is the pipeline's full path: length grouping plus `train.fast_dropout`
(dropout masks from 16 random bits per value, pipeline/fast_dropout.py) and `train.keep_freed_memory`
(glibc keeps freed memory for the next step, pipeline/allocator.py); the other rows run with glibc's
default allocator, set before each row, as run_glue has it.

    python bench/bench_finetune.py [--model DIR] [--data FILE] [--train 128 --eval 256 --max-length 512]
    python bench/bench_finetune.py --allocator   # also padding with freed memory kept, and the pipeline without
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding, Trainer

from common import machine, minilm_config, use_allocator
from imdb_sample import OFFLINE_MODEL, imdb_texts
from pipeline.config import from_dict
from pipeline.precision import resolve_precision
from pipeline.evaluate import predict
from pipeline.fast_dropout import fast_dropout
from pipeline.encoding import dynamic_padding, encode_split
from pipeline.finetune import finetune_arguments


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(OFFLINE_MODEL), help="tokenizer (and weights) directory")
    ap.add_argument("--train", type=int, default=128)
    ap.add_argument("--eval", type=int, default=256)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--only", type=int, default=None, help="run only row N (0-based) of the table: to time each "
                                                             "path in its own process and check for order effects")
    ap.add_argument("--allocator", action="store_true",
                    help="also time padding with freed memory kept, and the pipeline's path with glibc's default "
                         "allocator (train.keep_freed_memory false)")
    ap.add_argument("--data", default=None, help="texts to use (.parquet or .jsonl[.gz] with `text`); "
                                                 "default: IMDB train from the shared data folder")
    args = ap.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    texts, source = imdb_texts(args.train + args.eval, **({"path": args.data} if args.data else {}))
    # the allocator is set by hand before each row (the setting is process-wide): off in training_arguments
    params = from_dict({"model": {"max_length": args.max_length}, "train": {"keep_freed_memory": False},
                        "finetune": {"batch_size": args.batch, "eval_batch_size": 2 * args.batch}})
    fp32 = from_dict({"model": {"max_length": args.max_length},
                      "train": {"precision": "fp32", "keep_freed_memory": False},
                      "finetune": {"batch_size": args.batch, "eval_batch_size": 2 * args.batch}})
    precision = resolve_precision("auto")
    data = encode_split(Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]}),
                        tokenizer, params.model.max_length, params.finetune)
    train, evals = data.select(range(args.train)), data.select(range(args.train, len(data)))
    lengths = np.asarray(data["length"])
    torch.manual_seed(0)
    base = BertForSequenceClassification(minilm_config(num_labels=2)).state_dict()
    work = tempfile.mkdtemp()
    results = {}
    on_cpu = not torch.cuda.is_available()
    # (name, pad to max_length, params, fast dropout, keep freed memory)
    rows = [(f"pad to max_length, {precision}", True, params, False, False),
            (f"length-grouped, dynamic padding, {precision}", False, params, False, False)]
    if on_cpu:  # the pipeline's CPU path: cheaper dropout masks, freed memory kept (train.fast_dropout, keep_freed_memory)
        if args.allocator:
            rows.append((f"pad to max_length, {precision}, freed memory kept", True, params, False, True))
            rows.append((f"length-grouped, dynamic padding, {precision}, CPU fast dropout", False, params, True, False))
        rows.append((f"pipeline: length-grouped, dynamic padding, {precision}, CPU fast dropout, freed memory kept",
                     False, params, True, True))
    if precision != "fp32":
        rows.insert(0, ("pad to max_length, fp32 (run_glue default)", True, fp32, False, False))
    if args.only is not None:
        rows = [rows[args.only]]
    for name, padded, run_params, fast, keep in rows:
        if on_cpu:
            use_allocator(keep)
        model = BertForSequenceClassification(minilm_config(num_labels=2))
        model.load_state_dict(base)
        collator = (DataCollatorWithPadding(tokenizer, padding="max_length", max_length=args.max_length)
                    if padded else dynamic_padding(tokenizer))
        targs = finetune_arguments(work, run_params.finetune, run_params.train, run_params.seed,
                              max_steps=args.train // args.batch, eval_strategy="no",
                              save_strategy="no", load_best_model_at_end=False, report_to=[],
                              logging_strategy="no", disable_tqdm=True,
                              train_sampling_strategy="random" if padded else "group_by_length")
        trainer = Trainer(model=model, args=targs, train_dataset=train.select_columns(
            ["input_ids", "attention_mask", "label", "length"]), data_collator=collator)
        start = time.perf_counter()
        with fast_dropout(model, enabled=fast):
            trainer.train()
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        predict(model, tokenizer, evals, run_params.train, run_params.finetune.eval_batch_size, work,
                pad_to=args.max_length if padded else None)
        eval_s = time.perf_counter() - start
        results[name] = (args.train / train_s, args.eval / eval_s, (args.train + args.eval) / (train_s + eval_s))
    shutil.rmtree(work, ignore_errors=True)
    first = rows[0][0]
    base_name = f"pad to max_length, {precision}" if f"pad to max_length, {precision}" in results else first
    print(f"## Fine-tune + eval, examples/s ({source}; {args.train} train / {args.eval} eval examples, "
          f"max_length {args.max_length}, batch {args.batch}, MiniLM-L6-H384 shape)")
    print(f"machine: {machine()}")
    print(f"lengths after truncation: mean {lengths.mean():.0f}, median {np.median(lengths):.0f}, "
          f"{(np.asarray(data['full_length']) > args.max_length).mean():.1%} truncated\n")
    print(f"| path | train ex/s | eval ex/s | train+eval ex/s | ratio vs {base_name} | ratio vs {first} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (tr, ev, both) in results.items():
        print(f"| {name} | {tr:.2f} | {ev:.2f} | {both:.2f} | {both / results[base_name][2]:.2f}x | "
              f"{both / results[first][2]:.2f}x |")


if __name__ == "__main__":
    main()
