"""Reference point for the base's perplexities: a model that ignores context.

    python -m experiments.positive_control.unigram

Token frequencies of the base's training text (add-one smoothed over the vocabulary) give the
perplexity of predicting every held-out token from its frequency alone. An MLM at or near this
figure has learned word frequencies and little else; how far below it a model gets is what it
learned from context.
"""

from __future__ import annotations

import math

import numpy as np
from datasets import Dataset

from experiments.positive_control.build_base import DATA, load_xp, pipeline_params
from pipeline.model import load_tokenizer


def token_counts(texts: list[str], tokenizer, size: int) -> np.ndarray:
    counts = np.zeros(size, dtype=np.int64)
    for start in range(0, len(texts), 1000):
        for ids in tokenizer(texts[start:start + 1000], add_special_tokens=False)["input_ids"]:
            np.add.at(counts, ids, 1)
    return counts


def main() -> None:
    xp = load_xp()
    tokenizer = load_tokenizer(xp["base"]["tokenizer"], pipeline_params(xp).model.trust_remote_code)
    size = len(tokenizer)
    train = token_counts(Dataset.from_parquet(str(DATA / "train.parquet"))["text"], tokenizer, size)
    logp = np.log((train + 1) / (train.sum() + size))
    print(f"base training text: {train.sum():,} tokens, {int((train > 0).sum()):,} distinct")
    for name in ("news", "imdb"):
        held = token_counts(Dataset.from_parquet(str(DATA / f"heldout_{name}.parquet"))["text"], tokenizer, size)
        print(f"unigram perplexity on held-out {name}: {math.exp(-(held * logp).sum() / held.sum()):,.1f}")


if __name__ == "__main__":
    main()
