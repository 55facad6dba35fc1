"""MLM corpora: sources from `corpora/*.yaml`, cleaning, dedup, leakage guard, selection, equal token budget.

The strategies differ only in the corpus, so everything that makes them comparable lives
here: the same cleaning for every source, no dev/test text of the task in any corpus (exact
or near copies), no near-duplicates inside a corpus, and the same number of tokens offered to
`pretrain` (which then trains on exactly `pretrain.max_tokens` tokens, repeating a small
corpus with fresh masking).

How a corpus is built, with memory that does not grow with the pool:
1. the pool (pipeline/pool.py, datatrove, `collect.num_proc` tasks): every source cleaned, its
   length rules applied, exact, near and n-gram copies of the task's dev/test text dropped
   (`Heldout`, bounded by the task's size), each document tokenised once, and exact and near
   duplicates removed over the whole pool (MinHash bands on disk, candidates confirmed by Jaccard);
2. optionally (`collect.select: tfidf`, in_domain only) the documents nearest to the task's
   train text are selected from the pool (scikit-learn TF-IDF + nearest neighbours);
3. documents are drawn in seeded random order (over a content order, so no task split changes
   it), by source weight, until each source's share of the budget is met, from the pool's
   token counts; the drawn documents' text and token ids are written, shuffled with the seed.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from datasets import Dataset
from datasets.utils.tqdm import tqdm

from pipeline.artifacts import EMPTY_CORPUS, load_prepared
from pipeline.collect_steps import DROP_REASONS, LEAK_REASONS
from pipeline.config import Collect, ConfigError, Dedup, Pretrain, Task
from pipeline.corpus_spec import check_sources, load_source, load_spec
from pipeline.dedup import ContainmentIndex, NearIndex, clean_text, heldout_copies, words
from pipeline.io import atomic_dir, only_one, remove_path, write_json
from pipeline.pool import Pool, build_pool, check_executor, lsh_banding, per_source_counts, read_documents

BUDGET_TOLERANCE = 0.001  # a source stops drawing once within 0.1% of its share of the budget
MAX_MISFITS = 1000  # ... or after this many drawn documents in a row too long for what is left
VOCAB_SAMPLE = 50_000  # corpus documents whose words give the corpus's top unigrams (shuffled: a random sample)
WRITE_PIECE = 2000  # drawn documents written to the corpus at a time
SHUFFLE_PIECE = 10_000  # corpus rows written at a time (a Parquet row group), in shuffled order
MAX_PIECES = 500  # files the shuffle keeps open at once, under the usual limit of 1,024 open files


def parquet_texts(path: Path, batch_size: int = 2000):
    """The `text` column of a Parquet file, a batch at a time."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=["text"]):
        yield from batch.column("text").to_pylist()


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


def heldout_index(c: Collect, d: Dedup, task_dir: str | Path) -> Heldout:
    """The leakage guard's three indexes over the task's dev and test text: the exact and near copies of
    pipeline.dedup.heldout_copies (`prepare`'s train-overlap check uses the same), and the n-gram runs."""
    texts = [t for s in ("dev", "test") for t in load_prepared(s, task_dir)["text"]]
    cleaned, keys, near = heldout_copies(texts, d)
    return Heldout(keys, near, ContainmentIndex(cleaned, c.leak_ngram, c.leak_containment))


# ---------------------------------------------------------------------------- drawing
def draw(tokens: np.ndarray, target: float, rng: np.random.Generator) -> list[int]:
    """Positions of `tokens` drawn in seeded random order until `target` tokens.

    A document that does not fit in what is left of the target is passed over (so the total stays at or
    just below the target, with whole documents). The counts come from the pool (`collect` tokenised
    every document once): nothing is tokenised here.
    """
    taken, misfits = [], 0
    remaining, tolerance = float(target), BUDGET_TOLERANCE * target
    # A loop, not a vectorised cut: each decision depends on what was taken before it.
    for i in rng.permutation(len(tokens)).tolist():
        if remaining <= tolerance or misfits >= MAX_MISFITS:
            break
        length = int(tokens[i])
        if length > remaining:
            misfits += 1
            continue
        taken.append(i)
        remaining -= length
        misfits = 0
    return taken


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
def source_reports(spec: dict, pool: Pool, files: dict) -> dict:
    """Per source: documents in and kept, dropped per rule, weight, licence, its files' counts."""
    total_weight = sum(float(s["weight"]) for s in spec["sources"])
    kept = np.bincount(pool.source.astype(np.int64), minlength=len(spec["sources"]))
    return {src["name"]: {"docs_in": int(pool.stats.get(f"docs_in/{src['name']}", 0)), "docs_kept": int(kept[i]),
                          "files": files[src["name"]], "dropped": per_source_counts(pool.stats, src["name"]),
                          "weight": float(src["weight"]) / total_weight, "licence": src.get("licence", "")}
            for i, src in enumerate(spec["sources"])}


