"""Per-step cost of the pipeline's three loops beyond the model's own arithmetic (issue 41), on a proxy
that needs no GPU: a tiny encoder (1 layer, hidden 32), whose forward and backward take almost nothing,
so what a step costs above a bare PyTorch loop over the same batches is the loop's own work (logging,
host syncs, callbacks, collation, the optimizer's groups). On a GPU the same fixed costs are what kept a
small encoder's steps at ~100 ms (BENCHMARKS.md).

Rows, each the mean of the steady steps (the first `--skip` of each epoch or pass left out), best of
`--rounds` rounds run in turn:
- pretrain: `pipeline.mlm.continue_pretraining` (the Trainer, seeded masks, masked-only head) against a
  bare loop (forward, backward, fused AdamW) over a DataLoader with the same blocks, sampler and collator;
- finetune: `pipeline.finetune.finetune` (length-grouped batches, dynamic padding, layer-wise groups,
  callbacks) against a bare loop over the Trainer's own train DataLoader;
- predict: `pipeline.evaluate.predict` per batch against a bare no-grad loop over the same length order;
- the data path alone (sampler + collator, no model) on one thread, examples/s.

    python bench/bench_steps.py [--train 1024 --max-length 512 --batch 32 --rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import BertForMaskedLM, BertForSequenceClassification, TrainerCallback

from common import bench_tokenizer, imdb_texts, machine, minilm_config, use_allocator
from pipeline.config import from_dict
from pipeline.encoding import dynamic_padding, encode_split
from pipeline.evaluate import predict
from pipeline.fast_dropout import fast_dropout
from pipeline.finetune import finetune
from pipeline.mlm import BatchSeededMasks, CountMasked, continue_pretraining, masked_only_head, mlm_collator, pack
from pipeline.precision import autocast, resolve_precision

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TINY = dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=128)


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


class StepClock(TrainerCallback):
    """The time at each optimizer step's end, an epoch's first steps marked so `mean_ms` can leave them out."""

    def __init__(self):
        self.epochs: list[list[float]] = []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epochs.append([])

    def on_step_end(self, args, state, control, **kwargs):
        if not self.epochs:
            self.epochs.append([])
        self.epochs[-1].append(time.perf_counter())


def mean_ms(epochs: list[list[float]], skip: int) -> float:
    """Mean ms between consecutive step ends, each epoch's first `skip` steps left out."""
    gaps = [b - a for times in epochs for a, b in zip(times[skip:], times[skip + 1:])]
    return 1000 * float(np.mean(gaps))


