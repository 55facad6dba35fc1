"""Corpus definitions (`corpora/<source>.yaml`): reading and checking one, the local files a source
names, the sources that must never be there (the task's text outside task.yaml, its test split
anywhere), and loading one source as a `text` column."""

from __future__ import annotations

import glob
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from pipeline.config import ConfigError, Float, Task, excerpt, load_yaml
from pipeline.files import LOCAL_FORMATS, load_local_file
from pipeline.sources import OFFLINE_HELP, is_local_path, local_or_hub, local_path

if TYPE_CHECKING:  # datasets is imported where a source is loaded: `inputs` reads the specs alone
    from datasets import Dataset

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
        raise ConfigError(f"{where}: `{key}` is {excerpt(err.get('input'))}: {err['msg'].lower()}; fix `{key}` "
                          f"(weight: a positive finite number; min_chars, max_chars: whole numbers; text_field: "
                          f"a field name or a list of them).") from None
    if isinstance(spec.text_field, list) and not spec.text_field:
        raise ConfigError(f"{where}: `text_field` is an empty list; name the field (or fields) that hold the text.")
    if isinstance(spec.text_field, list) and len(set(spec.text_field)) < len(spec.text_field):
        twice = next(f for f in spec.text_field if spec.text_field.count(f) > 1)
        raise ConfigError(f"{where}: `text_field` names `{twice}` twice; list each field once.")
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
        raise ConfigError(f"{path}: source names must be unique, got {excerpt(names)}; set `name` on each source.")
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
            files = [p] if p.exists() or p.is_symlink() else []
        for f in files:
            mode = f.stat().st_mode  # a link in a loop or to nothing: said here, not as an OSError mid-stage
            if not stat.S_ISREG(mode):  # a named pipe would block its reader for ever; a folder named like a file
                kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
                        else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or
                        stat.S_ISBLK(mode) else "not a regular file")
                raise ConfigError(f"{where}: `{f}` is {kind}, not a regular file; only files are read from a "
                                  f"source. Move it out of `{path}`, or name the files with a glob.")
    except OSError as exc:
        raise ConfigError(f"{where}: `{path}` cannot be read: {exc.strerror} ({exc.filename}); fix the link or "
                          f"the permissions, or point `path` elsewhere.") from None
    return files


def task_split_files(task_dir: Path, task: Task) -> dict[str, tuple[Path, int]]:
    """{split: (resolved file, size)} of a local task directory's train, dev and test files."""
    found = {}
    for split in (task.train_split, "dev", task.test_split):
        for ext in LOCAL_FORMATS:
            f = task_dir / f"{split}{ext}"
            if f.is_file():
                found[split] = (f.resolve(), f.stat().st_size)
    return found


def same_file(f: Path, task_files: dict[str, tuple[Path, int]]) -> str | None:
    """The task split `f` is, by its resolved path or, for a file of the same size, by its bytes (a copy)."""
    import filecmp

    for split, (path, size) in task_files.items():
        if f.resolve() == path or (f.stat().st_size == size and filecmp.cmp(f, path, shallow=False)):
            return split
    return None


def check_sources(spec: dict, task: Task, source: str) -> None:
    """Refuse, before loading anything, a corpus that would hold the task's text where it must not.

    `task:train` belongs in task.yaml only, and no source may be the task's test split: the
    same hub id and config with the test split, or a local file that is the task directory's
    test file (the leakage guard would drop every document, but the corpus would be empty or
    silently different, so it is an error in the YAML instead). Nor may a source be one of the
    task's train or dev files, by its path (resolved: links and `..` too) or as a copy (the same
    bytes), or the task's hub train split outside task.yaml: that would be `task:train` under
    another name, with its dev text in it.
    """
    task_dir = local_path("task.dataset", task.dataset)
    task_files = task_split_files(task_dir, task) if task_dir is not None and task_dir.is_dir() else {}
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
            for f in local_source_files(path, where):
                split = same_file(f, task_files)
                if split == task.test_split:
                    raise ConfigError(f"{where}: `{path}` includes {f}, the task's test split "
                                      f"(task.dataset + task.test_split); {fix}")
                if split is not None:  # train or dev, by its path or a copy of it
                    raise ConfigError(f"{where}: `{path}` includes {f}, which is the task's `{split}` file "
                                      f"({task_files[split][0]}) by {'path' if f.resolve() == task_files[split][0] else 'content'}: "
                                      f"the task's own text enters an MLM corpus only as `{TASK_SOURCE}` in task.yaml "
                                      f"(its train split as prepared, never its dev text). Remove this source from "
                                      f"{spec['path']} or point it at other text.")
        elif path == task.dataset and (src.get("config") or None) == (task.config or None):
            split = str(src["split"]).split("[")[0].strip()
            if split == task.test_split:
                raise ConfigError(f"{where}: `{path}` split `{src['split']}` is the task's test split "
                                  f"(task.dataset + task.test_split); {fix}")
            if split == task.train_split and source != "task":
                raise ConfigError(f"{where}: `{path}` split `{src['split']}` is the task's train split; the task's "
                                  f"text enters an MLM corpus only as `{TASK_SOURCE}` in task.yaml. Remove this "
                                  f"source from {spec['path']}.")


