"""Which params made a prepared folder (`data/task`, `data/corpus`): recorded inside it when it is written
(`made_from.json`), checked by every stage that reads it.

DVC reruns a stage when its own params or deps change, but a stage run on its own (`dvc repro -s collect`,
`python -m stages.finetune`) after `task.dataset` or `task.seed` changed would read the previous task's split:
the leak guard would protect the old dev/test text while the new one entered the MLM corpus, and a classifier
would train on one split and be tested on another. The record makes that an error naming the stage to re-run.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import ConfigError

RECORD = "made_from.json"
# settings of collect that change how it runs, never what it writes (docs/design.md: any executor and task count
# gives the same corpus)
HOW_COLLECT_RUNS = {"executor", "num_proc", "slurm", "ray"}


def task_lineage(params) -> dict:
    """What `prepare`'s output follows from: the task section and the copy-detection settings (`dedup`)."""
    return {"task": params.task.model_dump(mode="json"), "dedup": params.dedup.model_dump(mode="json")}


def corpus_lineage(params, task_dir: str | Path = "data/task") -> dict:
    """What `collect`'s output follows from: the strategy, its draw and budget, the tokenizer, the collect and
    dedup settings that shape the corpus, and the prepared task it guarded against (its own record)."""
    return {"pretrain": {"source": params.pretrain.source, "seed": params.pretrain.seed,
                         "max_tokens": params.pretrain.max_tokens},
            "model": {"name": params.model.name},
            "collect": params.collect.model_dump(mode="json", exclude=HOW_COLLECT_RUNS),
            "dedup": params.dedup.model_dump(mode="json"),
            "task": read_lineage(task_dir)}


def read_lineage(folder: str | Path) -> dict | None:
    path = Path(folder) / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _differences(made: dict, now: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(made) | set(now)):
        a, b = made.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: made with {json.dumps(a)[:60]}, params.yaml now has {json.dumps(b)[:60]}")
    return out


def check_lineage(params, what: str, task_dir: str | Path = "data/task",
                  corpus_dir: str | Path = "data/corpus") -> None:
    """Refuse the prepared task (`what` "task") or corpus ("corpus") unless its record says it was made from
    what `params` give now; the message names the stage that writes it, to re-run."""
    folder, expected, producer = ((task_dir, task_lineage(params), "prepare") if what == "task" else
                                  (corpus_dir, corpus_lineage(params, task_dir), "collect"))
    made = read_lineage(folder)
    rerun = f"re-run `{producer}` (dvc repro {producer}; plain `dvc repro` re-runs every stage that is stale)"
    if made is None:
        raise ConfigError(f"{folder}: no {RECORD}, the record of the params it was made from (an older version, "
                          f"or made by hand); {rerun}.")
    diffs = _differences(made, expected)
    if diffs:
        task_part = [d for d in diffs if d.startswith("task.task.") or d.startswith("task.dedup.")]
        if producer == "collect" and task_part and len(task_part) == len(diffs):
            why = "the task was prepared again since the corpus was collected (its leak guard protected other text)"
        else:
            why = "params.yaml changed since"
        raise ConfigError(f"{folder} was made from other params than params.yaml's now ({why}): "
                          f"{'; '.join(diffs[:4])}{'; ...' if len(diffs) > 4 else ''}. Its data would not match "
                          f"this run's; {rerun}.")
