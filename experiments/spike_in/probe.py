"""Mechanism probe, before any grid: MLM on the shifted corpus with the pipeline's own code, and the
nonce embeddings' similarity to their words after the head warm-up and after each MLM budget.

    python -m experiments.spike_in.probe --model MODEL_DIR --k 100 --tokens 500000 1000000 --lr 5e-5

Answers "does this budget and learning rate teach the nonce forms at all?" in minutes, where the
grid takes hours: the grid's pretrain stage runs the same two functions (`warm_up_head`, then
`continue_pretraining`) on the corpus `collect` draws from the same shifted file.
"""

from __future__ import annotations

import argparse
import atexit
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from datasets import Dataset

from experiments.spike_in.cloze import cloze_polarity, review_label_reference
from experiments.spike_in.embeddings import similarity
from experiments.spike_in.spike import DATA, load_map, read_jsonl
from pipeline.config import from_dict
from pipeline.mlm import continue_pretraining, frozen, warm_up_head
from pipeline.model import load_mlm, load_tokenizer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--tokens", type=int, nargs="+", default=[1_000_000], help="MLM budgets, run one after another")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--trainable", choices=["all", "embeddings"], default="all", help="pretrain.trainable")
    ap.add_argument("--untie", action="store_true",
                    help="after the head warm-up, give the decoder its own frozen copy of the word embeddings and "
                         "freeze the head: the nonce rows then learn only from how the fixed body and head read them")
    ap.add_argument("--warmup-tokens", type=int, default=200_000)
    ap.add_argument("--docs", type=int, default=20_000, help="reviews of the shifted corpus to draw from")
    ap.add_argument("--cloze", type=int, default=0, metavar="N",
                    help="also the cloze test (cloze.py) on N test reviews (a seeded draw): the real words masked in the "
                         "unshifted reviews, the nonce forms masked in the shifted ones")
    args = ap.parse_args(argv)
    mapping, polarity = load_map(DATA / "map.json", args.k)
    corpus = shifted_corpus(args.k, args.docs)
    tokenizer = load_tokenizer(args.model, False)
    vocab = tokenizer.get_vocab()
    model, head = load_mlm(args.model, False, with_head_report=True)

    base = model.get_input_embeddings().weight.detach().clone()

    sets = cloze_sets(args.k, mapping, polarity, args.cloze)
    for name, (texts, labels, targets) in sets.items():  # what the review's label alone says about its words
        ref = review_label_reference(tokenizer, texts, labels, targets)
        print(f"[probe] review label as the answer: cloze, {name}: {json.dumps(ref)}", flush=True)

    def check(label: str) -> None:
        emb = model.get_input_embeddings().weight.detach()
        print(f"[probe] {label}: {json.dumps(similarity(emb, vocab, mapping, polarity, base))}", flush=True)
        for name, (texts, _, targets) in sets.items():
            out = cloze_polarity(model, tokenizer, texts, targets)
            print(f"[probe] {label}: cloze, {name}: {json.dumps(out)}", flush=True)

    check("base")
    work = Path(tempfile.mkdtemp(prefix="spike-probe-"))
    atexit.register(shutil.rmtree, work, True)  # the Trainer's run ids and checkpoints: nothing to keep
    params = grid_params(args.model, args.lr, args.trainable, args.warmup_tokens, args.tokens[0])
    warm_up_head(model, tokenizer, corpus, params.pretrain, params.train, head, work / "head", work / "main")
    check("head warmed up (encoder and tied embeddings frozen)")
    fixed = untie_head(model) if args.untie else []
    done = 0
    for budget in args.tokens:
        step = params.pretrain.model_copy(update={"max_tokens": budget - done})
        start = time.time()
        with frozen(fixed):
            stats = continue_pretraining(model, tokenizer, corpus, step, params.train, work / f"mlm-{budget}")
        done = budget
        if args.untie and model.get_output_embeddings().weight is model.get_input_embeddings().weight:
            raise SystemExit("[probe] error: training re-tied the decoder to the word embeddings")
        check(f"after {budget:,} MLM tokens at lr {args.lr:g}, {args.trainable} trainable ({time.time() - start:.0f} s, "
              f"{stats['tokens_per_second']:,.0f} tokens/s, loss {stats['train_loss']:.3f})")
    return 0


def shifted_corpus(k: int, docs: int) -> Dataset:
    """The first `docs` reviews of the unlabeled corpus shifted at K, shuffled (seed 0)."""
    rows = read_jsonl(DATA / "corpus" / f"unsup_k{k:03d}.jsonl.gz")[:docs]
    return Dataset.from_dict({"text": [r["text"] for r in rows]}).shuffle(seed=0)


def grid_params(model: str, lr: float, trainable: str, warmup_tokens: int, max_tokens: int):
    """The pipeline's params for the probe's MLM: the grid's `in_domain` settings but for what the probe varies."""
    return from_dict({"model": {"name": model},
                      "pretrain": {"source": "in_domain", "lr": lr, "trainable": trainable,
                                   "head_warmup_tokens": warmup_tokens, "max_tokens": max_tokens},
                      "train": {"checkpoint_steps": 0}})


def cloze_sets(k: int, mapping: dict[str, str], polarity: dict[str, str], n: int) -> dict:
    """The cloze test's texts, labels and targets: the real words in `n` unshifted test reviews (a seeded draw),
    the nonce forms (each standing for words of one polarity) in the same reviews shifted at K."""
    if not n:
        return {}
    forms = {mapping[w]: polarity[w] for w in mapping}
    if any(polarity[w] != forms[f] for w, f in mapping.items()):
        raise SystemExit("[probe] error: a nonce form stands for words of both polarities; the cloze needs one each")

    def draw(tag: str) -> tuple[list[str], list[int]]:  # the same seeded draw from both files (the shift keeps
        every = read_jsonl(DATA / "task" / f"test_{tag}.jsonl.gz")  # the rows' order); the file is sorted by label
        rows = [every[i] for i in sorted(random.Random(0).sample(range(len(every)), min(n, len(every))))]
        return [r["text"] for r in rows], [r["label"] for r in rows]
    return {"real words, unshifted test": (*draw("k000"), {w: polarity[w] for w in mapping}),
            f"nonce forms, test shifted at K = {k}": (*draw(f"k{k:03d}"), forms)}


def untie_head(model) -> list:
    """Cut the tie between the decoder and the word embeddings (a frozen copy for the decoder) and return the
    head's weights to freeze. With a tied decoder every row also takes the output side's gradient (the softmax
    pushes every row, and a frequent form's row takes the direction of the hidden states it must be predicted
    from); untied and frozen, a row learns only its input role, Artetxe et al.'s setting in full."""
    import torch

    decoder = model.get_output_embeddings()
    decoder.weight = torch.nn.Parameter(decoder.weight.detach().clone())
    model.config.tie_word_embeddings = False
    prefix = model.base_model_prefix + "."
    return [w for name, w in model.named_parameters() if not name.startswith(prefix)]


if __name__ == "__main__":
    raise SystemExit(main())
