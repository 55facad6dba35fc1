"""What every DVC stage does around its work: params, seed, W&B run, timing, metrics, errors.

A `ConfigError` (bad params or input) ends the stage with its message and exit code 2, not a
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from transformers import set_seed

from pipeline import tracking
from pipeline.config import ConfigError, Params, load_params
from pipeline.distributed import is_main_process
from pipeline.io import write_json


def run_stage(name: str, work: Callable[[Params], dict], metrics_path: str | None = None) -> None:
    try:
        params = load_params("params.yaml")
        # each stage draws from the seed that names its randomness (params.yaml says which is which)
        if name not in ("inputs", "evaluate"):  # these draw nothing at random
            set_seed(params.task.seed if name == "prepare" else
                     params.pretrain.seed if name in ("collect", "pretrain") else params.seed)
        start = time.time()
        with tracking.stage_run(params, name) as run:
            metrics = work(params)
            metrics["seconds"] = round(time.time() - start, 2)
            tracking.log_summary(run, metrics)
        if metrics_path and is_main_process():
            write_json(metrics_path, metrics)
    except ConfigError as exc:
        print(f"\n[{name}] error: {exc}\n", file=sys.stderr)
        sys.exit(2)
