"""The spike-in's MLM-ready base: the shipped MiniLM taught masked-token prediction on the *unshifted* reviews.

    python -m experiments.spike_in.adapt          # the stage of experiments/spike_in/adapted/dvc.yaml
    python -m experiments.spike_in.adapt --corpus ../shared/data/cross_domain --out experiments/prompt_words/base \
        --metrics experiments/prompt_words/metrics/base.json   # a base that has seen no reviews (issue 43's grid)

all-MiniLM-L6-v2 is a sentence encoder: its checkpoint has no MLM head, and with the head warmed up (body
frozen) its MLM perplexity on the reviews is about 1,000, against 100 to 150 once the body has trained on
the objective. A grid on that base spends its MLM budget teaching the body the objective itself, and the
nonce rows' input role, the one the classifier reads, then gets almost no gradient: `landscape.py` measures
the loss as a function of the rows on both bodies (docs/results.md, "Spike-in control"). Every base
a user takes from a hub (BERT, RoBERTa, DeBERTa) is MLM-pretrained, which is also Artetxe et al.'s setting.
So this stage does that part once, before the strategies: the head warm-up and `adapt.tokens` of MLM at
the grid's rate, on the unlabeled reviews at K = 0, which hold none of the nonce forms. Every strategy of
the adapted grid starts from the result (its head is complete, so no strategy warms one up), and `none`
fine-tunes it as it is: the grid then compares only what each strategy's MLM adds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from experiments.spike_in.spike import METRICS, PARAMS
from pipeline.io import atomic_dir, write_json


def text_corpus(folder: str | Path, docs: int):
    """The `text` of every .jsonl.gz file under `folder` (sorted by name), shuffled (seed 0), the first `docs`."""
    from datasets import Dataset

    from experiments.spike_in.spike import read_jsonl

    files = sorted(Path(folder).expanduser().rglob("*.jsonl.gz"))
    if not files:
        raise SystemExit(f"[adapt] error: no .jsonl.gz file under {folder} (--corpus): give a folder of JSON-lines "
                         f"files with a `text` field")
    rows = [r["text"] for f in files for r in read_jsonl(f)]
    return Dataset.from_dict({"text": rows}).shuffle(seed=0).select(range(min(docs, len(rows))))


def adapt_base(model_dir: str, out: str | Path, tokens: int, lr: float, warmup_tokens: int, docs: int,
               corpus_k: int = 0, corpus_dir: str | Path | None = None) -> dict:
    """Write to `out` the base at `model_dir` with its MLM head warmed up (body and tied embeddings frozen) and
    then `tokens` MLM tokens at `lr` (all weights), on the first `docs` reviews of the corpus shifted at
    `corpus_k` (0: unshifted), or on `docs` texts of the files under `corpus_dir` (`text_corpus`). `tokens` 0
    stops after the warm-up. Returns what was done."""
    from experiments.spike_in.probe import grid_params, shifted_corpus
    from pipeline.mlm import continue_pretraining, warm_up_head
    from pipeline.model import load_mlm, load_tokenizer

    model_dir = str(Path(model_dir).expanduser())
    tokenizer = load_tokenizer(model_dir, False)
    model, head = load_mlm(model_dir, False, with_head_report=True)
    params = grid_params(model_dir, lr, "all", warmup_tokens, max(tokens, 1))
    corpus = shifted_corpus(corpus_k, docs) if corpus_dir is None else text_corpus(corpus_dir, docs)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="spike-adapt-") as work:
        warm = warm_up_head(model, tokenizer, corpus, params.pretrain, params.train, head,
                            Path(work) / "head", Path(work) / "main")
        stats = continue_pretraining(model, tokenizer, corpus, params.pretrain, params.train,
                                     Path(work) / "main") if tokens else {}
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {"base": model_dir, **({"corpus_k": corpus_k} if corpus_dir is None else {"corpus": str(corpus_dir)}),
            "docs": len(corpus), "head_warmup": warm,
            "mlm_tokens": stats.get("tokens_trained", 0), "mlm_steps": stats.get("steps", 0),
            "mlm_train_loss": stats.get("train_loss"), "seconds": round(time.time() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(PARAMS))
    ap.add_argument("--tokens", type=int, help="instead of adapt.tokens (0: the head warm-up alone)")
    ap.add_argument("--out", help="instead of adapt.out")
    ap.add_argument("--corpus", help="a folder of .jsonl.gz texts instead of the unshifted reviews")
    ap.add_argument("--metrics", help="where the record goes (default: metrics/adapt.json, unless --out is given)")
    args = ap.parse_args(argv)
    p = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))
    a = p["adapt"]
    tokens = a["tokens"] if args.tokens is None else args.tokens
    out = args.out or a["out"]
    done = adapt_base(p["source"]["tokenizer"], out, tokens, a["lr"], a["head_warmup_tokens"], a["docs"],
                      corpus_dir=args.corpus)
    if args.metrics or not args.out:
        write_json(args.metrics or METRICS / "adapt.json", done)
    print(f"[adapt] {out}: head warmed up, then {done['mlm_tokens']:,} MLM tokens on "
          f"{args.corpus or 'the unshifted reviews'} ({done['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
