"""Tokenisation docs/s: the pipeline's batched `datasets.map` with the fast tokenizer and
exact truncation (`pipeline.finetune.encode_split`), num_proc 1 and 2, vs a plain loop that
tokenises one example at a time, in one process on the same texts.

    python bench/bench_tokenize.py [--model DIR] [--docs 5000]
"""

from __future__ import annotations

import argparse
import time

import tempfile

from datasets import Dataset, disable_caching, enable_caching
from transformers import AutoTokenizer

from common import machine
from imdb_sample import OFFLINE_MODEL, imdb_texts
from pipeline.config import from_dict
from pipeline.encoding import encode_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(OFFLINE_MODEL))
    ap.add_argument("--docs", type=int, default=5000)
    args = ap.parse_args()
    disable_caching()  # time the work, not a cache hit
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    texts, source = imdb_texts(args.docs)
    params = from_dict({"model": {"max_length": 512}})
    ds = Dataset.from_dict({"text": texts, "label": [0] * len(texts)})

    start = time.perf_counter()
    loop = [tokenizer(t, truncation=True, max_length=512)["input_ids"] for t in texts]
    results = {"per-example loop": len(texts) / (time.perf_counter() - start)}
    for num_proc in (1, 2):
        start = time.perf_counter()
        encoded = encode_split(ds,
                               tokenizer, params.model.max_length, params.finetune,
                               num_proc=num_proc if num_proc > 1 else None)
        results[f"pipeline: batched map, num_proc {num_proc}"] = len(texts) / (time.perf_counter() - start)
    assert [x for x in encoded["input_ids"]] == loop  # head truncation: identical ids
    # A rerun (same data file, same tokenizer and params) finds the datasets cache by fingerprint.
    enable_caching()
    with tempfile.TemporaryDirectory() as tmp:
        ds.to_parquet(f"{tmp}/d.parquet")
        encode_split(Dataset.from_parquet(f"{tmp}/d.parquet", cache_dir=tmp),
                     tokenizer, params.model.max_length, params.finetune)
        start = time.perf_counter()
        encode_split(Dataset.from_parquet(f"{tmp}/d.parquet", cache_dir=tmp),
                     tokenizer, params.model.max_length, params.finetune)
        results["pipeline: rerun (datasets cache hit)"] = len(texts) / (time.perf_counter() - start)
    print(f"## Tokenisation, docs/s ({source}, {args.docs} docs, max_length 512)")
    print(f"machine: {machine()}\n")
    print("| path | docs/s | ratio vs loop |\n|---|---:|---:|")
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} | {value / results['per-example loop']:.2f}x |")


if __name__ == "__main__":
    main()
