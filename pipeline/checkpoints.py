"""The Trainer's `checkpoint-N` folders: which one a resume can start from (pipeline/training.py) and
which one a Ctrl-C names (pipeline/stage.py)."""

from __future__ import annotations

import json
from pathlib import Path


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