def bare_train(model, loader, precision: str, passes: int = 1) -> list[list[float]]:
    """forward, backward, one fused AdamW group: what a training step cannot do without."""
    model.to(DEVICE).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, fused=True)
    epochs = []
    for _ in range(passes):
        times = []
        for batch in loader:
            batch = {k: v.to(DEVICE, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast(precision):
                loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter())
        sync()
        epochs.append(times)
    return epochs


def params_for(args, precision: str):
    return from_dict({"model": {"max_length": args.max_length},
                      "train": {"precision": precision, "checkpoint_steps": 0},
                      "pretrain": {"batch_size": args.batch, "block_size": 128, "max_tokens": args.mlm_steps * args.batch * 128},
                      "finetune": {"batch_size": args.batch, "eval_batch_size": 2 * args.batch, "epochs": args.epochs,
                                   "patience": 0}})


def bench_pretrain(args, tokenizer, texts, precision, work: Path) -> dict:
    params = params_for(args, precision)
    corpus = Dataset.from_dict({"text": texts})
    config = minilm_config(vocab_size=len(tokenizer), **TINY)
    torch.manual_seed(0)
    base = BertForMaskedLM(config)
    best = {"pipeline": float("inf"), "bare": float("inf")}
    for r in range(args.rounds):
        model, clock = copy.deepcopy(base).to(DEVICE), StepClock()
        continue_pretraining(model, tokenizer, corpus, params.pretrain, params.train, work / f"mlm{r}",
                             callbacks=(clock,), phase="[bench] pipeline MLM")
        best["pipeline"] = min(best["pipeline"], mean_ms(clock.epochs, args.skip))
        model = copy.deepcopy(base)
        blocks = pack(corpus, tokenizer, 128)
        collator = CountMasked(BatchSeededMasks(mlm_collator(tokenizer, params.pretrain), 0))
        loader = DataLoader(blocks, batch_size=args.batch, shuffle=True, drop_last=True, collate_fn=collator)
        with fast_dropout(model, params.train.fast_dropout), masked_only_head(model):
            epochs = bare_train(model, loader, precision, passes=max(1, -(-args.mlm_steps // len(loader))))
        best["bare"] = min(best["bare"], mean_ms([[t for e in epochs for t in e][:args.mlm_steps]], args.skip))
    return best


def bench_finetune(args, tokenizer, data, precision, work: Path) -> tuple[dict, float]:
    params = params_for(args, precision)
    train, dev = data.select(range(args.train)), data.select(range(args.train, args.train + args.batch))
    torch.manual_seed(0)
    base = BertForSequenceClassification(minilm_config(vocab_size=len(tokenizer), num_labels=2, **TINY))
    best, data_rate = {"pipeline": float("inf"), "bare": float("inf")}, 0.0
    for r in range(args.rounds):
        model, clock = copy.deepcopy(base).to(DEVICE), StepClock()
        trainer, _, _ = finetune(model, tokenizer, train, dev, params.finetune, params.train, 0, work / f"ft{r}",
                                 callbacks=(clock,))
        best["pipeline"] = min(best["pipeline"], mean_ms(clock.epochs, args.skip))
        loader = trainer.get_train_dataloader()  # the same sampler and collator
        model = copy.deepcopy(base)
        with fast_dropout(model, params.train.fast_dropout):
            best["bare"] = min(best["bare"], mean_ms(bare_train(model, loader, precision, args.epochs), args.skip))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the data path on one core
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["input_ids"])
        data_rate = max(data_rate, n / (time.perf_counter() - start))
        torch.set_num_threads(threads)
    return best, data_rate


@torch.no_grad()
def bare_predict(model, tokenizer, encoded, batch: int, precision: str) -> np.ndarray:
    order = np.argsort(np.asarray(encoded["length"]), kind="stable")
    rows = encoded.select_columns([c for c in ("input_ids", "attention_mask", "token_type_ids")
                                   if c in encoded.column_names])
    loader = DataLoader(rows, batch_sampler=[order[i:i + batch].tolist() for i in range(0, len(order), batch)],
                        collate_fn=dynamic_padding(tokenizer))
    model.to(DEVICE).eval()
    out = []
    for b in loader:
        with autocast(precision):
            out.append(model(**{k: v.to(DEVICE) for k, v in b.items()}).logits.float().cpu())
    return torch.cat(out).numpy()


def bench_predict(args, tokenizer, data, precision, work: Path) -> dict:
    params = params_for(args, precision)
    evals = data.select(range(args.train, len(data)))
    torch.manual_seed(0)
    model = BertForSequenceClassification(minilm_config(vocab_size=len(tokenizer), num_labels=2, **TINY)).to(DEVICE)
    batches = -(-len(evals) // params.finetune.eval_batch_size)
    best = {"pipeline": float("inf"), "bare": float("inf")}
    for _ in range(args.rounds):
        sync()
        start = time.perf_counter()
        predict(model, tokenizer, evals, params.train, params.finetune.eval_batch_size, work / "predict")
        sync()
        best["pipeline"] = min(best["pipeline"], 1000 * (time.perf_counter() - start) / batches)
        start = time.perf_counter()
        bare_predict(model, tokenizer, evals, params.finetune.eval_batch_size, precision)
        sync()
        best["bare"] = min(best["bare"], 1000 * (time.perf_counter() - start) / batches)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="tokenizer directory (default: the demo encoder's)")
    ap.add_argument("--data", default=None, help="texts (.parquet or .jsonl[.gz] with `text`)")
    ap.add_argument("--train", type=int, default=1024, help="fine-tune examples (and as many predicted)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--mlm-steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=3, help="steps of each epoch left out (first use of shapes)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    precision = resolve_precision(args.precision)
    texts, source = imdb_texts(2 * args.train, **({"path": args.data} if args.data else {}))
    tokenizer, tokenizer_source = bench_tokenizer(args.model, texts)
    if DEVICE == "cpu":
        use_allocator(keep_freed=True)  # as the stages run (train.keep_freed_memory), both sides alike
    params = params_for(args, precision)
    data = encode_split(Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]}),
                        tokenizer, args.max_length, params.finetune)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = {"pretrain (MLM, 32 x 128 blocks)": bench_pretrain(args, tokenizer, texts, precision, work)}
        rows["finetune (length-grouped, dynamic padding)"], data_rate = bench_finetune(args, tokenizer, data,
                                                                                        precision, work)
        rows["predict (evaluate), per batch"] = bench_predict(args, tokenizer, data, precision, work)
    print(f"## Per-step cost above a bare PyTorch loop (tiny encoder: 1 layer, hidden 32; {precision})\n"
          f"machine: {machine()}\ntexts: {source}; tokenizer: {tokenizer_source}; {args.train} examples at "
          f"max_length {args.max_length}, batch {args.batch}; mean of steady steps, best of {args.rounds} rounds\n\n"
          f"| loop | pipeline ms/step | bare ms/step | overhead ms/step |\n|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['pipeline']:.2f} | {r['bare']:.2f} | {r['pipeline'] - r['bare']:+.2f} |")
    print(f"\ndata path alone (length-grouped sampler + dynamic-padding collator, 1 thread): {data_rate:,.0f} examples/s")


if __name__ == "__main__":
    main()
