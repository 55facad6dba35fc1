"""Linear probe of frozen encoders: does further pretraining change what the representations hold
about the task, before fine-tuning can wash it in or out?

    python -m experiments.positive_control.probe --task data/task --models base=DIR task=DIR ...

Each encoder embeds the task's train and test texts (mean of the last hidden states over real
tokens, or with --pool cls the [CLS] token's, cut at --max-length); a logistic regression fitted on
train is scored on test. The encoders are never trained here, so a difference between probes is a
difference between the pretrained models alone. A diagnostic for the positive control: it separates
"the adapted encoder knows more about reviews" from "the fine-tuning recipe uses it".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import AutoModel, AutoTokenizer

from pipeline.artifacts import load_prepared
from pipeline.precision import autocast, resolve_precision


@torch.no_grad()
def embed(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64, pool: str = "mean") -> np.ndarray:
    precision = resolve_precision("auto")
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        with autocast(precision):
            hidden = model(**batch).last_hidden_state.float()
        if pool == "cls":  # the first token's state: what a BERT classification head reads (through its pooler)
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
        out.append(pooled.numpy())
    return np.concatenate(out)


def probe(model_dir: str, train, test, max_length: int, pool: str = "mean") -> dict:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32, use_kernels=False).eval()  # no Hub kernels
    start = time.time()
    x_train = embed(model, tokenizer, train["text"], max_length, pool=pool)
    x_test = embed(model, tokenizer, test["text"], max_length, pool=pool)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=0.1))
    clf.fit(x_train, train["label"])
    correct = clf.predict(x_test) == np.asarray(test["label"])
    return {"accuracy": float(correct.mean()), "correct": correct, "seconds": time.time() - start}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.positive_control.probe")
    parser.add_argument("--task", default="data/task", help="prepared task folder (train/test parquet)")
    parser.add_argument("--models", nargs="+", required=True, help="NAME=DIR; the first is the reference")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--pool", choices=["mean", "cls"], default="mean",
                        help="mean of the last hidden states over real tokens, or the first ([CLS]) token's state")
    parser.add_argument("--bootstrap", type=int, default=10_000)
    args = parser.parse_args(argv)
    train, test = load_prepared("train", args.task), load_prepared("test", args.task)
    results = {}
    for spec in args.models:
        name, _, path = spec.partition("=")
        results[name] = probe(path, train, test, args.max_length, args.pool)
    ref = next(iter(results))
    rng = np.random.default_rng(0)
    n = len(test)
    idx = rng.integers(0, n, size=(args.bootstrap, n))
    print(f"| encoder | probe accuracy % | Δ vs {ref} [95% CI] |\n|---|---:|---:|")
    for name, r in results.items():
        if name == ref:
            print(f"| {name} | {r['accuracy'] * 100:.2f} | – |")
            continue
        diff = r["correct"].astype(float) - results[ref]["correct"].astype(float)
        boot = diff[idx].mean(1)
        low, high = np.quantile(boot, [0.025, 0.975])
        print(f"| {name} | {r['accuracy'] * 100:.2f} | {diff.mean() * 100:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}] |")
    print(f"\n{len(train)} train / {n} test texts of {Path(args.task).resolve()}, first {args.max_length} tokens, "
          f"{args.pool} pooling")


if __name__ == "__main__":
    main()
