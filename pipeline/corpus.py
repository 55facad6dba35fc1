"""MLM corpora: sources from `corpora/*.yaml`, cleaning, dedup, leakage guard, equal token budget.

The strategies differ only in the corpus, so everything that makes them comparable lives
here: the same cleaning for every source, no dev/test text of the task in any corpus, and
the same number of tokens offered to `pretrain` (which then trains on exactly
`pretrain.max_tokens` tokens, repeating a small corpus with fresh masking).
"""

from __future__ import annotations

import glob
import hashlib
import html
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from datasets import Dataset, concatenate_datasets, load_dataset

from pipeline.config import ConfigError, Params
from pipeline.data import LOCAL_FORMATS, load_prepared
from pipeline.io import OFFLINE_HELP, atomic_dir, require_hub

TASK_SOURCE = "task:train"  # a source path that means: the prepared task train split
SOURCE_KEYS = {"name", "path", "config", "split", "text_field", "weight", "licence", "min_chars", "max_chars"}
_TAG = re.compile(r"<[^>]{0,200}>")
_BREAK = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")
_WORD = re.compile(r"[a-z0-9]+")


# ---------------------------------------------------------------------------- spec
def load_spec(corpora_dir: str | Path, source: str) -> dict:
    """Read and validate `corpora_dir/<source>.yaml`."""
    path = Path(corpora_dir) / f"{source}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: corpus definition for pretrain.source `{source}` not found; create it or "
                          f"set collect.corpora_dir to the folder that has it.")
    with path.open(encoding="utf-8") as fh:
        spec = yaml.safe_load(fh) or {}
    sources = spec.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ConfigError(f"{path}: `sources` must be a non-empty list of sources (each with `path`).")
    for i, src in enumerate(sources):
        where = f"{path}: sources[{i}]"
        if not isinstance(src, dict) or "path" not in src:
            raise ConfigError(f"{where}: each source needs a `path` (hub id, local file, glob or directory).")
        unknown = set(src) - SOURCE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(SOURCE_KEYS)}.")
        weight = src.setdefault("weight", 1.0)
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise ConfigError(f"{where}: `weight` must be a positive number, got {weight!r}.")
        src.setdefault("name", Path(str(src["path"]).rstrip("/")).name.split(".")[0] or f"source{i}")
        src.setdefault("split", "train")
        src.setdefault("text_field", "text")
        src["where"] = where
    spec["path"] = str(path)
    return spec


def _local_files(path: str) -> list[Path]:
    p = Path(path).expanduser()
    if p.is_dir():
        return sorted(f for f in p.iterdir() if any(f.name.endswith(ext) for ext in LOCAL_FORMATS))
    if any(ch in path for ch in "*?["):
        return [Path(f) for f in sorted(glob.glob(str(p)))]
    return [p] if p.is_file() else []


def _is_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or Path(path).expanduser().exists() or any(c in path for c in "*?[")


def load_source(src: dict, task_dir: str | Path) -> Dataset:
    """One source as a Dataset with a single `text` column."""
    path, field, where = str(src["path"]), src["text_field"], src["where"]
    if path == TASK_SOURCE:
        ds = load_prepared("train", task_dir)
        field = "text"
    elif _is_local(path):
        files = _local_files(path)
        if not files:
            raise ConfigError(f"{where}: `{path}` matches no file; fix the path (relative paths are taken from "
                              f"the project root) or drop the source.")
        parts = []
        for f in files:
            builder = next((b for ext, b in LOCAL_FORMATS.items() if f.name.endswith(ext)), None)
            if builder is None:
                raise ConfigError(f"{where}: {f} has an unknown format; use {', '.join(LOCAL_FORMATS)}.")
            try:
                parts.append(load_dataset(builder, data_files=str(f), split="train"))
            except Exception as exc:
                raise ConfigError(f"{where}: {f} cannot be read as {builder} ({type(exc).__name__}: {exc}).") from exc
        ds = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    else:
        require_hub(f"{where}.path", path)
        try:
            ds = load_dataset(path, src.get("config"), split=src["split"])
        except Exception as exc:
            raise ConfigError(f"{where}: loading `{path}` from the Hub failed ({type(exc).__name__}: {exc}). "
                              f"Point `path` at local files instead. {OFFLINE_HELP}") from exc
    if field not in ds.column_names:
        raise ConfigError(f"{where}: no field `{field}` in `{path}`; it has {', '.join(ds.column_names)}. "
                          f"Set `text_field`.")
    return ds.select_columns([field]).rename_column(field, "text") if field != "text" else ds.select_columns(["text"])


