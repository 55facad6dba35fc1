"""Process-group facts (rank, world size), launching (torchrun) and device placement.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; the Trainer sets up DDP from them (NCCL on
CUDA, gloo on CPU). Plain `python` is world size 1.
"""

from __future__ import annotations

import contextlib
import os
import sys


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process, and where torch was never imported: no process group)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


@contextlib.contextmanager
def main_process_first():
    """Rank 0 runs the block first (tokenising into the datasets cache), the others then read
    the cache instead of tokenising again or racing for the same cache files."""
    if world_size() == 1:
        yield
        return
    from accelerate import PartialState

    with PartialState().main_process_first():
        yield


def accumulation_steps(per_device: int, target: int, key: str) -> int:
    """Gradient accumulation that turns per-device batch x processes into `target` (0: none).

    effective batch = per-device batch x processes x accumulation steps.
    """
    if not target:
        return 1
    per_step = per_device * world_size()
    if target % per_step:
        from pipeline.config import ConfigError

        raise ConfigError(f"`{key}.target_batch` is {target}, not a multiple of {key}.batch_size x processes "
                          f"= {per_device} x {world_size()} = {per_step}; pick a multiple of {per_step}.")
    return target // per_step


def torchrun_command(launch, module: str) -> list[str] | None:
    """The torchrun command line that runs `module` (python -m), or None when one process is enough."""
    if launch.nproc_per_node == 1 and launch.nnodes == 1:
        return None
    cmd = ["torchrun", f"--nproc_per_node={launch.nproc_per_node}", f"--nnodes={launch.nnodes}"]
    if launch.nnodes > 1:
        cmd += ["--rdzv_backend=c10d", f"--rdzv_endpoint={launch.rdzv_endpoint}", f"--rdzv_id={launch.rdzv_id}"]
    return cmd + ["-m", module]
