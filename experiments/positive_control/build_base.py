"""Positive control: a small BERT pretrained from scratch on news and Usenet text, with a real MLM
head and a known pretraining domain, so that adapting it to reviews must be measurable.

    python -m experiments.positive_control.build_base corpus   # -> data/: base corpus + held-out text
    python -m experiments.positive_control.build_base base     # -> model/ + metrics/base.json

Run from the project root (the experiment's dvc.yaml sets `wdir` there), so the corpus YAML's
relative paths mean what they mean for `collect`. The base is trained by the pipeline's own MLM
code (`pipeline.mlm.continue_pretraining`, from a random init instead of a checkpoint) and its
held-out MLM perplexity is measured with `pipeline.mlm.mlm_perplexity` on news text it did not
see and on IMDB review text: the domain gap, measured.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from datasets import Dataset, concatenate_datasets
from transformers import BertConfig, BertForMaskedLM, set_seed

from pipeline.config import ConfigError, from_dict
from pipeline.corpus_spec import load_source, load_spec
from pipeline.dedup import clean_text, normalised_hash
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.mlm import continue_pretraining, heldout_blocks, mlm_perplexity
from pipeline.model import load_tokenizer

HERE = Path("experiments/positive_control")
PARAMS = HERE / "params.yaml"
DATA, MODEL, METRICS = HERE / "data", HERE / "model", HERE / "metrics"
WORK_DIR = HERE / ".base-work"


def load_xp(path: Path = PARAMS) -> dict:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def pipeline_params(xp: dict):
    """The pipeline's typed params for the base run: the MLM and training sections come from the
    experiment's params.yaml, so validation and defaults are the pipeline's own."""
    return from_dict({"model": {"name": xp["base"]["tokenizer"]}, "task": {"seed": xp["base"]["seed"]},
                      "pretrain": {**xp["pretrain"], "source": "cross_domain", "seed": xp["base"]["seed"]},
                      "train": xp["train"]}, where=str(PARAMS))


def _clean_docs(ds: Dataset, min_chars: int) -> Dataset:
    ds = ds.map(lambda b: {"text": [clean_text(t) for t in b["text"]]}, batched=True, desc="clean")
    return ds.filter(lambda b: [len(t) >= min_chars for t in b["text"]], batched=True, desc="min_chars")


def build_data(xp: dict) -> dict:
    """All documents of the base's corpus spec, cleaned and exactly deduplicated, split into the
    base's training text and held-out news; plus a held-out sample of IMDB review text."""
    c = xp["corpus"]
    spec = load_spec(Path(c["spec"]).parent, Path(c["spec"]).stem)
    # every document of every source: the base sees the whole domain, not a weighted draw
    parts = [load_source(src, task_dir="") for src in spec["sources"]]
    docs = _clean_docs(concatenate_datasets(parts), c["min_chars"])
    keys = [normalised_hash(t) for t in docs["text"]]
    _, first = np.unique(keys, return_index=True)  # exact duplicates (e.g. cross-posted Usenet) kept once
    docs = docs.select(np.sort(first)).shuffle(seed=xp["base"]["seed"])
    n_heldout = max(1, int(len(docs) * c["heldout_fraction"]))
    imdb = _clean_docs(load_source({"path": c["imdb_text"], "text_field": "text", "name": "imdb",
                                    "where": f"{PARAMS}: corpus.imdb_text"}, task_dir=""), c["min_chars"])
    imdb = imdb.shuffle(seed=xp["base"]["seed"]).select(range(min(len(imdb), c["imdb_docs"])))
    with atomic_dir(DATA) as tmp:
        docs.select(range(n_heldout, len(docs))).to_parquet(str(tmp / "train.parquet"))
        docs.select(range(n_heldout)).to_parquet(str(tmp / "heldout_news.parquet"))
        imdb.to_parquet(str(tmp / "heldout_imdb.parquet"))
    return {"documents": len(docs), "exact_duplicates_removed": len(keys) - len(first),
            "train_documents": len(docs) - n_heldout, "heldout_news_documents": n_heldout,
            "heldout_imdb_documents": len(imdb), "sources": [s["name"] for s in spec["sources"]]}


def init_model(xp: dict, tokenizer) -> BertForMaskedLM:
    b = xp["base"]
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=b["hidden"], num_hidden_layers=b["layers"],
                        num_attention_heads=b["heads"], intermediate_size=b["intermediate"],
                        max_position_embeddings=b["max_position"], pad_token_id=tokenizer.pad_token_id)
    set_seed(b["seed"])
    return BertForMaskedLM(config)


def perplexities(model, tokenizer, params) -> dict:
    out = {}
    for name in ("news", "imdb"):
        texts = Dataset.from_parquet(str(DATA / f"heldout_{name}.parquet"))
        blocks = heldout_blocks(texts, tokenizer, params.pretrain, shuffle_seed=params.task.seed)
        r = mlm_perplexity(model, blocks, tokenizer, params.pretrain, params.train.precision,
                           mask_seed=params.task.seed)
        out[f"perplexity_{name}"], out[f"masked_tokens_{name}"] = r["perplexity"], r["masked_tokens"]
    return out


def build_base(xp: dict) -> dict:
    params = pipeline_params(xp)
    tokenizer = load_tokenizer(xp["base"]["tokenizer"], params.model.trust_remote_code)
    model = init_model(xp, tokenizer)
    if torch.cuda.is_available():
        model.to("cuda")
    corpus = Dataset.from_parquet(str(DATA / "train.parquet"))
    run_id = f"{xp}"  # a changed param never resumes another run's checkpoint
    stats = continue_pretraining(model, tokenizer, corpus, params.pretrain, params.train, WORK_DIR, run_id)
    curve = stats.pop("curve")
    heldout = perplexities(model, tokenizer, params)
    with atomic_dir(MODEL) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_csv(HERE / "plots" / "base_loss.csv", curve, ["step", "loss"])
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    return {**heldout, "domain_gap": heldout["perplexity_imdb"] / heldout["perplexity_news"],
            "parameters": sum(p.numel() for p in model.parameters()),
            "corpus_tokens_per_pass": stats["corpus_blocks"] * stats["block_size"], **stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.positive_control.build_base")
    parser.add_argument("step", choices=("corpus", "base"))
    step = parser.parse_args(argv).step
    try:
        xp = load_xp()
        start = time.time()
        metrics = build_data(xp) if step == "corpus" else build_base(xp)
        metrics["seconds"] = round(time.time() - start, 1)
        write_json(METRICS / f"{step}.json", metrics)
        print(yaml.safe_dump({k: v for k, v in metrics.items() if not isinstance(v, list)}, sort_keys=False))
    except ConfigError as exc:
        print(f"\n[positive_control:{step}] error: {exc}\n", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