# ---------------------------------------------------------------------------- cleaning
def clean_text(text: str | None) -> str:
    """HTML breaks to newlines, tags dropped, entities unescaped, NFKC, whitespace collapsed."""
    if not text:
        return ""
    text = _BREAK.sub("\n", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text)
    text = _SPACE.sub(" ", text)
    text = _BLANKS.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def normalised_hash(text: str) -> str:
    """Hash of the text lower-cased with only [a-z0-9] kept: catches copies that differ in markup."""
    return hashlib.blake2b("".join(_WORD.findall(text.lower())).encode(), digest_size=16).hexdigest()


def _clean_batch(batch: dict, min_chars: int, max_chars: int | None) -> dict:
    out = {"text": [], "hash": [], "rule": []}
    for raw in batch["text"]:
        text = clean_text(raw)
        rule = ""
        if not text:
            rule = "empty"
        elif len(text) < min_chars:
            rule = "too_short"
        elif max_chars and len(text) > max_chars:
            rule = "too_long"
        out["text"].append(text)
        out["hash"].append(normalised_hash(text))
        out["rule"].append(rule)
    return out


def heldout_hashes(task_dir: str | Path) -> set[str]:
    """Normalised hashes of the task's dev and test text: none of it may enter a corpus."""
    hashes = set()
    for split in ("dev", "test"):
        hashes.update(normalised_hash(clean_text(t)) for t in load_prepared(split, task_dir)["text"])
    return hashes


def top_unigrams(texts, k: int = 10_000) -> set[str]:
    counts = Counter()
    for text in texts:
        counts.update(_WORD.findall(text.lower()))
    return {w for w, _ in counts.most_common(k)}


