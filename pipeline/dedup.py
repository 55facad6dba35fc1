"""Text normalisation and copy detection, shared by the task data (`prepare`) and the corpora (`collect`).

- `clean_text`: one cleaning for every text (HTML breaks and tags, entities, NFKC, whitespace);
- exact copies: a hash of the lower-cased letters and digits (`normalised_hash`, `doc_key`);
- near copies: MinHash signatures of word shingles (datasketch), looked up in a MinHashLSH and
  confirmed with the estimated Jaccard (`NearIndex`);
- long runs of one text inside another: word n-gram containment (`ContainmentIndex`).
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata

import numpy as np
import xxhash  # a dependency of `datasets`; 2.5x faster than datasketch's default sha1 for shingles
from datasketch import LeanMinHash, MinHash, MinHashLSH

from pipeline.config import ConfigError

_TAG = re.compile(r"<[^>]{0,200}>")
_BREAK = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script (NFKC already applied)
MINHASH_SEED = 1
MINHASH_SCHEME = "affine32"
# MinHashLSH banding tuned to favour recall (few missed near-duplicates): every candidate is
# confirmed with the signatures' estimated Jaccard, so a false candidate costs only time.
LSH_WEIGHTS = (0.1, 0.9)


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


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalised_hash(text: str) -> str:
    """Hash of the text lower-cased with only letters and digits kept: catches copies that differ in markup."""
    return hashlib.blake2b("".join(words(text)).encode(), digest_size=16).hexdigest()


def doc_key(words: list[str]) -> int:
    """The normalised hash as a signed 64-bit integer: 8 bytes a document for exact dedup."""
    digest = hashlib.blake2b("".join(words).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def shingles(words: list[str], n: int) -> set[bytes]:
    if len(words) <= n:
        return {" ".join(words).encode()}
    return {" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1)}


def keys_and_signatures(cleaned: list[str], shingle_words: int, num_perm: int) -> tuple[list[int], list[np.ndarray]]:
    """Exact-copy keys and MinHash signatures of already-cleaned texts, for every copy check here."""
    tokens = [words(t) for t in cleaned]
    return [doc_key(w) for w in tokens], minhash_signatures([shingles(w, shingle_words) for w in tokens], num_perm)


def minhash_signatures(shingle_sets: list[set[bytes]], num_perm: int) -> list[np.ndarray]:
    """MinHash signatures (uint32, `num_perm` values each) of several shingle sets at once."""
    minhashes = MinHash.bulk(shingle_sets, num_perm=num_perm, seed=MINHASH_SEED, scheme=MINHASH_SCHEME,
                             hashfunc=xxhash.xxh32_intdigest)
    return [m.hashvalues for m in minhashes]


class NearIndex:
    """Near-duplicate lookup: datasketch MinHashLSH for candidates, confirmed by estimated Jaccard.

    The signatures are kept beside the index (4 bytes x num_perm a document) so each LSH
    candidate is confirmed with the fraction of equal MinHash values (`MinHash.jaccard`,
    vectorised over the candidates).
    """

    def __init__(self, threshold: float, num_perm: int):
        try:
            self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
        except ValueError as exc:
            raise ConfigError(f"dedup.near_dup_threshold={threshold} with dedup.minhash_perm={num_perm} gives no "
                              f"usable LSH banding ({exc}); raise minhash_perm or lower the threshold.") from exc
        self.threshold = threshold
        self.sigs = np.empty((256, num_perm), dtype=np.uint32)
        self.n = 0

    @staticmethod
    def _lean(sig: np.ndarray) -> LeanMinHash:
        return LeanMinHash(seed=MINHASH_SEED, hashvalues=sig, scheme=MINHASH_SCHEME)

    def __len__(self) -> int:
        return self.n

    def add(self, sig: np.ndarray) -> None:
        if self.n == len(self.sigs):
            self.sigs = np.concatenate([self.sigs, np.empty_like(self.sigs)])
        self.sigs[self.n] = sig
        self.lsh.insert(self.n, self._lean(sig), check_duplication=False)
        self.n += 1

    def contains(self, sig: np.ndarray) -> bool:
        """True when a document whose estimated Jaccard with `sig` is >= the threshold was added."""
        if not self.n:
            return False
        candidates = self.lsh.query(self._lean(sig))
        if not candidates:
            return False
        estimated = (self.sigs[candidates] == sig).mean(axis=1)
        return bool((estimated >= self.threshold).any())


_NGRAM_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier for the polynomial n-gram hash


def ngram_hashes(words: list[str], n: int) -> np.ndarray:
    """The distinct 64-bit hashes of a word list's n-grams (none when it has fewer than n words).

    Vectorised by hand: a stable per-word hash (xxh64, not Python's salted `hash`), then a
    polynomial rolling combination over n shifted views; numpy's uint64 arithmetic wraps.
    """
    if len(words) < n:
        return np.zeros(0, dtype=np.uint64)
    w = np.fromiter((xxhash.xxh64_intdigest(x.encode()) for x in words), dtype=np.uint64, count=len(words))
    m = len(words) - n + 1
    h = w[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            h = h * _NGRAM_MULT + w[j:j + m]
    return np.unique(h)


class ContainmentIndex:
    """Contamination check by long n-gram containment (GPT-3: 13-grams; LLaMA 2: 8-grams and more).

    For each held-out text t, the share of t's distinct word n-grams that a document contains;
    a document whose share for some t reaches `threshold` contains a long run of t (a copy, an
    edited copy, or a quoted part) and is dropped. Measured per held-out text, not per document,
    so one stock phrase shared with many reviews moves no single text's share much, while half a
    review quoted inside a long unrelated document scores 0.5. Texts shorter than n words have no
    n-gram: the exact and near-duplicate checks cover them. Memory: about 13 bytes per held-out
    n-gram (sorted uint64 hashes, int32 text ids, a Bloom filter), independent of the corpus size.
    """

    def __init__(self, texts, n: int, threshold: float):
        self.n, self.threshold = n, threshold
        hashes, ids, sizes = [], [], []
        for i, text in enumerate(texts):
            h = ngram_hashes(words(text), n)
            hashes.append(h)
            ids.append(np.full(len(h), i, dtype=np.int32))
            sizes.append(len(h))
        h = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
        order = np.argsort(h, kind="stable")
        self.hashes = h[order]
        self.ids = (np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32))[order]
        self.sizes = np.maximum(np.asarray(sizes, dtype=np.float64), 1.0)
        # A one-hash Bloom filter (>= 8 bits per held-out n-gram, so about 12% false hits) in front
        # of the binary search: most n-grams of an unrelated document stop at one bit lookup instead
        # of two searches over the sorted hashes, a 4x cheaper score on IMDB-sized held-out sets.
        self.bits = 1 << max(10, int(8 * max(1, len(h)) - 1).bit_length())
        hit = np.zeros(self.bits, dtype=bool)
        hit[(self.hashes & np.uint64(self.bits - 1)).astype(np.int64)] = True
        self.filter = np.packbits(hit, bitorder="little")

    def score(self, text: str) -> float:
        """The largest share of one held-out text's n-grams found in `text` (0 to 1)."""
        h = ngram_hashes(words(text), self.n)
        if not len(h) or not len(self.hashes):
            return 0.0
        slot = (h & np.uint64(self.bits - 1)).astype(np.int64)
        h = h[((self.filter[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1).astype(bool)]
        if not len(h):
            return 0.0
        lo = np.searchsorted(self.hashes, h, side="left")
        hi = np.searchsorted(self.hashes, h, side="right")
        counts = hi - lo
        total = int(counts.sum())
        if not total:
            return 0.0
        # every (document n-gram, held-out text) pair: expand each matched hash range into its rows
        starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
        rows = starts + np.arange(total)
        texts, shared = np.unique(self.ids[rows], return_counts=True)
        return float((shared / self.sizes[texts]).max())

    def contains(self, text: str) -> bool:
        return self.score(text) >= self.threshold


def heldout_copies(texts: list[str], d) -> tuple[list[str], np.ndarray, NearIndex]:
    """The one index of held-out text (the task's dev and test) that copies are checked against: by `prepare`
    (training rows that copy it, pipeline.data) and by `collect` (corpus documents that copy it,
    pipeline.corpus). The texts cleaned as every document is, their exact-copy keys (sorted, unique) and a
    MinHash near-copy index at the `dedup` section `d`'s settings (a text that cleans to nothing is not
    indexed: it would "nearly" copy every other empty text)."""
    cleaned = [clean_text(t) for t in texts]
    keys, sigs = keys_and_signatures(cleaned, d.shingle_words, d.minhash_perm)
    index = NearIndex(d.near_dup_threshold, d.minhash_perm)
    for text, sig in zip(cleaned, sigs):
        if text:
            index.add(sig)
    return cleaned, np.unique(np.asarray(keys, dtype=np.int64)), index
