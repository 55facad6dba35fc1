"""A second labelled task from the shared data: Amazon product-review polarity (Blitzer et al. 2007).

`../shared/data/in_domain/blitzer_amazon_reviews.jsonl.gz` holds the 8,000 labelled reviews of the
Multi-Domain Sentiment Dataset without their labels, but in a documented order (the data README and
`build_data.py`: books, dvd, electronics, kitchen; in each, the 1,000 negative then the 1,000
positive reviews, no record dropped). The label is therefore the record's position: block
`i // 1000`, negative when the block number is even. This script checks that layout (8,000 records)
and writes a task folder the pipeline reads like any local task:

    python -m experiments.tasks.amazon --out experiments/tasks/amazon   # train / test .jsonl.gz

A stratified, seeded 75/25 split per product domain: 6,000 train and 2,000 test reviews. Used by
issue 14's patience runs as the "other task" (`experiments/patience.sh`). The texts are short
(a title and a review, median about 130 words) next to IMDB's.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

from pipeline.io import atomic_file

DOMAINS = ("books", "dvd", "electronics", "kitchen")
PER_FILE = 1000


def labelled(source: Path) -> list[dict]:
    with gzip.open(source, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    if len(texts) != 2 * len(DOMAINS) * PER_FILE:
        raise SystemExit(f"{source}: {len(texts)} records, expected {2 * len(DOMAINS) * PER_FILE} "
                         "(4 domains x negative/positive x 1,000 in build_data.py's order); the labels "
                         "cannot be recovered from positions. Rebuild it with ../shared/data/build_data.py.")
    return [{"text": t, "label": (i // PER_FILE) % 2, "domain": DOMAINS[i // (2 * PER_FILE)]}
            for i, t in enumerate(texts)]


def split(records: list[dict], test_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train, test = [], []
    for start in range(0, len(records), PER_FILE):      # one (domain, polarity) block at a time
        block = records[start:start + PER_FILE]
        idx = list(range(len(block)))
        rng.shuffle(idx)
        n_test = round(len(block) * test_fraction)
        test += [block[i] for i in sorted(idx[:n_test])]
        train += [block[i] for i in sorted(idx[n_test:])]
    return train, test


def write(path: Path, records: list[dict]) -> None:
    with atomic_file(path) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"text": r["text"], "label": r["label"]}) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=Path("../shared/data/in_domain/blitzer_amazon_reviews.jsonl.gz"))
    ap.add_argument("--out", type=Path, default=Path("experiments/tasks/amazon"))
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)
    train, test = split(labelled(args.source), args.test_fraction, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "train.jsonl.gz", train)
    write(args.out / "test.jsonl.gz", test)
    print(f"{args.out}: train {len(train)}, test {len(test)} (labels 0/1 balanced in every product domain)")


if __name__ == "__main__":
    main()
