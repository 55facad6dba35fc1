"""A random-init encoder of the demo's shape (all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 12 heads, vocab
30,522), saved as a model directory the stages load, for a machine that has neither the demo's weights nor a
network (the GPU check: bench/gpu_check.sh). The tokenizer is the demo encoder's when installed, else a
WordPiece one trained on the demo's reviews (bench/common.py). Speed is what it measures: its accuracy is
that of an encoder that was never pretrained.

    python bench/random_encoder.py OUT_DIR
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import torch
from transformers import BertForMaskedLM

from common import MINILM, bench_tokenizer, minilm_config

ROOT = Path(__file__).resolve().parents[1]


def demo_texts() -> list[str]:
    texts = []
    for path in sorted((ROOT / "demo").rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh]
    return texts


def main(out: str) -> None:
    tokenizer, source = bench_tokenizer(None, demo_texts())
    torch.manual_seed(0)
    config = minilm_config(vocab_size=max(MINILM["vocab_size"], len(tokenizer)), pad_token_id=tokenizer.pad_token_id)
    BertForMaskedLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"random-init MiniLM-shape encoder in {out} (tokenizer: {source})")


if __name__ == "__main__":
    main(sys.argv[1])
