"""Custom datatrove steps for the proof (what pipeline/collect_datatrove.py would hold).

Must live in an importable module (not __main__): LocalPipelineExecutor pickles the pipeline (dill)
into forkserver workers when workers > 1.
"""

from __future__ import annotations

import os
from functools import cached_property

from datatrove.data import Document, DocumentsPipeline
import xxhash
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.tokens import TokensCounter

from pipeline.collect_steps import ProjectWords  # noqa: F401  (proof.py imports it from here)
from pipeline.dedup import ContainmentIndex, NearIndex, clean_text, doc_key, keys_and_signatures, words


def xxh64_utf8(shingle: str) -> int:
    return xxhash.xxh64_intdigest(shingle.encode())


class ProjectMinhashSignature(MinhashDedupSignature):
    """MinhashDedupSignature whose shingle hash encodes to bytes first (xxhash>=4 refuses str)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config.hash_config.hash_fc == "xxhash" and self.config.hash_config.precision == 64:
            self._hash_func = xxh64_utf8


class CleanAndLength(BaseFilter):
    """clean_text in place, then drop empty / too_short / too_long with a reason; stores the exact-copy key."""

    name = "clean+length"

    def __init__(self, min_chars: int, max_chars: int | None = None, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.min_chars, self.max_chars = min_chars, max_chars

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        doc.text = clean_text(doc.text)
        if not doc.text:
            return False, "empty"
        if len(doc.text) < self.min_chars:
            return False, "too_short"
        if self.max_chars is not None and len(doc.text) > self.max_chars:
            return False, "too_long"
        doc.metadata["key"] = doc_key(words(doc.text))
        return True


class LeakGuard(BaseFilter):
    """The project's leak guard: exact key, near (NearIndex: datasketch LSH + Jaccard check), n-gram containment."""

    name = "leak guard"

    def __init__(self, heldout_texts: list[str], threshold: float, num_perm: int, shingle_words: int,
                 ngram: int, containment: float, exclusion_writer=None):
        super().__init__(exclusion_writer)
        cleaned = [clean_text(t) for t in heldout_texts]
        keys, sigs = keys_and_signatures(cleaned, shingle_words, num_perm)
        self.keys = set(keys)
        self.near = NearIndex(threshold, num_perm)
        for s in sigs:
            self.near.add(s)
        self.ngrams = ContainmentIndex(cleaned, ngram, containment)
        self.shingle_words, self.num_perm = shingle_words, num_perm

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if doc.metadata["key"] in self.keys:
            return False, "leaked"
        _, (sig,) = keys_and_signatures([doc.text], self.shingle_words, self.num_perm)
        if self.near.contains(sig):
            return False, "leaked_near"
        if self.ngrams.contains(doc.text):
            return False, "leaked_ngram"
        return True


def exact_key(doc: Document) -> bytes:
    """ExactDedupConfig.content_getter: the project's normalised key, as bytes (hashed again by xxhash64).

    bytes, not str: xxhash>=4 (installed: 4.1.0) refuses str ("Strings must be encoded before hashing");
    datatrove's own `processing` extra pins xxhash<4.
    """
    return str(doc.metadata["key"]).encode()


def source_priority(doc: Document) -> int:
    """ExactDedupConfig.document_priority (1..65535; highest kept): earlier sources win, as in screen()."""
    return 65535 - int(doc.metadata.get("source_index", 0))


class RankJsonlReader(JsonlReader):
    """Read exactly the file that rank r wrote (`{rank:05d}.jsonl.gz`) in an earlier stage.

    The dedup filters (ExactDedupFilter, MinhashDedupFilter) drop documents by their index in rank r's
    stream, so rank r must see what rank r of the signature stage saw. The plain reader shards the
    *list of files present*: a rank that wrote nothing leaves no file and shifts every later rank.
    """

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        name = f"{rank:05d}.jsonl.gz"
        if not self.data_folder.exists(name):
            return
        for doc in self.read_files_shard([name]):
            self.update_doc_stats(doc)
            yield doc


class FullTokensCounter(TokensCounter):
    """TokensCounter with the tokenizer.json's saved truncation/padding switched off.

    A model's tokenizer.json often carries `truncation: {max_length: 128}` and fixed padding; the raw
    `tokenizers.Tokenizer.from_file` applies them, so every count would read 128.
    """

    @cached_property
    def tokenizer(self):
        tok = super().tokenizer
        tok.no_truncation()
        tok.no_padding()
        return tok
