"""What the pipeline reads from outside the repository, by content: the `inputs` stage's record.

DVC decides what to rerun from the hashes of declared deps, but the task data and the corpus
sources are named by params (`task.dataset`, the paths in `corpora/<source>.yaml`) and may lie
anywhere: a dvc.yaml dep cannot follow a param, and a hub id is no path at all. So the first
stage, `inputs` (always run, it only hashes), writes one small JSON per consumer: the md5 and
size of every local file `prepare` / `collect` will read, or the hub id, config and split of a
hub dataset. `prepare` and `collect` depend on those files: edit a local file in place and
they, and everything downstream, rerun; leave it alone and the JSON is byte-identical, so
nothing reruns and DVC's run cache still answers for a configuration it has seen.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.config import Collect, ConfigError, Task
from pipeline.files import split_file
from pipeline.io import hash_file, write_json
from pipeline.sources import is_local_path, local_path

TASK_RECORD, CORPUS_RECORD = "data/inputs/task.json", "data/inputs/corpus.json"


def file_record(path: Path) -> dict:
    return {"path": str(path), "md5": hash_file(hashlib.md5(), path).hexdigest(), "bytes": path.stat().st_size}


def task_record(task: Task) -> dict:
    folder = local_path("task.dataset", task.dataset)
    if folder is None:
        return {"hub": task.dataset, "config": task.config, "splits": [task.train_split, task.test_split]}
    splits = (task.train_split, "dev", task.test_split)
    files = [f for s in splits if (f := split_file(folder, s))] if folder.is_dir() else []
    return {"local": str(folder), "files": [file_record(f) for f in files]}


def corpus_record(collect: Collect, source: str) -> dict:
    from pipeline.corpus_spec import TASK_SOURCE, load_spec, local_source_files

    if source == "none":
        return {"source": "none"}
    try:
        spec = load_spec(collect.corpora_dir, source)
    except ConfigError:
        return {"source": source, "spec": "unreadable"}  # `collect` reports it, with the fix
    sources = []
    for src in spec["sources"]:
        path = str(src["path"])
        if path == TASK_SOURCE:
            sources.append({"name": src["name"], "task": "train"})  # data/task, a dep of collect already
        elif is_local_path(path):
            sources.append({"name": src["name"], "files": [file_record(f) for f in local_source_files(path)]})
        else:
            sources.append({"name": src["name"], "hub": path, "config": src.get("config"), "split": src["split"]})
    return {"source": source, "sources": sources}


def write_records(task: Task, collect: Collect, source: str) -> dict:
    task_rec, corpus_rec = task_record(task), corpus_record(collect, source)
    write_json(TASK_RECORD, task_rec)
    write_json(CORPUS_RECORD, corpus_rec)
    files = task_rec.get("files", []) + [f for s in corpus_rec.get("sources", []) for f in s.get("files", [])]
    return {"local_files": len(files), "local_bytes": sum(f["bytes"] for f in files)}
