"""Weights & Biases runs (offline unless WANDB_MODE says otherwise) and DVC metric files.

One W&B run per stage: group = the strategy (`pretrain.source`), job type = the stage,
config = all params, so a dashboard groups seeds and stages by strategy. Only rank 0 logs.
With WANDB_MODE=disabled, or wandb not importable, nothing is logged and nothing breaks.
"""

from __future__ import annotations

import contextlib
import os

from pipeline.config import Params
from pipeline.distributed import is_main_process


def wandb_mode() -> str:
    """WANDB_MODE, offline when unset. Passed to wandb.init, not written to the environment: with
    WANDB_MODE=offline there, importing transformers' W&B integration prints a line of its own."""
    return os.environ.get("WANDB_MODE", "offline")


def wandb_enabled() -> bool:
    if wandb_mode() == "disabled" or not is_main_process():
        return False
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def report_to() -> list[str]:
    """The Trainer's `report_to`: it logs into the run that `stage_run` opened, and only into an open run.
    With none (the library called outside a stage: a probe, a notebook), transformers' W&B callback would
    open one itself, online by default, and stop on a machine with no API key."""
    if not wandb_enabled():
        return []
    import wandb

    return ["wandb"] if wandb.run is not None else []


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


@contextlib.contextmanager
def stage_run(params: Params, stage: str):
    """Open a W&B run for one stage; yields the run or None."""
    if not wandb_enabled():
        yield None
        return
    import wandb

    run = wandb.init(mode=wandb_mode(), project=os.environ.get("WANDB_PROJECT", params.tracking.wandb_project),
                     group=params.pretrain.source, job_type=stage,
                     name=f"{params.pretrain.source}-seed{params.seed}-{stage}",
                     config=params.model_dump(), reinit="finish_previous",
                     settings=wandb.Settings(silent=True))  # its ~20-line banners: one line below instead
    try:
        yield run
    except BaseException:
        run.finish(exit_code=1)
        raise
    offline = run.settings.mode == "offline"
    where = os.path.relpath(run.settings.sync_dir) if offline else run.url
    run.finish()
    print(f"[{stage}] W&B run " + (f"saved offline in {where} (upload: wandb sync {where})" if offline else where),
          flush=True)


def log_summary(run, metrics: dict) -> None:
    if run is not None:
        run.summary.update(_flatten(metrics))
