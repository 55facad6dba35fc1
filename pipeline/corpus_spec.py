"""Corpus definitions (`corpora/<source>.yaml`): reading and checking one, the local files a source
names, the sources that must never be there (the task's text outside task.yaml, its test split
anywhere), and loading one source as a `text` column."""

from __future__ import annotations

import glob
from pathlib import Path

from datasets import Dataset, concatenate_datasets, load_dataset
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from pipeline.config import ConfigError, Float, Task, load_yaml
from pipeline.files import LOCAL_FORMATS, load_local_file
from pipeline.sources import OFFLINE_HELP, is_local_path, local_or_hub, local_path

TASK_SOURCE = "task:train"  # a source path that means: the prepared task train split


class SourceSpec(BaseModel):
    """One entry of a corpus definition's `sources`, typed and bounded like params.yaml (pydantic)."""
    model_config = ConfigDict(extra="forbid")
    path: StrictStr  # hub id, local file, glob or directory; `task:train` in task.yaml
    name: StrictStr | None = None  # default: the path's file name
    config: StrictStr | None = None  # hub dataset config
    split: StrictStr = "train"  # hub split
    text_field: StrictStr | list[StrictStr] = "text"  # a list: the fields joined with newlines
    weight: Float = Field(1.0, gt=0, allow_inf_nan=False)  # share of the budget, relative (params.yaml's Float)
    licence: StrictStr | None = None
    min_chars: StrictInt | None = Field(None, ge=0)  # default: collect.min_chars
    max_chars: StrictInt | None = Field(None, gt=0)


SOURCE_KEYS = set(SourceSpec.model_fields)


def check_source(src, where: str) -> dict:
    """One source entry validated (SourceSpec) and filled in, or a ConfigError naming the key and the fix."""
    if not isinstance(src, dict) or "path" not in src:
        raise ConfigError(f"{where}: each source needs a `path` (hub id, local file, glob or directory).")
    try:
        spec = SourceSpec.model_validate(src)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{where}: unknown key `{key}`; known: {', '.join(sorted(SOURCE_KEYS))}.") from None
        raise ConfigError(f"{where}: `{key}` is {err.get('input')!r}: {err['msg'].lower()}; fix `{key}` "
                          f"(weight: a positive finite number; min_chars, max_chars: whole numbers; text_field: "
                          f"a field name or a list of them).") from None
    if isinstance(spec.text_field, list) and not spec.text_field:
        raise ConfigError(f"{where}: `text_field` is an empty list; name the field (or fields) that hold the text.")
    out = spec.model_dump(exclude_none=True)
    out["name"] = spec.name or Path(spec.path.rstrip("/")).name.split(".")[0] or where.rsplit("[", 1)[-1].rstrip("]")
    out["where"] = where
    return out


def load_spec(corpora_dir: str | Path, source: str) -> dict:
    """Read and validate `corpora_dir/<source>.yaml`."""
    path = Path(corpora_dir) / f"{source}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: corpus definition for pretrain.source `{source}` not found; create it or "
                          f"set collect.corpora_dir to the folder that has it.")
    spec = load_yaml(path) or {}
    sources = spec.get("sources") if isinstance(spec, dict) else None
    if not isinstance(sources, list) or not sources:
        raise ConfigError(f"{path}: `sources` must be a non-empty list of sources (each with `path`).")
    sources = spec["sources"] = [check_source(src, f"{path}: sources[{i}]") for i, src in enumerate(sources)]
    names = [s["name"] for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: source names must be unique, got {names}; set `name` on each source.")
    spec["path"] = str(path)
    return spec


def local_source_files(path: str, where: str = "path") -> list[Path]:
    """The files a local source names: a file, the data files of a directory, or a glob's matches."""
    p = local_path("path", path)
    try:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if any(f.name.endswith(ext) for ext in LOCAL_FORMATS))
        elif any(ch in path for ch in "*?["):
            files = [Path(f) for f in sorted(glob.glob(str(p)))]
        else:
            files = [p] if p.is_file() or p.is_symlink() else []
        for f in files:
            f.stat()  # a link in a loop or to nothing: said here, not as an OSError mid-stage
    except OSError as exc:
        raise ConfigError(f"{where}: `{path}` cannot be read: {exc.strerror} ({exc.filename}); fix the link or "
                          f"the permissions, or point `path` elsewhere.") from None
    return files


