"""The datatrove steps of `collect` (pipeline/pool.py runs them): read the sources, clean, guard against
task leaks, tokenise, MinHash-sign, and cluster near-duplicates with the project's confirmation rule.

They live in an importable module, not in a script: datatrove's local executor pickles the pipeline
into its worker processes (spawn, where fork is not available), and the Slurm and Ray executors into
their jobs.

Written here, on datatrove's public step classes, because datatrove has no equivalent of:
- the project's sources (hub ids, local files, the task's own train split, joined text fields), which
  `corpus_spec.load_source` already reads and checks: `SourceReader` shards those datasets by row;
- the task leak guard (exact, near and n-gram containment against dev/test text): `LeakGuard`;
- near-duplicates confirmed by the signatures' estimated Jaccard, and a kept copy chosen by source
  order and content rather than by worker rank: `ConfirmedCluster` (datatrove's cluster stage keeps
  the root of a union-by-size, which depends on how the documents were split over tasks).
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.word_tokenizers import WordTokenizer
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline.io import read_only_map, release_pages

READ_BATCH = 1000  # rows read from a source's Arrow table at a time
GATHER_ROWS = 512  # side records read at random between releases of their pages (`SideFiles.gather`)
REMAP_ROWS = 20_000  # rows read from one memory map of a source's Arrow table (`SourceReader`)
TOKENIZE_BATCH = 256  # documents per tokenizer call (the fast tokenizers batch in Rust)
# Why a document leaves the pool, in the order the steps below drop it: the one list of drop reasons, used by
# the pool's counts (pipeline.pool), metrics/corpus.json and collect's console lines (pipeline.corpus)
DROP_REASONS = {"empty": "empty after cleaning", "too_short": "shorter than min_chars",
                "too_long": "longer than max_chars", "leaked": "exact copies of dev/test text",
                "leaked_near": "near copies of dev/test text", "leaked_ngram": "long runs of one dev/test text",
                "duplicate": "exact duplicates", "near_duplicate": "near duplicates"}
LEAK_REASONS = ("leaked", "leaked_near", "leaked_ngram")  # the leak guard's (`LeakGuard`)


def side_dtype(num_perm: int) -> np.dtype:
    """One record per signed document, in its rank's stream order: what the cluster and the draw need
    without reading the text again (source, exact-copy key, content hash, tokens, MinHash signature)."""
    return np.dtype([("source", "<u2"), ("key", "<i8"), ("thash", "<u8"), ("tokens", "<u4"),
                     ("sig", "<u4", (num_perm,))])


class SourceReader(PipelineStep):
    """Every declared source, one after another, each split over the tasks by row (`Dataset.shard`).

    The parent process has already loaded each source once (`load_source`: checks, file counts, the
    `datasets` Arrow cache), so each task opens the cached table. Empty rows are passed on (as "") for
    `CleanAndLength` to count; datatrove's readers would drop them silently.

    The table is mapped afresh every REMAP_ROWS rows: the pages of a memory map stay in the process's
    resident set until it is unmapped, so reading a 2 GB source through one map would grow each task's RSS
    by 2 GB. Pickling a memory-mapped Dataset keeps its file paths and operations, not its data, so a
    round trip is a new map of the same rows (an in-memory table is read as it is)."""

    type = "📖 - READER"
    name = "sources"

    def __init__(self, sources: list[dict], task_dir: str):
        super().__init__()
        self.sources, self.task_dir = sources, task_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from pipeline.corpus_spec import load_source

        if data:
            yield from data
        for i, src in enumerate(self.sources):
            ds = load_source(src, self.task_dir)
            shard = ds.shard(num_shards=world_size, index=rank, contiguous=True)
            offset = sum(len(ds.shard(num_shards=world_size, index=r, contiguous=True)) for r in range(rank))
            del ds  # its map would keep every page the shard reads through it
            for start in range(0, len(shard), READ_BATCH):
                if start and start % REMAP_ROWS == 0 and shard.cache_files:
                    shard = pickle.loads(pickle.dumps(shard))  # the old map goes with its last reference
                texts = shard[start:start + READ_BATCH]["text"]
                for j, text in enumerate(texts):
                    self.stat_update(f"docs_in/{src['name']}")
                    yield Document(text=text or "", id=f"{src['name']}/{offset + start + j}",
                                   metadata={"source": src["name"], "source_index": i})


class CleanAndLength(BaseFilter):
    """`clean_text` in place, then the length rules: (False, "empty" | "too_short" | "too_long")."""

    name = "clean and length"

    def __init__(self, min_chars: list[int], max_chars: list[int | None]):
        super().__init__()
        self.min_chars, self.max_chars = min_chars, max_chars  # per source index

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        from pipeline.dedup import clean_text

        doc.text = clean_text(doc.text)
        i = doc.metadata["source_index"]
        reason = ("empty" if not doc.text else "too_short" if len(doc.text) < self.min_chars[i]
                  else "too_long" if self.max_chars[i] and len(doc.text) > self.max_chars[i] else None)
        if reason:
            self.stat_update(f"{reason}/{doc.metadata['source']}")
            return False, reason
        return True


class LeakGuard(BaseFilter):
    """The task leak guard (`corpus.Heldout`, bounded by the task's dev and test text, pickled into each task):
    an exact copy ("leaked"), a near copy ("leaked_near"), a long run of one text ("leaked_ngram").

    It computes each document's exact-copy key and MinHash signature once (batched), for the guard and for
    the near-duplicate stages after it (`metadata["key"]`, `["minhash"]`)."""

    name = "leak guard"

    def __init__(self, heldout, shingle_words: int, num_perm: int):
        super().__init__(batch_size=TOKENIZE_BATCH)
        self.heldout, self.shingle_words, self.num_perm = heldout, shingle_words, num_perm

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        from pipeline.dedup import keys_and_signatures

        keys, sigs = keys_and_signatures([d.text for d in batch], self.shingle_words, self.num_perm)
        leaked = np.isin(np.asarray(keys, dtype=np.int64), self.heldout.keys)
        out = []
        for doc, key, sig, exact in zip(batch, keys, sigs, leaked):
            reason = ("leaked" if exact else "leaked_near" if self.heldout.near.contains(sig)
                      else "leaked_ngram" if self.heldout.ngrams.contains(doc.text) else None)
            if reason:
                self.stat_update(f"{reason}/{doc.metadata['source']}")
                out.append((False, reason))
                continue
            doc.metadata.update(key=int(key), minhash=sig.astype(np.uint32).tolist())
            out.append(True)
        return out


class TokenIds(PipelineStep):
    """Tokenise each document once, with the tokenizer and call `pretrain` uses (`mlm.pack`), and keep the ids:
    `pretrain` packs them as they are instead of tokenising the corpus again."""

    type = "🔢 - TOKENIZER"
    name = "token ids"

    def __init__(self, tokenizer):
        super().__init__()
        # A fast tokenizer's Rust backend, with the truncation and padding its tokenizer.json may have saved
        # switched off, as transformers switches them off for a call without `truncation`: the same ids, and a
        # worker that unpickles it does not import transformers (and torch: about 0.5 GB a worker).
        if getattr(tokenizer, "is_fast", False):
            backend = copy.deepcopy(tokenizer.backend_tokenizer)
            backend.no_truncation()
            backend.no_padding()
            self.tokenizer, self.fast = backend, True
        else:
            self.tokenizer, self.fast = tokenizer, False

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        batch: list[Document] = []
        for doc in data:
            batch.append(doc)
            if len(batch) == TOKENIZE_BATCH:
                yield from self._encode(batch)
                batch = []
        yield from self._encode(batch)

    def _encode(self, batch: list[Document]):
        if not batch:
            return
        with self.track_time():
            texts = [d.text for d in batch]
            ids = ([e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)] if self.fast
                   else self.tokenizer(texts, verbose=False)["input_ids"])
        for doc, row in zip(batch, ids):
            doc.metadata["input_ids"] = list(row)
            self.stat_update("tokens", value=len(row))
            yield doc


def without_signature(writer, document: Document) -> dict:
    """JsonlWriter adapter: the document as datatrove writes it, less the signature (it goes to the side file)."""
    meta = {k: v for k, v in document.metadata.items() if k != "minhash"}
    return {"text": document.text, "id": document.id, "metadata": meta}


class ProjectWords(WordTokenizer):
    """`pipeline.dedup.words` as datatrove's word tokenizer. MinhashDedupSignature loads one for its `language`
    (English: spaCy, not a dependency here) although KeyedSignature never shingles text itself."""

    def __init__(self):
        super().__init__("project")

    def word_tokenize(self, text: str) -> list[str]:
        from pipeline.dedup import words

        return words(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


class KeyedSignature(MinhashDedupSignature):
    """datatrove's MinHash stage 1 (band files for its bucket stage) on the project's own signatures.

    The signature is the one the leak guard computed (`metadata["minhash"]`: datasketch, word shingles of
    `pipeline.dedup.words`, the same as the held-out index's), cut into `num_buckets` bands of
    `hashes_per_bucket` values at 32-bit precision: `get_shingles` hands it over and `get_signature` cuts
    it, so datatrove's own writing, sorting and checking of the band files is used as it is. Each document
    also gets a record in `side/{rank:05d}.bin` (`side_dtype`), in the same stream order."""

    def __init__(self, output_folder: str, config, side_folder: str, num_perm: int):
        super().__init__(output_folder, config, language=ProjectWords())
        self.side_folder, self.num_perm = side_folder, num_perm

    def get_shingles(self, text) -> np.ndarray:
        return np.asarray(text, dtype=np.uint64).reshape(1, -1)  # `text` is the signature: see run()

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        bands, rows = self.config.num_buckets, self.config.hashes_per_bucket
        return [list(map(int, band)) for band in shingles[0, :bands * rows].reshape(bands, rows)]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        path = Path(self.side_folder) / f"{rank:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        dtype = side_dtype(self.num_perm)

        def records(out):
            for doc in data:
                meta = doc.metadata
                rec = np.zeros(1, dtype=dtype)
                rec["source"], rec["key"], rec["tokens"] = meta["source_index"], meta["key"], len(meta["input_ids"])
                rec["thash"], rec["sig"] = xxhash.xxh64_intdigest(doc.text.encode()), meta["minhash"]
                out.write(rec.tobytes())
                yield Document(text=meta["minhash"], id=doc.id)  # get_shingles receives the signature

        with open(path, "wb") as out:
            super().run(records(out), rank, world_size)


class SideFiles(list):
    """The side records of every rank, by rank, each memory-mapped read-only: the pool's size does not enter
    the heap. `release()` takes the pages read out of the resident set (`io.release_pages`) between pieces
    of work, so RSS does not grow with the pool either."""

    def __init__(self, side_folder: str | Path, num_perm: int):
        super().__init__()
        self.dtype, self.maps = side_dtype(num_perm), []
        for path in sorted(Path(side_folder).glob("*.bin")):
            rank = int(path.stem)
            self.extend([np.zeros(0, dtype=self.dtype)] * (rank + 1 - len(self)))
            if path.stat().st_size:
                self.maps.append(read_only_map(path))
                self[rank] = np.frombuffer(self.maps[-1], dtype=self.dtype)

    def release(self) -> None:
        for mm in self.maps:
            release_pages(mm)

    def gather(self, field: str, ranks: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """`self[ranks[i]][field][pos[i]]` for every i: random reads, GATHER_ROWS at a time with the pages
        released between (each read maps 64 KB around it, or its whole page-cache folio: `io.release_pages`;
        a few thousand would map the whole file)."""
        out = np.empty((len(ranks),) + self.dtype[field].shape, dtype=self.dtype[field].base)
        for lo in range(0, len(ranks), GATHER_ROWS):
            r, p, piece = ranks[lo:lo + GATHER_ROWS], pos[lo:lo + GATHER_ROWS], out[lo:lo + GATHER_ROWS]
            for rank in np.unique(r):
                piece[r == rank] = self[rank][field][p[r == rank]]
            self.release()
        return out


class ConfirmedCluster(PipelineStep):
    """MinHash stage 3, with the project's rule for what a near-duplicate is and which copy stays.

    datatrove's bucket stage reports two documents whenever one band of their signatures is equal. Here
    each such pair is kept only if the full signatures' estimated Jaccard reaches `threshold` (the test
    `NearIndex.contains` makes), pairs join documents into clusters (SciPy's connected components), and
    each cluster keeps its first document by (source order, exact-copy key, content hash): the earlier
    source's copy, and the same choice however the pool was split over tasks. A removed document is a
    `duplicate` when a document before it in its cluster has its exact-copy key, else a `near_duplicate`.
    Writes datatrove's `{rank:06d}.remove` files (sorted stream positions); memory follows the number of
    candidate pairs, not the pool (signatures are read from the memory-mapped side files)."""

    type = "🫂 - DEDUP"
    name = "confirmed clusters"

    def __init__(self, buckets_folder: str, side_folder: str, output_folder: str, threshold: float,
                 num_perm: int, source_names: list[str]):
        super().__init__()
        self.buckets_folder, self.side_folder, self.output_folder = buckets_folder, side_folder, output_folder
        self.threshold, self.num_perm, self.source_names = threshold, num_perm, source_names

    def confirmed_pairs(self, side: SideFiles) -> np.ndarray:
        """(file1, doc1, file2, doc2) rows whose estimated Jaccard reaches the threshold."""
        kept = []
        for path in sorted(Path(self.buckets_folder).glob("*.dups")):
            pairs = np.fromfile(path, dtype="<u4").reshape(-1, 4).astype(np.int64)
            self.stat_update("candidate_pairs", value=len(pairs))
            if len(pairs):
                sig_a = side.gather("sig", pairs[:, 0], pairs[:, 1])
                sig_b = side.gather("sig", pairs[:, 2], pairs[:, 3])
                kept.append(pairs[(sig_a == sig_b).mean(axis=1) >= self.threshold])
        return np.concatenate(kept) if kept else np.zeros((0, 4), dtype=np.int64)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        assert world_size == 1, "the cluster stage runs as one task"
        with self.track_time():
            side = SideFiles(self.side_folder, self.num_perm)
            offsets = np.cumsum([0] + [len(s) for s in side])
            pairs = self.confirmed_pairs(side)
            self.stat_update("confirmed_pairs", value=len(pairs))
            if not len(pairs):
                return
            ends = np.concatenate([offsets[pairs[:, 0]] + pairs[:, 1], offsets[pairs[:, 2]] + pairs[:, 3]])
            nodes, inverse = np.unique(ends, return_inverse=True)  # only documents in some pair
            n = len(nodes)
            graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (inverse[:len(pairs)], inverse[len(pairs):])),
                               shape=(n, n))
            _, label = connected_components(graph, directed=False)
            ranks = np.searchsorted(offsets, nodes, side="right") - 1
            pos = nodes - offsets[ranks]
            rec = {f: side.gather(f, ranks, pos) for f in ("source", "key", "thash")}
            self._write_removals(label, ranks, pos, rec)

    def _write_removals(self, label, ranks, pos, rec) -> None:
        order = np.lexsort((ranks, pos, rec["thash"], rec["key"], rec["source"], label))  # by cluster, then priority
        first_of_cluster = np.r_[True, label[order][1:] != label[order][:-1]]
        by_key = np.lexsort((ranks, pos, rec["thash"], rec["source"], rec["key"], label))
        first_of_key = np.zeros(len(label), dtype=bool)
        same = (label[by_key][1:] == label[by_key][:-1]) & (rec["key"][by_key][1:] == rec["key"][by_key][:-1])
        first_of_key[by_key[np.r_[True, ~same]]] = True
        removed = order[~first_of_cluster]
        for i in removed:
            reason = "near_duplicate" if first_of_key[i] else "duplicate"
            self.stat_update(f"{reason}/{self.source_names[int(rec['source'][i])]}")
        out = Path(self.output_folder)
        out.mkdir(parents=True, exist_ok=True)
        for rank in np.unique(ranks[removed]):
            np.sort(pos[removed][ranks[removed] == rank]).astype("<u4").tofile(out / f"{rank:06d}.remove")