def fields_of(field: str | list[str]) -> list[str]:
    return field if isinstance(field, list) else [field]


def text_columns(ds: Dataset, fields: list[str], where: str) -> Dataset:
    """`ds` cut to the text fields, each checked to hold strings (a number or a list is refused, as on the task
    side, never turned into text) and typed `string`."""
    from datasets import Features, Value

    missing = [f for f in fields if f not in ds.column_names]
    if missing:
        raise ConfigError(f"{where}: no field `{missing[0]}`; it has {', '.join(ds.column_names)}. Set `text_field`.")
    for f in fields:
        kind = ds.features[f]
        if not (isinstance(kind, Value) and kind.dtype in ("string", "large_string", "null")):
            raise ConfigError(f"{where}: the field `{f}` holds {getattr(kind, 'dtype', type(kind).__name__)} values, "
                              f"not text; set `text_field` to the field that holds each document as one string "
                              f"(or join a list of sentences into one string in the file).")
    ds = ds.select_columns(fields)
    if all(ds.features[f].dtype == "string" for f in fields):
        return ds
    return ds.cast(Features({f: Value("string") for f in fields}))


def _join_fields(batch: dict, fields: list[str]) -> dict:
    rows = zip(*(batch[f] for f in fields))
    return {"text": ["\n".join(str(v) for v in row if v) for row in rows]}


def load_source(src: dict, task_dir: str | Path, counts: dict | None = None) -> Dataset:
    """One source as a Dataset with a single `text` column; `counts` gets each local file's records
    counted and read (`load_local_file`)."""
    from datasets import concatenate_datasets, load_dataset

    path, field, where = str(src["path"]), src["text_field"], src["where"]
    if path == TASK_SOURCE:
        from pipeline.artifacts import load_prepared

        ds = load_prepared("train", task_dir)
        field = "text"
    elif local_or_hub(f"{where}.path", path) is not None:
        files = local_source_files(path, where)
        if not files:
            raise ConfigError(f"{where}: `{path}` matches no file; fix the path (relative paths are taken from "
                              f"the project root) or drop the source.")
        fix = f"fix or remove it ({where})"
        # each file checked and cut to its text fields, typed alike whatever its format (CSV reads text as
        # large_string, JSON Lines as string), so that the files concatenate
        parts = [text_columns(load_local_file(f, fix, counts), fields_of(field), f"{where}: {f}") for f in files]
        ds = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    else:
        try:
            ds = load_dataset(path, src.get("config"), split=src["split"])
        except Exception as exc:
            raise ConfigError(f"{where}: loading `{path}` from the Hub failed ({type(exc).__name__}: {exc}). "
                              f"Point `path` at local files instead. {OFFLINE_HELP}") from exc
        ds = text_columns(ds, fields_of(field), f"{where}: `{path}`")
    fields = fields_of(field)
    if len(fields) > 1:
        return ds.map(_join_fields, batched=True, fn_kwargs={"fields": fields}, remove_columns=ds.column_names,
                      desc=f"join {src['name']} fields")
    field = fields[0]
    return ds.select_columns([field]).rename_column(field, "text") if field != "text" else ds.select_columns(["text"])