def group_rows(pool: Pool, index: int) -> np.ndarray:
    """One source's pool rows in an order set by content alone (exact-copy key, then content hash), so
    that the seeded draw does not depend on how the pool was split over tasks."""
    rows = np.flatnonzero(pool.source == index)
    return rows[np.lexsort((pool.thash[rows], pool.key[rows]))]


def select_groups(pool: Pool, reports: dict, c: Collect, pretrain: Pretrain, spec: dict, task_dir: str | Path,
                  rng: np.random.Generator) -> tuple[list[tuple], dict]:
    """What to draw from: one group per source with its share of the budget, or, with
    `collect.select: tfidf` (in_domain), the selected documents as one group. Returns the groups
    (pool rows, target tokens, source name or None for the selection) and the selection report."""
    source = pretrain.source
    selection: dict = {"method": c.select}
    if c.select != "none" and source != "in_domain":
        selection = {"method": "none", "note": f"collect.select={c.select} applies to in_domain only"}
    if not (c.select == "tfidf" and source == "in_domain"):
        groups, total_weight = [], sum(float(s["weight"]) for s in spec["sources"])
        for i, src in enumerate(spec["sources"]):
            target = pretrain.max_tokens * float(src["weight"]) / total_weight
            reports[src["name"]]["target_tokens"] = round(target, 1)
            groups.append((group_rows(pool, i), target, src["name"]))
        return groups, selection
    ordered = np.concatenate([group_rows(pool, i) for i in range(len(spec["sources"]))])
    if not len(ordered):
        raise ConfigError(f"{spec['path']}: nothing left to select from after cleaning, dedup and the "
                          f"leakage guard; add sources or lower collect.min_chars.")
    candidates = np.sort(ordered[rng.choice(len(ordered), size=min(c.select_pool, len(ordered)), replace=False)])
    docs = dict(read_documents(pool, candidates))
    candidate_set = Dataset.from_dict({"text": [docs[r]["text"] for r in candidates.tolist()],
                                       "source": [docs[r]["source"] for r in candidates.tolist()]})
    task_texts = [clean_text(t) for t in load_prepared("train", task_dir)["text"]]
    chosen, selection = select_nearest(candidate_set, task_texts, c.select_k, c.num_proc)
    selection["weights_applied"] = False
    selection["per_source"] = dict(Counter(candidate_set.select(chosen)["source"]))
    return [(candidates[chosen], float(pretrain.max_tokens), None)], selection


