"""The pool a corpus is drawn from, built by datatrove: every source read, cleaned, screened against the
task's dev/test text, tokenised and near-deduplicated, on one machine or a cluster.

    stage 1, `collect.num_proc` tasks:  SourceReader -> CleanAndLength -> LeakGuard -> TokenIds
                                        -> JsonlWriter(prepared/) -> KeyedSignature(sigs/, side/)
    stage 2, one task per LSH band:     datatrove's MinhashDedupBuckets(sigs/ -> buckets/)
    stage 3, one task:                  ConfirmedCluster(buckets/ + side/ -> remove/)

The steps are in pipeline/collect_steps.py. Memory does not grow with the pool: stage 1 streams, stage
2 merges sorted band files from disk, stage 3 holds only the candidate pairs. `collect.executor` picks
where the tasks run: `local` (datatrove's local executor, `collect.num_proc` processes), `slurm` (array
jobs; `collect.slurm` holds partition, time, ...) or `ray` (`collect.ray`: the cluster address, ...).
Everything is written under a work folder that a Slurm or Ray cluster must share.

The near-duplicate rule keeps today's meaning: LSH banding from `NearIndex` (datasketch's choice for
the threshold and permutations: 9 bands x 7 rows for 0.8 / 64), every candidate confirmed by the
estimated Jaccard of the full signatures (docs/corpora.md: "Near-duplicates on datatrove").
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datatrove.pipeline.dedup import MinhashConfig, MinhashDedupBuckets
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.stats import PipelineStats

from pipeline.collect_steps import (DROP_REASONS, CleanAndLength, ConfirmedCluster, KeyedSignature, LeakGuard,
                                    SideFiles, SourceReader, TokenIds, without_signature)
from pipeline.config import Collect, ConfigError, Dedup
from pipeline.dedup import NearIndex

SLURM_POLL_SECONDS = 30
SIDE_CHUNK = 1 << 16  # side records read at a time when the pool is assembled (`kept_rows`)
# How the local executor starts its workers. fork (Linux): a worker starts as a copy-on-write view of the parent,
# so its imports cost nothing and pages it only reads count once in the tree's PSS; spawn and datatrove's
# default forkserver start a fresh interpreter that imports the steps for every stage (measured on 40,000
# documents, 2 tasks: 3.6 s more in the sign stage, 2.9 s more for the 9 tiny bucket tasks). macOS and Windows
# cannot fork safely: spawn there.
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


@dataclass
class Pool:
    """The kept documents: where their text is (`prepared/{rank:05d}.jsonl`, line `idx`), and per
    document its source index, exact-copy key, content hash and token count; `stats`: every step's counts."""
    work: Path
    rank: np.ndarray
    idx: np.ndarray
    source: np.ndarray
    key: np.ndarray
    thash: np.ndarray
    tokens: np.ndarray
    stats: dict

    def __len__(self) -> int:
        return len(self.idx)


def lsh_banding(d: Dedup) -> tuple[int, int]:
    """The LSH bands and rows of the near-duplicate index at the `dedup` section `d`'s settings."""
    lsh = NearIndex(d.near_dup_threshold, d.minhash_perm).lsh
    return lsh.b, lsh.r


def stages(spec: dict, c: Collect, d: Dedup, heldout, tokenizer, task_dir: str,
           work: Path) -> list[tuple[str, list, int]]:
    """(name, pipeline, tasks) of the three stages (`d`: the `dedup` section)."""
    bands, rows = lsh_banding(d)
    config = MinhashConfig(num_buckets=bands, hashes_per_bucket=rows, hash_config=HashConfig(precision=32))
    sources = spec["sources"]
    first = [SourceReader(sources, task_dir),
             CleanAndLength([int(s.get("min_chars", c.min_chars)) for s in sources],
                            [s.get("max_chars") for s in sources]),
             LeakGuard(heldout, d.shingle_words, d.minhash_perm),
             TokenIds(tokenizer),
             JsonlWriter(str(work / "prepared"), adapter=without_signature, compression=None),  # gzip: 10% of the stage
             KeyedSignature(str(work / "sigs"), config, str(work / "side"), d.minhash_perm)]
    return [("sign", first, c.num_proc),
            ("buckets", [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)], bands),
            ("cluster", [ConfirmedCluster(str(work / "buckets"), str(work / "side"), str(work / "remove"),
                                          d.near_dup_threshold, d.minhash_perm, [s["name"] for s in sources])], 1)]


def make_executor(c: Collect, name: str, pipeline: list, tasks: int, logs: Path, depends=None):
    """datatrove's executor for `collect.executor`, its settings from `collect.slurm` / `collect.ray`."""
    common = {"pipeline": pipeline, "tasks": tasks, "logging_dir": str(logs / name), "depends": depends,
              "skip_completed": False}  # DVC reruns the whole stage: never reuse a stale rank
    if c.executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(**common, workers=min(tasks, c.num_proc), start_method=START_METHOD)
    if c.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(**common, job_name=f"collect-{name}", **c.slurm.executor_kwargs())
    from datatrove.executor import RayPipelineExecutor

    return RayPipelineExecutor(**common, **c.ray.executor_kwargs())


