"""Build the embedded demo (demo/imdb, demo/in_domain, demo/cross_domain) from the shared data folder.

    python demo/build_demo.py --shared ../shared/data

- demo/imdb/{train,dev,test}.jsonl.gz: the 1000 / 1000 / 1000 reviews that `prepare` draws
  from the full IMDB dataset with the default params (dev carved from train with
  task.dev_size 0.1, stratified demo subsets, task.seed 42), texts and labels as in the source.
- demo/in_domain, demo/cross_domain: seeded random samples of each source of
  corpora/local/{in_domain,cross_domain}.yaml, about 2.5x the demo's 200,000-token MLM budget
  per strategy in each source's share, so the budget is met after cleaning, dedup and the
  leak guard.
Files are written with gzip mtime 0: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKENS_PER_CHAR = 0.25  # rough WordPiece tokens per character of English text
TARGET_TOKENS = 500_000  # per strategy: 2.5x the demo budget


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        for row in rows:
            gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    shared = Path(args.shared)
    from pipeline.config import from_dict
    from pipeline.data import load_prepared, prepare_task

    with tempfile.TemporaryDirectory() as tmp:
        prepare_task(from_dict({"task": {"dataset": str(shared / "imdb")}}).task, tmp)
        for split in ("train", "dev", "test"):
            ds = load_prepared(split, tmp)
            write_jsonl_gz(ROOT / "demo/imdb" / f"{split}.jsonl.gz",
                           [{"text": t, "label": y} for t, y in zip(ds["text"], ds["label"])])
    rng = random.Random(42)
    for strategy in ("in_domain", "cross_domain"):
        spec = yaml.safe_load((ROOT / "corpora/local" / f"{strategy}.yaml").read_text())
        total = sum(s["weight"] for s in spec["sources"])
        for src in spec["sources"]:
            paths = sorted(shared.parent.glob(src["path"].replace("../shared/", "")))
            rows = [r for p in paths for r in read_jsonl_gz(p)]
            rng.shuffle(rows)
            budget, taken, chars = TARGET_TOKENS * src["weight"] / total / TOKENS_PER_CHAR, [], 0
            for r in rows:
                if chars >= budget:
                    break
                taken.append({"text": r["text"]})
                chars += len(r["text"])
            write_jsonl_gz(ROOT / "demo" / strategy / f"{src['name']}.jsonl.gz", taken)
            print(f"{strategy}/{src['name']}: {len(taken)} of {len(rows)} documents, {chars:,} characters")


if __name__ == "__main__":
    main()
