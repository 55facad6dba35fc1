"""What every DVC stage does around its work: params, seed, W&B run, timing, metrics, errors.

A `ConfigError` (bad params or input) ends the stage with its message and exit code 2, not a
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline import tracking
from pipeline.allocator import keep_freed_memory
from pipeline.checkpoints import last_complete_checkpoint
from pipeline.config import ConfigError, Params, load_params
from pipeline.console import summary_line
from pipeline.distributed import is_main_process
from pipeline.io import blocked_output, no_space_left, outputs_together, write_json


def interrupted_message(name: str, checkpoints: tuple[str, ...] = ()) -> str:
    """One line for Ctrl-C: where the last checkpoint in the stage's `checkpoints` folders is, and that a
    rerun resumes from it."""
    found = [c for d in checkpoints if Path(d).is_dir() and (c := last_complete_checkpoint(d))]
    if found:
        return (f"[{name}] interrupted; the last checkpoint is {found[0]}: rerun the stage (dvc repro) and it "
                f"resumes from there.")
    if checkpoints:
        return (f"[{name}] interrupted before its first checkpoint (every train.checkpoint_steps steps): a rerun "
                f"starts this stage over.")
    return f"[{name}] interrupted; nothing was written: a rerun starts this stage over."


def set_process_allocator(params: Params) -> None:
    """The allocator is process-wide: set where the stage's process starts (pipeline/allocator.py). It
    changes how fast a stage runs, never what it computes (so no stage declares it as a param)."""
    torch = sys.modules.get("torch")  # a stage that never imports torch (inputs, prepare) runs on the CPU
    keep_freed_memory(params.train.keep_freed_memory and not (torch is not None and torch.cuda.is_available()))


def seed_all(value: int) -> None:
    """Seed Python's and NumPy's generators and, in a stage that uses torch (its module imports it before
    `run_stage`), torch's on every device: transformers' `set_seed` seeds all of them. A stage that does not
    use torch does not import it for this (`inputs` runs on every `dvc repro`)."""
    if "torch" in sys.modules:
        from transformers import set_seed

        set_seed(value)
        return
    import random

    import numpy as np

    random.seed(value)
    np.random.seed(value)


def check_outputs(paths: tuple[str, ...]) -> None:
    """Refuse, before any work, an output that cannot be written: a folder on its way is a file. (Found
    after the work, the stage would stop with its data written and its metrics not.)"""
    for path in paths:
        if (blocker := blocked_output(path)) is not None:
            raise ConfigError(f"`{blocker}` is a file, but this stage writes `{path}` inside a folder of that name: "
                              f"move or remove `{blocker}`, then rerun.")


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds `path` (the nearest existing folder on its way)."""
    path = next((p for p in (path, *path.parents) if p.exists()), Path("/")).resolve()
    device = os.stat(path).st_dev
    while path != path.parent and os.stat(path.parent).st_dev == device:
        path = path.parent
    return path


def disk_full_message(name: str, full: OSError) -> str:
    """Which filesystem is full: the one of the file being written when the error names it, else the fullest
    of those a stage writes to (the project, datasets' cache, the temporary folder)."""
    import tempfile

    if full.filename:
        candidates = [Path(os.path.abspath(full.filename))]
    else:
        from datasets import config as datasets_config

        candidates = [Path.cwd(), Path(datasets_config.HF_DATASETS_CACHE), Path(tempfile.gettempdir())]
    where = min(candidates, key=lambda p: shutil.disk_usage(mount_point(p)).free)
    mount = mount_point(where)
    return (f"[{name}] error: no space left on the device"
            f"{f' writing `{full.filename}`' if full.filename else f' (the fullest filesystem written to holds {where})'}"
            f": the filesystem mounted at {mount} has {shutil.disk_usage(mount).free / 2**30:.1f} GiB free. Free "
            f"space there, or point HF_DATASETS_CACHE (datasets' cache) or TMPDIR at a disk with room; this stage's "
            f"outputs and work folders were being written to temporary paths and were removed, so a rerun starts "
            f"clean.")


def cannot_write_message(name: str, exc: OSError) -> str:
    what = "is on a read-only filesystem" if exc.errno == errno.EROFS else "is not writable (permission denied)"
    return (f"[{name}] error: `{exc.filename}` {what}. Make the project's data/, models/, metrics/, plots/ and "
            f"outputs/ folders writable (or run from a writable copy of the project); nothing this stage was "
            f"writing was left in place.")


def run_stage(name: str, work: Callable[[Params], dict], metrics_path: str | None = None, track: bool = True,
              then: Callable[[Params], None] | None = None, seed: Callable[[Params], int] | None = None,
              checkpoints: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> None:
    """Load and check the params, check that the stage's `outputs` (besides `metrics_path`: what dvc.yaml
    declares) can be written, seed (`seed`: the param that names the stage's randomness), run `work` (in a
    W&B run when `track`), write its metrics and print their summary line (pipeline.console); `then` runs
    last (evaluate prints the run's result). `checkpoints`: the folders of the stage's resumable
    checkpoints, named by Ctrl-C."""
    # a crash in native code (a signal such as SIGSEGV) prints the Python stack instead of dying silently
    if sys.__stderr__ is not None and not faulthandler.is_enabled():  # pytest, running a stage in process, has its own
        faulthandler.enable(file=sys.__stderr__)
    try:
        params = load_params("params.yaml")
        declared = outputs + ((metrics_path,) if metrics_path else ())
        check_outputs(declared)
        set_process_allocator(params)
        if seed is not None:  # each stage draws from the seed that names its randomness (params.yaml says which)
            seed_all(seed(params))
        start = time.time()
        with (tracking.stage_run(params, name) if track else contextlib.nullcontext()) as run:
            with outputs_together(declared):  # the data and the metrics are renamed into place together
                metrics = work(params)
                metrics["seconds"] = round(time.time() - start, 2)
                tracking.log_summary(run, metrics)
                if metrics_path and is_main_process():
                    write_json(metrics_path, metrics)
            if metrics_path and is_main_process():
                print(summary_line(name, metrics), flush=True)  # before W&B's line, printed as its run closes
        if then is not None and is_main_process():
            then(params)
    except ConfigError as exc:
        print(f"\n[{name}] error: {exc}\n", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if (full := no_space_left(exc)) is not None:
            print(f"\n{disk_full_message(name, full)}\n", file=sys.stderr)
            sys.exit(2)
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and exc.filename:
            print(f"\n{cannot_write_message(name, exc)}\n", file=sys.stderr)
            sys.exit(2)
        raise
    except KeyboardInterrupt:
        # Everything has unwound (outputs are written to temporary paths, removed on the way out);
        # exit at once, so the line below is the last one (progress bars would redraw at exit).
        if is_main_process():
            print(f"\n{interrupted_message(name, checkpoints)}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