# ---------------------------------------------------------------------------- build
def build_corpus(params: Params, tokenizer, task_dir: str | Path = "data/task",
                 out_dir: str | Path = "data/corpus") -> dict:
    """Write `out_dir/corpus.parquet` (text, source, tokens) for `pretrain.source`; return the stats."""
    source = params.pretrain.source
    stats: dict = {"source": source, "budget_tokens": params.pretrain.max_tokens}
    if source == "none":
        with atomic_dir(out_dir) as tmp:
            Dataset.from_dict({"text": [], "source": [], "tokens": []}).to_parquet(str(tmp / "corpus.parquet"))
        return {**stats, "docs": 0, "tokens": 0, "sources": {}}

    spec = load_spec(params.collect.corpora_dir, source)
    if source != "task" and any(str(s["path"]) == TASK_SOURCE for s in spec["sources"]):
        raise ConfigError(f"{spec['path']}: `{TASK_SOURCE}` belongs in task.yaml only; other strategies "
                          f"must not see the task's text.")
    for src in spec["sources"]:
        if str(src["path"]) not in (TASK_SOURCE,) and src.get("split") == params.task.test_split \
                and str(src["path"]) == params.task.dataset:
            raise ConfigError(f"{src['where']}: this source is the task's test split; test text never "
                              f"enters an MLM corpus. Remove it.")
    banned = heldout_hashes(task_dir)
    num_proc = params.collect.num_proc if params.collect.num_proc > 1 else None
    total_weight = sum(float(s["weight"]) for s in spec["sources"])
    rng = np.random.default_rng(params.seed)
    seen: set[str] = set()
    dropped = Counter()
    parts, per_source = [], {}
    for src in spec["sources"]:
        raw = load_source(src, task_dir)
        docs_in = len(raw)
        cleaned = raw.map(_clean_batch, batched=True, num_proc=num_proc,
                          fn_kwargs={"min_chars": int(src.get("min_chars", params.collect.min_chars)),
                                     "max_chars": src.get("max_chars")},
                          desc=f"clean {src['name']}")
        rules, hashes = cleaned["rule"], cleaned["hash"]
        keep = []
        for i, (rule, h) in enumerate(zip(rules, hashes)):
            if rule:
                dropped[rule] += 1
            elif h in banned:
                dropped["leaked"] += 1
            elif h in seen:
                dropped["duplicate"] += 1
            else:
                seen.add(h)
                keep.append(i)
        kept = cleaned.select(keep).select_columns(["text"])
        kept = kept.map(lambda b: {"tokens": [len(x) for x in tokenizer(b["text"])["input_ids"]]},
                        batched=True, num_proc=num_proc, desc=f"count tokens {src['name']}")
        # Sample by weight: shuffle with the seed, then take documents until this source's
        # share of the budget is met (a source that runs short gives what it has).
        share = params.pretrain.max_tokens * float(src["weight"]) / total_weight
        order = rng.permutation(len(kept))
        cum = np.cumsum(np.asarray(kept["tokens"], dtype=np.int64)[order]) if len(kept) else np.zeros(0)
        n_take = int(np.searchsorted(cum, share, side="left") + 1) if len(kept) else 0
        n_take = min(n_take, len(kept))
        taken = kept.select(np.sort(order[:n_take]))
        taken = taken.add_column("source", [src["name"]] * len(taken))
        parts.append(taken)
        tokens = int(sum(taken["tokens"]))
        per_source[src["name"]] = {"docs_in": docs_in, "docs_kept": len(kept), "docs": len(taken),
                                   "tokens": tokens, "weight": float(src["weight"]) / total_weight,
                                   "licence": src.get("licence", "")}
    corpus = concatenate_datasets(parts).shuffle(seed=params.seed).flatten_indices()
    if len(corpus) == 0:
        raise ConfigError(f"{spec['path']}: the corpus is empty after cleaning, dedup and the leakage guard "
                          f"(dropped: {dict(dropped)}); add sources or lower collect.min_chars.")
    tokens = np.asarray(corpus["tokens"])
    total = int(tokens.sum())
    for entry in per_source.values():
        entry["share"] = entry["tokens"] / total
    task_vocab = top_unigrams(load_prepared("train", task_dir)["text"])
    corpus_vocab = top_unigrams(corpus["text"])
    stats.update({
        "docs": len(corpus), "tokens": total,
        "mean_tokens": float(tokens.mean()), "median_tokens": float(np.median(tokens)),
        "budget_coverage": total / params.pretrain.max_tokens,
        "dropped": {k: int(dropped[k]) for k in ("empty", "too_short", "too_long", "duplicate", "leaked")},
        "duplicates_removed": int(dropped["duplicate"]), "leaked_removed": int(dropped["leaked"]),
        "vocab_overlap": len(task_vocab & corpus_vocab) / max(1, len(task_vocab)),
        "sources": per_source,
    })
    with atomic_dir(out_dir) as tmp:
        corpus.to_parquet(str(tmp / "corpus.parquet"))
    return stats


def load_corpus(corpus_dir: str | Path = "data/corpus") -> Dataset:
    """The corpus `collect` wrote (memory-mapped Arrow); the `none` corpus is empty."""
    import pyarrow.parquet as pq

    path = Path(corpus_dir) / "corpus.parquet"
    if not path.exists():
        raise ConfigError(f"{path}: missing; run the `collect` stage first (dvc repro collect).")
    if pq.ParquetFile(path).metadata.num_rows == 0:
        return Dataset.from_dict({"text": [], "source": [], "tokens": []})
    return Dataset.from_parquet(str(path))
