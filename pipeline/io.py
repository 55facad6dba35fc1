"""Atomic outputs (files, folders, JSON, CSV), file hashing, and read-only memory maps whose pages can be released.

A stage writes into a temporary sibling and renames it into place at the end, so a killed
stage never leaves an output that looks complete. Inside `outputs_together`, the stage's declared
outputs (its data and its metrics) are renamed into place together, after all of them were written:
a failure part-way leaves every one of them at its old state.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import shutil
from pathlib import Path


def remove_path(path: Path) -> None:
    """Remove whatever is at `path`: a folder with its contents, a file or a link (a stale temporary
    output of a killed run may be either kind)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def blocked_output(path: str | Path) -> Path | None:
    """The first folder on the way to `path` that exists but is a file (the output cannot be written
    there), or None."""
    return next((p for p in reversed(Path(path).parents) if p.exists() and not p.is_dir()), None)


def no_space_left(exc: BaseException | None) -> OSError | None:
    """The out-of-space error (ENOSPC, EDQUOT) in `exc` or the exceptions it was raised from, if any:
    libraries wrap it (datasets, pyarrow), and their message then blames the input."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "No space left on device" in str(exc)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


_together: dict | None = None  # within outputs_together: {"paths": the outputs deferred, "ready": [(tmp, path)]}


@contextlib.contextmanager
def outputs_together(paths):
    """Defer the final rename of the atomic outputs at `paths` to the end of the block, then rename
    them all; on an error, remove their written temporaries (their old versions stay)."""
    global _together
    _together = {"paths": {Path(p).resolve() for p in paths}, "ready": []}
    try:
        yield
        ready = _together["ready"]
    except BaseException:
        for tmp, _ in _together["ready"]:
            remove_path(tmp)
        raise
    finally:
        _together = None
    for tmp, path in ready:
        _put_in_place(tmp, path)


def _finish(tmp: Path, path: Path) -> None:
    if _together is not None and path.resolve() in _together["paths"]:
        if (tmp, path) not in _together["ready"]:  # written twice: the last write is what goes in place
            _together["ready"].append((tmp, path))
    else:
        _put_in_place(tmp, path)


def _put_in_place(tmp: Path, path: Path) -> None:
    """Replace `path` (a file, folder or nothing) by `tmp`."""
    if tmp.is_dir() and (path.exists() or path.is_symlink()):
        old = path.with_name(f".{path.name}.old")
        remove_path(old)
        os.replace(path, old)
        os.replace(tmp, path)
        remove_path(old)
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """Yield a temporary sibling path to write; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    remove_path(tmp)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _finish(tmp, path)


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
    remove_path(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _finish(tmp, path)


@contextlib.contextmanager
def only_one(lock_path: str | Path, what: str):
    """Hold an exclusive lock on `lock_path` for the block, or stop at once if another process holds it:
    two `collect`s in one project share their work folder and output, and one would wreck the other's files
    ("Corrupted minhash signature"). The lock (flock) goes with the process, however it ends."""
    import fcntl

    from pipeline.config import ConfigError

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(f"{what} is already running in this project ({holder}, lock {lock_path}); wait for it "
                              f"to finish, or stop it, then run again. (Each copy of the project runs its own.)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


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


def read_only_map(path: str | Path) -> mmap.mmap:
    """`path` memory-mapped read-only (the file may be closed: the map keeps its own reference)."""
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def release_pages(mm: mmap.mmap) -> None:
    """Take the pages read through `mm` out of the process's resident set (madvise MADV_DONTNEED); they stay
    in the page cache, and a later read maps them again. A map otherwise keeps every page read, and a random
    read maps 64 KB around it (the kernel's fault-around) or its whole page-cache folio (up to megabytes
    with large folios, e.g. kernel 6.18 on ext4): RSS would grow with the file. Not on
    Windows (no `mmap.madvise`): there the pages stay until the map closes."""
    if hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_DONTNEED)
