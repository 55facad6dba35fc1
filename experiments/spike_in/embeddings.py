"""The spike-in's mechanism check: did MLM on the shifted corpus teach the nonce forms their words?

    python -m experiments.spike_in.embeddings --k 100 --model BASE_DIR --model models/pretrained
    python -m experiments.spike_in.embeddings --k 100 --model BASE_DIR --exp spike-k100-in_domain-seed1

For each (word, nonce) pair of the map at K: the cosine similarity of the nonce token's input
embedding to its original word's input embedding, averaged over the pairs; beside it the same
nonce's mean cosine to the other K - 1 chosen words (what "similar" means by chance in this
embedding space) and the share of pairs whose word is the nonce's nearest among all K words.
MLM that teaches the nonce its word raises the first and the share, not the second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from experiments.spike_in.spike import DATA, map_for


def input_embeddings(model_dir: str | None = None, exp: str | None = None, repo: str = ".") -> torch.Tensor:
    """The word-embedding matrix of a saved model: a directory, or `models/pretrained` of a DVC experiment."""
    from safetensors.torch import load as load_bytes
    from safetensors.torch import load_file

    if exp:  # the experiment's name is a git ref DVC resolves (refs/exps/...); the file comes from its cache
        import dvc.api

        with dvc.api.open("models/pretrained/model.safetensors", repo=repo, rev=exp, mode="rb") as fh:
            tensors = load_bytes(fh.read())
    else:
        tensors = load_file(str(Path(model_dir).expanduser() / "model.safetensors"))
    names = [n for n in tensors if n.endswith("word_embeddings.weight")]
    if len(names) != 1:
        raise SystemExit(f"[embeddings] error: {model_dir or exp}: expected one word_embeddings.weight, found {names}")
    return tensors[names[0]].float()


def similarity(emb: torch.Tensor, vocab: dict[str, int], mapping: dict[str, str]) -> dict:
    """Cosine of each nonce to its word, to the other words (chance), and nearest-word accuracy."""
    words, nonces = list(mapping), [mapping[w] for w in mapping]
    w = torch.nn.functional.normalize(emb[[vocab[x] for x in words]], dim=-1)
    n = torch.nn.functional.normalize(emb[[vocab[x] for x in nonces]], dim=-1)
    cos = n @ w.T  # nonce x word
    k = len(words)
    pair = cos.diagonal()
    others = (cos.sum(1) - pair) / max(1, k - 1)
    return {"pairs": k, "cos_to_own_word": float(pair.mean()), "cos_to_other_words": float(others.mean()),
            "nearest_is_own_word": float((cos.argmax(1) == torch.arange(k)).float().mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, required=True, help="the K whose map to check")
    ap.add_argument("--model", action="append", default=[], help="a saved model directory (repeatable)")
    ap.add_argument("--exp", action="append", default=[], help="a DVC experiment's models/pretrained (repeatable)")
    ap.add_argument("--map", default=str(DATA / "map.json"))
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    table = json.loads(Path(args.map).read_text())["table"]
    mapping = map_for(table, args.k)
    first = args.model[0] if args.model else None
    vocab = AutoTokenizer.from_pretrained(str(Path(first).expanduser()) if first else "models/pretrained").get_vocab()
    rows = {}
    for m in args.model:
        rows[m] = similarity(input_embeddings(model_dir=m), vocab, mapping)
    for e in args.exp:
        rows[e] = similarity(input_embeddings(exp=e), vocab, mapping)
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
