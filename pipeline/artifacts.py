"""What `prepare` and `collect` wrote, loaded for the stages after them: the task's splits and the MLM corpus.

A module of its own so that a stage that only reads these files (pretrain, finetune, evaluate) imports none
of the code that makes them: its dvc.yaml deps stay what it runs, and an edit to the corpus pipeline
(pipeline/corpus.py, pool.py, collect_steps.py) re-runs `collect`, not MLM pretraining, unless the corpus
itself changes.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset

from pipeline.config import ConfigError

# The columns of a corpus with no documents (`pretrain.source: none`), as `collect` writes and `load_corpus` reads it
EMPTY_CORPUS = {"text": [], "source": [], "tokens": []}


def load_prepared(split: str, data_dir: str | Path = "data/task") -> Dataset:
    """A split `prepare` wrote: data/task/<split>.parquet (text, label, id)."""
    path = Path(data_dir) / f"{split}.parquet"
    if not path.exists():
        raise ConfigError(f"{path}: missing; run the `prepare` stage first (dvc repro prepare).")
    return Dataset.from_parquet(str(path))


def load_corpus(corpus_dir: str | Path = "data/corpus") -> Dataset:
    """The corpus `collect` wrote (memory-mapped Arrow); the `none` corpus is empty."""
    path = Path(corpus_dir) / "corpus.parquet"
    if not path.exists():
        raise ConfigError(f"{path}: missing; run the `collect` stage first (dvc repro collect).")
    if pq.ParquetFile(path).metadata.num_rows == 0:
        return Dataset.from_dict(EMPTY_CORPUS)
    return Dataset.from_parquet(str(path))
