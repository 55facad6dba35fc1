"""The spike-in's upper bound: a base whose nonce rows already mean their words, with no MLM at all.

    python -m experiments.spike_in.oracle --model MODEL_DIR --k 100 --out experiments/spike_in/.grid/oracle-k100

Writes a copy of the base in which each nonce form's input embedding is the mean of the embeddings of
the words it replaces (one word with `spike.forms: 0`; a polarity's words with `forms: 1`), then
`oracle.sh` fine-tunes and tests it like the `none` baseline. It separates the two halves of the
control: whether the comparison sees a planted gain of this size when the knowledge is in the
embeddings (this run), and whether MLM on the shifted reviews puts it there (the grid).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from experiments.spike_in.spike import DATA, load_map
from pipeline.io import atomic_dir
from pipeline.model import load_tokenizer


def oracle_rows(emb: torch.Tensor, vocab: dict[str, int], mapping: dict[str, str], mix: float) -> torch.Tensor:
    """`emb` with each nonce row moved `mix` of the way (1: all of it) to the mean row of its words."""
    out = emb.clone()
    words_of: dict[str, list[str]] = {}
    for word, nonce in mapping.items():
        words_of.setdefault(nonce, []).append(word)
    for nonce, words in words_of.items():
        target = emb[[vocab[w] for w in words]].mean(0)
        out[vocab[nonce]] = (1 - mix) * emb[vocab[nonce]] + mix * target
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the base model directory (safetensors)")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--mix", type=float, default=1.0, help="how far each nonce row moves to its words' mean")
    ap.add_argument("--map", default=str(DATA / "map.json"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    mapping, _ = load_map(args.map, args.k)
    vocab = load_tokenizer(args.model, False).get_vocab()
    src = Path(args.model)
    weights = sorted(src.glob("*.safetensors"))
    if len(weights) != 1:
        raise SystemExit(f"[oracle] error: {src}: expected one .safetensors file, found {len(weights)}")
    tensors = load_file(str(weights[0]))
    names = [n for n in tensors if n.endswith("word_embeddings.weight")]
    if len(names) != 1:
        raise SystemExit(f"[oracle] error: {weights[0]}: expected one word_embeddings.weight, found {names}")
    tensors[names[0]] = oracle_rows(tensors[names[0]], vocab, mapping, args.mix).contiguous()
    with atomic_dir(args.out) as tmp:
        for f in src.iterdir():
            if f.is_file() and f.suffix != ".safetensors":
                shutil.copy2(f, tmp / f.name)
        save_file(tensors, str(tmp / weights[0].name), metadata={"format": "pt"})
        (tmp / "oracle.json").write_text(json.dumps({"base": str(src.resolve()), "k": args.k, "mix": args.mix,
                                                     "forms": len(set(mapping.values()))}))
    print(f"[oracle] {args.out}: {len(set(mapping.values()))} nonce rows set {args.mix:g} of the way to their "
          f"{len(mapping)} words' mean")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