@contextmanager
def stderr_to(path: Path):
    """Send this process's standard error, and that of the workers it starts, to `path`: datatrove logs every
    step's statistics to stderr (its loguru setup has no quieter level), which is not what a person reads on
    the console. Its own log files (logs/<stage>/logs/) and `path` keep them; a failed stage names both."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def run_stages(c: Collect, chain: list[tuple[str, list, int]], logs: Path) -> None:
    """Run the chain (each stage after the one before); Slurm jobs are submitted, then waited for."""
    if c.executor == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=c.ray.address, ignore_reinit_error=True)
    if c.executor == "slurm":  # sbatch returns at once: chain the jobs (afterok), then wait for the last stage
        executor = None
        for name, pipeline, tasks in chain:
            executor = make_executor(c, name, pipeline, tasks, logs, depends=executor)
        executor.run()
        done = logs / chain[-1][0] / "completions"
        while len(list(done.glob("*"))) < chain[-1][2]:
            time.sleep(SLURM_POLL_SECONDS)
    else:  # blocking executors, one stage after the other (Ray's `depends` polls every 2 minutes)
        for name, pipeline, tasks in chain:
            with stderr_to(logs / f"{name}.console.log"):
                make_executor(c, name, pipeline, tasks, logs).run()
    for name, _, tasks in chain:
        finished = len(list((logs / name / "completions").glob("*")))
        if finished < tasks:
            raise RuntimeError(f"collect: datatrove stage `{name}` finished {finished} of {tasks} tasks; "
                               f"its logs are in {logs / name}/logs and {logs / name}.console.log.")


def read_stats(logs: Path) -> dict:
    """{label: total} over every step of every stage, merged from each task's stats file (datatrove's own
    merged stats.json covers only the tasks of one call)."""
    totals: dict = {}
    for path in sorted(logs.glob("*/stats/*.json")):
        for step in PipelineStats.from_json(json.loads(path.read_text())).stats:
            for label, value in step.to_dict()["stats"].items():
                value = value["total"] if isinstance(value, dict) else value
                totals[label] = totals.get(label, 0) + value
    return totals


def kept_rows(work: Path, num_perm: int, stats: dict) -> Pool:
    """The pool: every signed document less the cluster's removals, read SIDE_CHUNK records at a time."""
    side = SideFiles(work / "side", num_perm)
    parts = {f: [] for f in ("rank", "idx", "source", "key", "thash", "tokens")}
    for rank, records in enumerate(side):
        keep = np.ones(len(records), dtype=bool)
        removals = work / "remove" / f"{rank:06d}.remove"
        if removals.exists():
            keep[np.fromfile(removals, dtype="<u4")] = False
        for lo in range(0, len(records), SIDE_CHUNK):
            chunk, mine = records[lo:lo + SIDE_CHUNK], keep[lo:lo + SIDE_CHUNK]
            idx = np.flatnonzero(mine)
            parts["rank"].append(np.full(len(idx), rank, dtype=np.int32))
            parts["idx"].append(idx.astype(np.int64) + lo)
            for f in ("source", "key", "thash", "tokens"):
                parts[f].append(chunk[f][idx])  # a copy
            side.release()
    arrays = {f: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for f, v in parts.items()}
    return Pool(work=work, stats=stats, **arrays)


def build_pool(spec: dict, c: Collect, d: Dedup, heldout, tokenizer, task_dir: str | Path, work: Path) -> Pool:
    """Run the three stages into a fresh `work` folder and return the pool (`d`: the `dedup` section)."""
    if work.exists():
        shutil.rmtree(work)  # DVC reruns the whole stage: nothing of an earlier run may be reused
    work.mkdir(parents=True)
    logs = work / "logs"
    run_stages(c, stages(spec, c, d, heldout, tokenizer, str(task_dir), work), logs)
    return kept_rows(work, d.minhash_perm, read_stats(logs))


def per_source_counts(stats: dict, name: str) -> dict:
    """One source's drops by reason, in the vocabulary of metrics/corpus.json."""
    return {r: int(stats.get(f"{r}/{name}", 0)) for r in DROP_REASONS}


def read_documents(pool: Pool, rows: np.ndarray):
    """Yield (row, {"text": ..., "input_ids": ..., "source": ...}) for the pool rows `rows`, one prepared file
    at a time (each read once, in order), so memory holds one document at a time, not the pool (and the wanted
    lines as arrays: a dict of them took about 100 bytes a drawn document)."""
    import orjson

    rows = np.asarray(rows, dtype=np.int64)
    for rank in np.unique(pool.rank[rows]):
        mine = rows[pool.rank[rows] == rank]
        by_line = np.argsort(pool.idx[mine], kind="stable")
        lines, mine = pool.idx[mine][by_line], mine[by_line]
        path, k = pool.work / "prepared" / f"{rank:05d}.jsonl", 0
        with open(path, "rb") as f:
            for line_no, line in enumerate(f):
                if line_no == lines[k]:
                    doc = orjson.loads(line)
                    yield int(mine[k]), {"text": doc["text"], "input_ids": doc["metadata"]["input_ids"],
                                         "source": doc["metadata"]["source"]}
                    k += 1
                    if k == len(lines):
                        break


def check_executor(c: Collect) -> None:
    if c.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise ConfigError("collect.executor is ray but Ray is not installed: pip install -e '.[ray]', or use "
                              "collect.executor: local.") from exc
    if c.executor == "slurm" and not c.slurm.partition:
        raise ConfigError("collect.executor is slurm but collect.slurm.partition is not set; set it in params.yaml "
                          "(and collect.slurm.time), or use collect.executor: local.")
    if c.executor == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("collect.executor is slurm but `sbatch` is not on this machine's PATH: run collect on a "
                          "Slurm login node (or one with the Slurm client), or use collect.executor: local.")
