"""The spike-in's mechanism check: did MLM on the shifted corpus teach the nonce forms their words?

    python -m experiments.spike_in.embeddings --k 100 --model BASE_DIR --model models/pretrained
    python -m experiments.spike_in.embeddings --k 100 --model BASE_DIR --exp spike-k100-in_domain-seed1

For each (word, nonce) pair of the map at K: the cosine similarity of the nonce token's input
embedding to its original word's input embedding, averaged over the pairs; beside it the same
nonce's mean cosine to the other K - 1 chosen words (what "similar" means by chance in this
embedding space) and the share of pairs whose word is the nonce's nearest among all K words.
MLM that teaches the nonce its word raises the first and the share, not the second. Then the
sentiment axis: where the nonces sit between the positive and the negative words (the classifier
needs at least that), and, against the first --model (the base), how far the nonce rows moved
and whether towards their words.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from experiments.spike_in.spike import DATA, load_map


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


def similarity(emb: torch.Tensor, vocab: dict[str, int], mapping: dict[str, str], polarity: dict[str, str],
               base: torch.Tensor | None = None) -> dict:
    """Cosine of each nonce to its word, to the other words (chance), nearest-word accuracy, and the
    nonces' position on the sentiment axis (mean positive word minus mean negative word, in this model),
    signed so that a nonce on its word's side scores > 0. With `base` (the model before MLM), also how far
    the nonce rows moved and whether towards their words."""
    words = list(mapping)
    w_ids, n_ids = [vocab[x] for x in words], [vocab[mapping[x]] for x in words]
    unit = torch.nn.functional.normalize
    cos = unit(emb[n_ids], dim=-1) @ unit(emb[w_ids], dim=-1).T  # nonce x word
    k = len(words)
    pair = cos.diagonal()
    sign = torch.tensor([1.0 if polarity[x] == "positive" else -1.0 for x in words])
    axis = unit(emb[w_ids][sign > 0].mean(0) - emb[w_ids][sign < 0].mean(0), dim=0)
    out = {"pairs": k, "cos_to_own_word": float(pair.mean()),
           "cos_to_other_words": float(((cos.sum(1) - pair) / max(1, k - 1)).mean()),
           "nearest_is_own_word": float((cos.argmax(1) == torch.arange(k)).float().mean()),
           "nonce_on_own_side_of_sentiment_axis": float((sign * (emb[n_ids] @ axis)).mean()),
           "word_on_own_side_of_sentiment_axis": float((sign * (emb[w_ids] @ axis)).mean())}
    # do the forms of the two polarities come apart? (mean cosine over pairs of distinct positive / negative forms)
    pos = sorted({i for i, x in zip(n_ids, sign) if x > 0})
    neg = sorted({i for i, x in zip(n_ids, sign) if x < 0})
    out["cos_between_polarity_forms"] = float((unit(emb[pos], dim=-1) @ unit(emb[neg], dim=-1).T).mean())
    if base is not None:
        move = emb[n_ids] - base[n_ids]
        out["nonce_move_norm"] = float(move.norm(dim=-1).mean())
        out["nonce_move_cos_towards_own_word"] = float(
            torch.nn.functional.cosine_similarity(move, emb[w_ids] - base[n_ids], dim=-1).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, required=True, help="the K whose map to check")
    ap.add_argument("--model", action="append", default=[], help="a saved model directory (repeatable)")
    ap.add_argument("--exp", action="append", default=[], help="a DVC experiment's models/pretrained (repeatable)")
    ap.add_argument("--map", default=str(DATA / "map.json"))
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    mapping, polarity = load_map(args.map, args.k)
    first = args.model[0] if args.model else None
    vocab = AutoTokenizer.from_pretrained(str(Path(first).expanduser()) if first else "models/pretrained").get_vocab()
    base = input_embeddings(model_dir=first) if first else None  # the first --model is the base
    rows = {}
    for m in args.model:
        rows[m] = similarity(input_embeddings(model_dir=m), vocab, mapping, polarity, base)
    for e in args.exp:
        rows[e] = similarity(input_embeddings(exp=e), vocab, mapping, polarity, base)
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