def write_corpus(pool: Pool, rows: np.ndarray, seed: int, tmp_dir: Path) -> Path:
    """The drawn rows' text, source, token count and token ids as `tmp_dir/corpus.parquet`, in the seed's
    shuffled order (the permutation `Dataset.shuffle(seed=seed)` draws, applied to `rows`).

    An external shuffle, in two sequential passes, each holding a piece, not the corpus. Pass 1 streams the
    drawn documents from the pool's files, in pool order, into one Arrow file per piece of the shuffled order
    (`piece_rows` rows each, with each row's place in its piece); pass 2 reads each piece file, puts its
    rows in order and writes it as one Parquet row group. Written by hand because `Dataset.shuffle()
    .to_parquet()` reads rows at random through a memory map, and each mapped read faults in a whole
    page-cache folio (up to megabytes on a current kernel with large folios): RSS grew with the corpus
    (BENCHMARKS.md, "Memory maps")."""
    import pyarrow as pa

    schema = pa.schema([("text", pa.string()), ("source", pa.string()), ("tokens", pa.int64()),
                        ("input_ids", pa.list_(pa.int32()))])
    shuffled = rows[np.random.default_rng(seed).permutation(len(rows))]
    by_row = np.argsort(shuffled)
    size = piece_rows(len(rows))
    folder = tmp_dir / "shuffle"
    folder.mkdir()
    paths = [folder / f"{k:05d}.arrow" for k in range(-(-len(rows) // size))]
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(pa.ipc.new_stream(stack.enter_context(pa.OSFile(str(path), "wb")),
                                                         schema.append(pa.field("place", pa.int64()))))
                   for path in paths]
        docs = read_documents(pool, rows)
        while piece := list(itertools.islice(docs, WRITE_PIECE)):
            table = pa.table({"text": [d["text"] for _, d in piece], "source": [d["source"] for _, d in piece],
                              "tokens": [len(d["input_ids"]) for _, d in piece],
                              "input_ids": [d["input_ids"] for _, d in piece]}, schema=schema)
            place = by_row[np.searchsorted(shuffled, [row for row, _ in piece], sorter=by_row)]
            route(table, place, size, writers)
    out = tmp_dir / "corpus.parquet"
    with pq.ParquetWriter(str(out), schema) as writer:
        for path in paths:
            with pa.OSFile(str(path)) as f:
                table = pa.ipc.open_stream(f).read_all()
            writer.write_table(table.take(np.argsort(table["place"].to_numpy())).drop_columns(["place"]))
            path.unlink()
    folder.rmdir()
    return out


def piece_rows(n: int) -> int:
    """Rows per piece of the shuffle: SHUFFLE_PIECE, or more where that would need over MAX_PIECES files open
    at once (above 5M drawn documents a piece, and so memory, grows with the corpus)."""
    return max(SHUFFLE_PIECE, -(-n // MAX_PIECES))


def route(table, place: np.ndarray, size: int, writers: list) -> None:
    """Append each row of `table` (its shuffled position `place`) to its piece's file, with its place there."""
    import pyarrow as pa

    which = place // size
    table = table.append_column("place", pa.array(place % size))
    by_piece = np.argsort(which, kind="stable")
    ids, first = np.unique(which[by_piece], return_index=True)
    for k, chosen in zip(ids, np.split(by_piece, first[1:])):
        writers[k].write_table(table.take(chosen))


def draw_corpus(pool: Pool, groups: list[tuple], seed: int, rng: np.random.Generator, tmp_dir: Path) -> Path:
    """Draw each group to its target, then write the corpus, shuffled with the seed (`write_corpus`)."""
    drawn = []
    for rows, target, _ in groups:
        taken = draw(pool.tokens[rows], target, rng)
        drawn.append(rows[np.asarray(taken, dtype=np.int64)])
    rows = np.concatenate(drawn) if drawn else np.zeros(0, dtype=np.int64)
    return write_corpus(pool, rows, seed, tmp_dir)


def dropped_total(reports: dict) -> dict:
    """Documents dropped per reason (DROP_REASONS), summed over the sources' reports."""
    return {k: sum(s["dropped"][k] for s in reports.values()) for k in DROP_REASONS}


def corpus_stats(corpus: Path, reports: dict, selection: dict, c: Collect, d: Dedup, max_tokens: int,
                 heldout: Heldout, task_dir: str | Path) -> dict:
    """Step 4: the figures of `metrics/corpus.json` (docs/design.md: what each stage writes) from the corpus's
    Parquet file: its token and source columns, and the text of its first (shuffled: random) documents."""
    columns = pq.read_table(corpus, columns=["tokens", "source"])
    tokens = columns["tokens"].to_numpy().astype(np.int64)
    total = int(tokens.sum())
    per_source = columns.group_by("source").aggregate([("tokens", "sum"), ("tokens", "count")]).to_pydict()
    by_source = Counter(dict(zip(per_source["source"], per_source["tokens_sum"])))  # Arrow: no object per row
    docs_by_source = Counter(dict(zip(per_source["source"], per_source["tokens_count"])))
    for name, entry in reports.items():
        entry.update({"docs": docs_by_source[name], "tokens": by_source[name], "share": by_source[name] / total})
        short = shortfall(entry)
        entry["fell_short"] = short[0] if short else None
    dropped = dropped_total(reports)
    task_vocab = top_unigrams(clean_text(t) for t in load_prepared("train", task_dir)["text"])
    corpus_vocab = top_unigrams(itertools.islice(parquet_texts(corpus), VOCAB_SAMPLE))
    bands, rows = lsh_banding(d)
    return {
        "docs": len(tokens), "tokens": total,
        "mean_tokens": float(tokens.mean()), "median_tokens": float(np.median(tokens)),
        "budget_coverage": total / max_tokens,
        "docs_in": sum(s["docs_in"] for s in reports.values()),
        "docs_kept": sum(s["docs_kept"] for s in reports.values()),
        "dropped": dropped,
        "duplicates_removed": dropped["duplicate"] + dropped["near_duplicate"],
        "exact_duplicates_removed": dropped["duplicate"],
        "near_duplicates_removed": dropped["near_duplicate"],
        "leaked_removed": sum(dropped[k] for k in LEAK_REASONS),
        "leaked_exact": dropped["leaked"], "leaked_near": dropped["leaked_near"],
        "leaked_ngram": dropped["leaked_ngram"],
        "leak_guard": {"ngram": c.leak_ngram, "containment": c.leak_containment,
                       "heldout_ngrams": int(len(heldout.ngrams.hashes))},
        "vocab_overlap": len(task_vocab & corpus_vocab) / max(1, len(task_vocab)),
        "near_dup": {"threshold": d.near_dup_threshold, "num_perm": d.minhash_perm,
                     "shingle_words": d.shingle_words, "lsh_bands": bands, "lsh_rows": rows},
        "selection": selection,
        "sources": reports,
    }


def build_corpus(task: Task, c: Collect, d: Dedup, pretrain: Pretrain, tokenizer, task_dir: str | Path = "data/task",
                 out_dir: str | Path = "data/corpus", made_from: dict | None = None) -> dict:
    """Write `out_dir/corpus.parquet` (text, source, tokens, input_ids) for `pretrain.source`; return the stats.

    Steps: the pool (pipeline/pool.py, datatrove: clean, leak guard, tokenise, near-dedup), what to
    draw from, the seeded draw to the budget, the stats. The pool's work folder (`out_dir` + `.work`)
    is removed on success and on failure. `made_from`: the params the corpus follows from (pipeline.lineage),
    recorded beside it."""
    source = pretrain.source
    stats: dict = {"source": source, "budget_tokens": pretrain.max_tokens}
    if source == "none":
        with atomic_dir(out_dir) as tmp:
            Dataset.from_dict(EMPTY_CORPUS).to_parquet(str(tmp / "corpus.parquet"))
            record_lineage(tmp, made_from)
        return {**stats, "docs": 0, "tokens": 0, "duplicates_removed": 0, "near_duplicates_removed": 0,
                "leaked_removed": 0, "sources": {}}

    with only_one(Path(out_dir).with_name(f".{Path(out_dir).name}.lock"), "`collect`"):
        return _build(task, c, d, pretrain, tokenizer, task_dir, out_dir, made_from, stats)


def _build(task: Task, c: Collect, d: Dedup, pretrain: Pretrain, tokenizer, task_dir, out_dir, made_from,
           stats: dict) -> dict:
    source = pretrain.source
    spec = load_spec(c.corpora_dir, source)
    check_sources(spec, task, source)
    check_executor(c)
    files = {}
    for src in spec["sources"]:  # read and checked here once: each task then opens the cached table
        files[src["name"]] = {}
        load_source(src, task_dir, files[src["name"]])
    heldout = heldout_index(c, d, task_dir)
    work = Path(out_dir).with_name(f"{Path(out_dir).name}.work")
    try:  # the work folder (the pool's files, up to the corpus's size) goes whatever happens
        pool = build_pool(spec, c, d, heldout, tokenizer, task_dir, work)
        reports = source_reports(spec, pool, files)
        rng = np.random.default_rng(pretrain.seed)
        groups, selection = select_groups(pool, reports, c, pretrain, spec, task_dir, rng)
        corpus = draw_corpus(pool, groups, pretrain.seed, rng, work)
        if pq.ParquetFile(corpus).metadata.num_rows == 0:
            dropped = dropped_total(reports)
            raise ConfigError(f"{spec['path']}: the corpus is empty after cleaning, dedup and the leakage guard "
                              f"(dropped: {dropped}); add sources or lower collect.min_chars.")
        stats.update(corpus_stats(corpus, reports, selection, c, d, pretrain.max_tokens, heldout, task_dir))
        stats["pool"] = {"docs": len(pool),  # (not the executor or tasks: params that must not change the corpus)
                         "tokens": int(pool.tokens.sum()), "candidate_pairs": int(pool.stats.get("candidate_pairs", 0)),
                         "confirmed_pairs": int(pool.stats.get("confirmed_pairs", 0))}
        for line in budget_lines(stats):  # pipeline.console
            print(line, flush=True)
        with atomic_dir(out_dir) as tmp:
            corpus.replace(tmp / "corpus.parquet")  # the work folder is out_dir's sibling: the same file system
            record_lineage(tmp, made_from)
    finally:
        remove_path(work)
    return stats


def record_lineage(folder: Path, made_from: dict | None) -> None:
    if made_from is not None:
        write_json(folder / "made_from.json", made_from)


# ---------------------------------------------------------------------------- console lines
def shortfall(report: dict) -> tuple[str, str] | None:
    """(the reason, in words) a source gave under 99% of its share of the budget, or None. The reason is
    each source's `fell_short` in metrics/corpus.json (`corpus.corpus_stats`)."""
    target = report.get("target_tokens")
    # the draw stops at a document's boundary: short only when every kept document was drawn (or was a
    # near duplicate of one drawn) and the tokens still fall under the share
    exhausted = report["docs"] + report["dropped"].get("near_duplicate", 0) >= report["docs_kept"]
    if not target or not exhausted or report["tokens"] >= 0.99 * target:
        return None
    dropped = dict(report["dropped"])
    dropped["leaked"] = sum(dropped.pop(k, 0) for k in LEAK_REASONS)  # one figure for the leak guard
    lost = {k: v for k, v in dropped.items() if v}
    if report["docs_in"] == 0:
        return "empty", "it has no records"
    reasons = {**DROP_REASONS, "leaked": "copies of dev/test text (the leak guard)"}
    why = ", ".join(f"{v:,} {reasons[k]}" for k, v in sorted(lost.items(), key=lambda kv: -kv[1]))
    main = max(lost, key=lost.get) if lost else "exhausted"
    return main, (f"of its {report['docs_in']:,} documents {why} were dropped; the {report['docs_kept']:,} left "
                  f"hold fewer tokens than its share" if lost else
                  f"all its {report['docs_kept']:,} documents were drawn and hold fewer tokens than its share")


def budget_lines(stats: dict) -> list[str]:
    """The console lines on leaks (by source) and on each source that fell short of its share, with why."""
    lines = []
    leaks = {name: sum(r["dropped"][k] for k in LEAK_REASONS) for name, r in stats["sources"].items()}
    if stats["leaked_removed"]:
        lines.append(f"[collect] leak guard: removed {stats['leaked_removed']:,} documents that copy dev/test text "
                     f"(exact {stats['leaked_exact']:,}, near {stats['leaked_near']:,}, 8-gram "
                     f"{stats['leaked_ngram']:,}): " + ", ".join(f"{n} {v:,}" for n, v in leaks.items() if v))
    for name, report in stats["sources"].items():
        if report["fell_short"]:  # the reason; shortfall() says it in words
            lines.append(f"[collect] warning: source `{name}` gave {report['tokens']:,} of its "
                         f"{report['target_tokens']:,.0f}-token share ({report['fell_short']}): "
                         f"{shortfall(report)[1]}. Its unused share "
                         f"is not given to other sources (budget coverage {stats['budget_coverage']:.0%}): add "
                         f"text to it, lower its weight, or remove it.")
    return lines
