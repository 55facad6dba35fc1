"""MLM corpora: sources from `corpora/*.yaml`, cleaning, dedup, leakage guard, selection, equal token budget.

The strategies differ only in the corpus, so everything that makes them comparable lives
here: the same cleaning for every source, no dev/test text of the task in any corpus (exact
or near copies), no near-duplicates inside a corpus, and the same number of tokens offered to
`pretrain` (which then trains on exactly `pretrain.max_tokens` tokens, repeating a small
corpus with fresh masking).

How a corpus is built, with memory that does not grow with the pool's text:
1. every source is cleaned in a batched `datasets.map` (`collect.num_proc` processes) that also
   writes each document's normalised-hash key and MinHash signature (datasketch) to Arrow files
   on disk;
2. one screening pass over those Arrow columns drops the cleaning rules, exact and near copies
   of the task's dev/test text (a datasketch MinHashLSH over the held-out text, bounded by the
   task's size) and exact duplicates (numpy over 8-byte keys);
3. optionally (`collect.select: tfidf`, in_domain only) the documents nearest to the task's
   train text are selected from the pool (scikit-learn TF-IDF + nearest neighbours);
4. documents are drawn in seeded random order, by source weight, until each source's share of
   the budget is met; a drawn document that is a near-duplicate of one already in the corpus
   (MinHashLSH over the corpus, so its size follows the budget, not the pool) is dropped.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, List, Value, concatenate_datasets
from datasets.utils.tqdm import tqdm

from pipeline.config import Collect, ConfigError, Pretrain, Task
from pipeline.console import budget_lines, shortfall
from pipeline.corpus_spec import check_sources, load_source, load_spec
from pipeline.data import load_prepared
from pipeline.dedup import ContainmentIndex, NearIndex, clean_text, keys_and_signatures, words
from pipeline.io import atomic_dir

# Screening outcome per document; `near_duplicate` is decided while drawing (see module doc).
RULES = ("kept", "empty", "too_short", "too_long", "leaked", "leaked_near", "leaked_ngram", "duplicate")
_CODE = {rule: i for i, rule in enumerate(RULES)}
DROP_KEYS = ("empty", "too_short", "too_long", "leaked", "leaked_near", "leaked_ngram", "duplicate", "near_duplicate")
BUDGET_TOLERANCE = 0.001  # a source stops drawing once within 0.1% of its share of the budget
MAX_MISFITS = 1000  # ... or after this many drawn documents in a row too long for what is left
DRAW_CHUNK = 512  # documents tokenised at a time while drawing


def _features(num_perm: int) -> Features:
    return Features({"text": Value("string"), "key": Value("int64"), "rule": Value("string"),
                     "minhash": List(Value("uint32"), length=num_perm)})


def _prepare_batch(batch: dict, min_chars: int, max_chars: int | None, shingle_words: int,
                   num_perm: int) -> dict:
    """Clean, apply the length rules, and compute the exact-dedup key and the MinHash signature."""
    out = {"text": [], "rule": []}
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
        out["rule"].append(rule)
    keys, minhashes = keys_and_signatures(out["text"], shingle_words, num_perm)
    return {"text": out["text"], "key": keys, "rule": out["rule"], "minhash": minhashes}


def prepare_texts(ds: Dataset, c: Collect, min_chars: int, max_chars: int | None = None,
                  desc: str = "clean") -> Dataset:
    """`text` -> cleaned `text`, `key`, `rule` (why it is dropped, or ""), `minhash`; Arrow on disk."""
    return ds.map(_prepare_batch, batched=True, num_proc=c.num_proc if c.num_proc > 1 else None,
                  remove_columns=ds.column_names, features=_features(c.minhash_perm),
                  fn_kwargs={"min_chars": min_chars, "max_chars": max_chars,
                             "shingle_words": c.shingle_words, "num_perm": c.minhash_perm},
                  desc=desc)


def top_unigrams(texts, k: int = 10_000) -> set[str]:
    counts = Counter()
    for text in texts:
        counts.update(words(text))
    return {w for w, _ in counts.most_common(k)}


@dataclass
class Heldout:
    """What no corpus document may contain of the task's dev and test text: exact copies (sorted
    normalised keys), near copies (MinHash Jaccard) and long runs (n-gram containment)."""
    keys: np.ndarray
    near: NearIndex
    ngrams: ContainmentIndex


def heldout_index(c: Collect, task_dir: str | Path) -> Heldout:
    """The leakage guard's three indexes over the task's dev and test text."""
    texts = concatenate_datasets([load_prepared(s, task_dir).select_columns(["text"]) for s in ("dev", "test")])
    prepared = prepare_texts(texts, c, min_chars=0, desc="hash task dev+test")
    index = NearIndex(c.near_dup_threshold, c.minhash_perm)
    view = prepared.select_columns(["rule", "minhash"]).with_format("numpy")
    for batch in view.iter(batch_size=1000):
        for rule, sig in zip(batch["rule"], batch["minhash"].astype(np.uint32)):
            if rule != "empty":
                index.add(sig)
    ngrams = ContainmentIndex(prepared["text"], c.leak_ngram, c.leak_containment)
    return Heldout(np.unique(np.asarray(prepared["key"], dtype=np.int64)), index, ngrams)


# ---------------------------------------------------------------------------- screening and drawing
def screen(prepared: Dataset, heldout: Heldout, prior_keys: np.ndarray,
           desc: str = "screen") -> tuple[np.ndarray, np.ndarray]:
    """One pass over a prepared source: a code from RULES per document (0 = kept), and the kept keys.

    Order of the rules: cleaning (empty, too short/long), exact copy of dev/test text, near copy
    of dev/test text, a long run of dev/test text (n-gram containment), exact duplicate of an
    earlier document (this source or `prior_keys`).
    """
    n = len(prepared)
    codes = np.zeros(n, dtype=np.int8)
    keys = np.zeros(n, dtype=np.int64)
    view = prepared.select_columns(["text", "rule", "key", "minhash"]).with_format("numpy")
    pos = 0
    with tqdm(total=n, desc=desc, unit="doc") as bar:
        for batch in view.iter(batch_size=2000):
            m = len(batch["key"])
            part = codes[pos:pos + m]  # a view: writes land in `codes`
            part[:] = [_CODE[r or "kept"] for r in batch["rule"]]
            keys[pos:pos + m] = batch["key"]
            ok = part == 0
            leaked = ok & np.isin(batch["key"], heldout.keys)
            part[leaked] = _CODE["leaked"]
            sigs = batch["minhash"].astype(np.uint32)
            for j in np.flatnonzero(ok & ~leaked):
                if heldout.near.contains(sigs[j]):
                    part[j] = _CODE["leaked_near"]
                elif heldout.ngrams.contains(batch["text"][j]):
                    part[j] = _CODE["leaked_ngram"]
            pos += m
            bar.update(m)
    # Exact duplicates, vectorised over 8-byte keys: the first copy in source order is kept.
    ok = np.flatnonzero(codes == 0)
    _, first = np.unique(keys[ok], return_index=True)
    later = np.ones(len(ok), dtype=bool)
    later[first] = False
    codes[ok[later | np.isin(keys[ok], prior_keys)]] = _CODE["duplicate"]
    return codes, keys[codes == 0]


def draw(ds: Dataset, rows: np.ndarray, target: float, tokenizer, corpus_index: NearIndex,
         rng: np.random.Generator, desc: str = "draw") -> tuple[list[int], list[int], int]:
    """Draw rows of `ds` in seeded random order until `target` tokens; return rows, tokens, near dups.

    A document that does not fit in what is left of the target is passed over (so the total
    stays at or just below the target, with whole documents), and one that is a near-duplicate
    of a document already in the corpus is dropped. Only drawn documents are tokenised and
    indexed, so the work and memory follow the budget, not the size of the pool.
    """
    order = rows[rng.permutation(len(rows))]
    view = ds.with_format("numpy", columns=["minhash"], output_all_columns=True)
    taken, tokens, near, misfits = [], [], 0, 0
    remaining, tolerance = float(target), BUDGET_TOLERANCE * target
    with tqdm(total=int(target), desc=desc, unit="tok") as bar:
        for start in range(0, len(order), DRAW_CHUNK):
            if remaining <= tolerance or misfits >= MAX_MISFITS:
                break
            idx = order[start:start + DRAW_CHUNK]
            batch = view[idx.tolist()]
            lengths = [len(ids) for ids in tokenizer(batch["text"], verbose=False)["input_ids"]]
            sigs = batch["minhash"].astype(np.uint32)
            # A loop, not a vectorised cut: each decision depends on what was taken before it.
            for j, length in enumerate(lengths):
                if remaining <= tolerance or misfits >= MAX_MISFITS:
                    break
                if length > remaining:
                    misfits += 1
                    continue
                if corpus_index.contains(sigs[j]):
                    near += 1
                    continue
                corpus_index.add(sigs[j])
                taken.append(int(idx[j]))
                tokens.append(length)
                remaining -= length
                misfits = 0
                bar.update(length)
    return taken, tokens, near


def select_nearest(pool: Dataset, task_texts: list[str], k: int, num_proc: int) -> tuple[np.ndarray, dict]:
    """Rows of `pool` whose TF-IDF cosine similarity to their nearest task train text is highest.

    Curated TAPT (Gururangan et al. 2020, section 5): the in-domain documents nearest to the
    task's own text. One TF-IDF space is fitted on the task text and the pool; each pool
    document is scored by the cosine similarity of its nearest task document.
    """
    from sklearn import config_context
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    pool_texts = (t for batch in pool.select_columns(["text"]).iter(batch_size=1000) for t in batch["text"])
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, dtype=np.float32)
    matrix = vectorizer.fit_transform(itertools.chain(task_texts, tqdm(pool_texts, total=len(pool),
                                                                        desc="tf-idf pool", unit="doc")))
    task_matrix, pool_matrix = matrix[:len(task_texts)], matrix[len(task_texts):]
    with config_context(working_memory=256):  # MiB per chunk of the distance matrix
        nn = NearestNeighbors(n_neighbors=1, metric="cosine", algorithm="brute", n_jobs=num_proc)
        distance, _ = nn.fit(task_matrix).kneighbors(pool_matrix)
    similarity = 1.0 - distance[:, 0]
    chosen = np.sort(np.argsort(-similarity, kind="stable")[:k])
    return chosen, {"method": "tfidf", "pool": len(pool), "k": k, "selected": int(len(chosen)),
                    "similarity_pool_mean": float(similarity.mean()),
                    "similarity_selected_mean": float(similarity[chosen].mean()) if len(chosen) else 0.0,
                    "similarity_selected_min": float(similarity[chosen].min()) if len(chosen) else 0.0}


# ---------------------------------------------------------------------------- build
def screen_sources(spec: dict, c: Collect, heldout: Heldout, task_dir: str | Path) -> list[dict]:
    """Step 1: clean and screen every document of every source (see the module doc).

    One entry per source: its prepared Arrow dataset, the rows that passed every rule, and
    its report (documents in and kept, dropped per rule, weight, licence)."""
    total_weight = sum(float(s["weight"]) for s in spec["sources"])
    screened, prior_keys = [], np.zeros(0, dtype=np.int64)
    for src in spec["sources"]:
        files: dict = {}
        raw = load_source(src, task_dir, files)
        ds = prepare_texts(raw, c, int(src.get("min_chars", c.min_chars)), src.get("max_chars"),
                           desc=f"clean {src['name']}")
        codes, kept_keys = screen(ds, heldout, prior_keys, desc=f"screen {src['name']}")
        prior_keys = np.concatenate([prior_keys, kept_keys])
        counts = np.bincount(codes, minlength=len(RULES))
        rows = np.flatnonzero(codes == 0)
        screened.append({"src": src, "ds": ds, "rows": rows, "report": {
            "docs_in": len(raw), "docs_kept": len(rows), "files": files,
            "dropped": {rule: int(counts[_CODE[rule]]) for rule in RULES[1:]} | {"near_duplicate": 0},
            "weight": float(src["weight"]) / total_weight, "licence": src.get("licence", ""),
        }})
    return screened


def select_groups(screened: list[dict], c: Collect, pretrain: Pretrain, spec: dict, task_dir: str | Path,
                  rng: np.random.Generator) -> tuple[list[tuple], dict]:
    """Step 2: what to draw from: one group per source with its share of the budget, or, with
    `collect.select: tfidf` (in_domain), the selected documents as one group. Returns the groups
    (dataset, rows, target tokens, source name or None when the dataset has a source column)
    and the selection report."""
    source = pretrain.source
    selection: dict = {"method": c.select}
    if c.select != "none" and source != "in_domain":
        selection = {"method": "none", "note": f"collect.select={c.select} applies to in_domain only"}
    if not (c.select == "tfidf" and source == "in_domain"):
        groups, total_weight = [], sum(float(e["src"]["weight"]) for e in screened)
        for entry in screened:
            target = pretrain.max_tokens * float(entry["src"]["weight"]) / total_weight
            entry["report"]["target_tokens"] = round(target, 1)
            groups.append((entry["ds"], entry["rows"], target, entry["src"]["name"]))
        return groups, selection
    n_eligible = sum(len(e["rows"]) for e in screened)
    pool_ids = np.sort(rng.choice(n_eligible, size=min(c.select_pool, n_eligible), replace=False))
    offsets = np.cumsum([0] + [len(e["rows"]) for e in screened])
    pool_parts = []
    for i, entry in enumerate(screened):
        mine = pool_ids[(pool_ids >= offsets[i]) & (pool_ids < offsets[i + 1])] - offsets[i]
        if len(mine):
            part = entry["ds"].select(entry["rows"][mine]).flatten_indices()
            pool_parts.append(part.add_column("source", [entry["src"]["name"]] * len(part)))
    if not pool_parts:
        raise ConfigError(f"{spec['path']}: nothing left to select from after cleaning, dedup and the "
                          f"leakage guard; add sources or lower collect.min_chars.")
    pool = concatenate_datasets(pool_parts)
    task_texts = [clean_text(t) for t in load_prepared("train", task_dir)["text"]]
    chosen, selection = select_nearest(pool, task_texts, c.select_k, c.num_proc)
    selection["weights_applied"] = False
    selection["per_source"] = dict(Counter(pool.select(chosen)["source"]))
    return [(pool, chosen, float(pretrain.max_tokens), None)], selection


def draw_corpus(groups: list[tuple], tokenizer, c: Collect, seed: int, reports: dict, selection: dict,
                rng: np.random.Generator) -> Dataset:
    """Step 3: draw each group to its target (near duplicates of drawn documents dropped and
    counted in `reports` / `selection`), then shuffle the whole corpus with the seed."""
    corpus_index = NearIndex(c.near_dup_threshold, c.minhash_perm)
    parts = []
    for ds, rows, target, name in groups:
        taken, tokens, near = draw(ds, rows, target, tokenizer, corpus_index, rng, desc=f"draw {name or 'selected'}")
        order = np.argsort(taken, kind="stable")
        part = ds.select(np.asarray(taken, dtype=np.int64)[order])
        part = part.select_columns(["text"] + (["source"] if name is None else []))
        if name is not None:
            part = part.add_column("source", [name] * len(part))
            reports[name]["dropped"]["near_duplicate"] += near
        else:  # selected documents: attribute the near duplicates to no source, report them in total
            selection["near_duplicates"] = near
        parts.append(part.add_column("tokens", [tokens[i] for i in order]))
    return concatenate_datasets(parts).shuffle(seed=seed).flatten_indices()


def corpus_stats(corpus: Dataset, reports: dict, selection: dict, c: Collect, max_tokens: int, heldout: Heldout,
                 task_dir: str | Path) -> dict:
    """Step 4: the figures of `metrics/corpus.json` (docs/design.md: what each stage writes)."""
    tokens = np.asarray(corpus["tokens"], dtype=np.int64)
    total = int(tokens.sum())
    by_source, docs_by_source = Counter(), Counter()
    for name, n in zip(corpus["source"], tokens):
        by_source[name] += int(n)
        docs_by_source[name] += 1
    for name, entry in reports.items():
        entry.update({"docs": docs_by_source[name], "tokens": by_source[name], "share": by_source[name] / total})
        short = shortfall(entry)
        entry["fell_short"] = short[0] if short else None
    dropped = {k: sum(s["dropped"][k] for s in reports.values()) for k in DROP_KEYS}
    dropped["near_duplicate"] += selection.get("near_duplicates", 0)
    task_vocab = top_unigrams(clean_text(t) for t in load_prepared("train", task_dir)["text"])
    corpus_vocab = top_unigrams(corpus["text"])
    lsh = NearIndex(c.near_dup_threshold, c.minhash_perm).lsh
    return {
        "docs": len(corpus), "tokens": total,
        "mean_tokens": float(tokens.mean()), "median_tokens": float(np.median(tokens)),
        "budget_coverage": total / max_tokens,
        "docs_in": sum(s["docs_in"] for s in reports.values()),
        "docs_kept": sum(s["docs_kept"] for s in reports.values()),
        "dropped": dropped,
        "duplicates_removed": dropped["duplicate"] + dropped["near_duplicate"],
        "exact_duplicates_removed": dropped["duplicate"],
        "near_duplicates_removed": dropped["near_duplicate"],
        "leaked_removed": dropped["leaked"] + dropped["leaked_near"] + dropped["leaked_ngram"],
        "leaked_exact": dropped["leaked"], "leaked_near": dropped["leaked_near"],
        "leaked_ngram": dropped["leaked_ngram"],
        "leak_guard": {"ngram": c.leak_ngram, "containment": c.leak_containment,
                       "heldout_ngrams": int(len(heldout.ngrams.hashes))},
        "vocab_overlap": len(task_vocab & corpus_vocab) / max(1, len(task_vocab)),
        "near_dup": {"threshold": c.near_dup_threshold, "num_perm": c.minhash_perm,
                     "shingle_words": c.shingle_words, "lsh_bands": lsh.b, "lsh_rows": lsh.r},
        "selection": selection,
        "sources": reports,
    }


def build_corpus(task: Task, c: Collect, pretrain: Pretrain, tokenizer, task_dir: str | Path = "data/task",
                 out_dir: str | Path = "data/corpus") -> dict:
    """Write `out_dir/corpus.parquet` (text, source, tokens) for `pretrain.source`; return the stats.

    Steps: screen every source (clean, leak guard, exact dedup), select what to draw from,
    draw to the budget (near dedup), and the stats."""
    source = pretrain.source
    stats: dict = {"source": source, "budget_tokens": pretrain.max_tokens}
    if source == "none":
        with atomic_dir(out_dir) as tmp:
            Dataset.from_dict({"text": [], "source": [], "tokens": []}).to_parquet(str(tmp / "corpus.parquet"))
        return {**stats, "docs": 0, "tokens": 0, "duplicates_removed": 0, "near_duplicates_removed": 0,
                "leaked_removed": 0, "sources": {}}

    spec = load_spec(c.corpora_dir, source)
    check_sources(spec, task, source)
    heldout = heldout_index(c, task_dir)
    rng = np.random.default_rng(pretrain.seed)
    screened = screen_sources(spec, c, heldout, task_dir)
    reports = {e["src"]["name"]: e["report"] for e in screened}
    groups, selection = select_groups(screened, c, pretrain, spec, task_dir, rng)
    corpus = draw_corpus(groups, tokenizer, c, pretrain.seed, reports, selection, rng)
    if len(corpus) == 0:
        dropped = {k: sum(s["dropped"][k] for s in reports.values()) for k in DROP_KEYS}
        raise ConfigError(f"{spec['path']}: the corpus is empty after cleaning, dedup and the leakage guard "
                          f"(dropped: {dropped}); add sources or lower collect.min_chars.")
    stats.update(corpus_stats(corpus, reports, selection, c, pretrain.max_tokens, heldout, task_dir))
    for line in budget_lines(stats):  # pipeline.console
        print(line, flush=True)
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