def check_sources(spec: dict, task: Task, source: str) -> None:
    """Refuse, before loading anything, a corpus that would hold the task's text where it must not.

    `task:train` belongs in task.yaml only, and no source may be the task's test split: the
    same hub id and config with the test split, or a local file that is the task directory's
    test file (the leakage guard would drop every document, but the corpus would be empty or
    silently different, so it is an error in the YAML instead).
    """
    task_dir = local_path("task.dataset", task.dataset)
    test_files = ({(task_dir / f"{task.test_split}{ext}").resolve() for ext in LOCAL_FORMATS}
                  if task_dir is not None and task_dir.is_dir() else set())
    for src in spec["sources"]:
        path, where = str(src["path"]), f"{src['where']} (`{src['name']}`)"
        if path == TASK_SOURCE:
            if source != "task":
                raise ConfigError(f"{where}: `{TASK_SOURCE}` belongs in task.yaml only; other strategies "
                                  f"must not see the task's text. Remove this source from {spec['path']}.")
            continue
        fix = (f"test text never enters an MLM corpus. Remove this source from {spec['path']} "
               f"or point it at other text.")
        if is_local_path(path):
            hit = next((f for f in local_source_files(path, where) if f.resolve() in test_files), None)
            if hit is not None:
                raise ConfigError(f"{where}: `{path}` includes {hit}, the task's test split "
                                  f"(task.dataset + task.test_split); {fix}")
        elif path == task.dataset and (src.get("config") or None) == (task.config or None) \
                and str(src["split"]).split("[")[0].strip() == task.test_split:
            raise ConfigError(f"{where}: `{path}` split `{src['split']}` is the task's test split "
                              f"(task.dataset + task.test_split); {fix}")


def _join_fields(batch: dict, fields: list[str]) -> dict:
    rows = zip(*(batch[f] for f in fields))
    return {"text": ["\n".join(str(v) for v in row if v) for row in rows]}


def load_source(src: dict, task_dir: str | Path, counts: dict | None = None) -> Dataset:
    """One source as a Dataset with a single `text` column; `counts` gets each local file's records
    counted and read (`load_local_file`)."""
    path, field, where = str(src["path"]), src["text_field"], src["where"]
    if path == TASK_SOURCE:
        from pipeline.data import load_prepared  # here: pipeline.data imports scikit-learn (2 s), which a pool
        #                                          worker reading other sources does not need

        ds = load_prepared("train", task_dir)
        field = "text"
    elif local_or_hub(f"{where}.path", path) is not None:
        files = local_source_files(path, where)
        if not files:
            raise ConfigError(f"{where}: `{path}` matches no file; fix the path (relative paths are taken from "
                              f"the project root) or drop the source.")
        fix = f"fix or remove it ({where})"
        parts = [load_local_file(f, fix, counts) for f in files]
        ds = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    else:
        try:
            ds = load_dataset(path, src.get("config"), split=src["split"])
        except Exception as exc:
            raise ConfigError(f"{where}: loading `{path}` from the Hub failed ({type(exc).__name__}: {exc}). "
                              f"Point `path` at local files instead. {OFFLINE_HELP}") from exc
    fields = field if isinstance(field, list) else [field]
    missing = [f for f in fields if f not in ds.column_names]
    if missing:
        raise ConfigError(f"{where}: no field `{missing[0]}` in `{path}`; it has {', '.join(ds.column_names)}. "
                          f"Set `text_field`.")
    if len(fields) > 1:
        return ds.map(_join_fields, batched=True, fn_kwargs={"fields": fields}, remove_columns=ds.column_names,
                      desc=f"join {src['name']} fields")
    field = fields[0]
    return ds.select_columns([field]).rename_column(field, "text") if field != "text" else ds.select_columns(["text"])
