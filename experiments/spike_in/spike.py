"""Spike-in control: plant a vocabulary shift that only MLM on the shifted in-domain text can teach.

    python -m experiments.spike_in.spike          # the `shift` stage of experiments/spike_in/dvc.yaml

K sentiment-bearing words are chosen from the task's *training* split (labels of train only): the
top K/2 positive and K/2 negative words by smoothed log-odds of appearing in a positive rather than
a negative review, among words in at least `spike.min_docs` training reviews that are one token of
the base's vocabulary (so each has one input embedding to compare with its nonce form).

Each word gets a nonce form (its own, or with `spike.forms` N one of N forms shared by the words of its
polarity) by a seeded draw from the base's own vocabulary: whole-word tokens
(no `##` piece, letters only, at least 4 of them) that are one token when tokenized alone and that
occur as a word in *none* of the experiment's texts (train, test, unlabeled corpus, the placebo
corpora). They are real rows of the embedding matrix, pretrained for some unrelated rare word
(a name, a foreign word), so the base has never seen them in the sentiment role and the
classifier fine-tuned on the unshifted training text has no reason to read them as sentiment.
An unused id ([unused0]) would need tokenizer surgery, and a generated string splits into several
pieces whose embeddings the rest of the text shares; a rare whole-word token avoids both.

The map is applied to the test split and the unlabeled corpus, never to train (nor to dev, which
`prepare` carves from train): the classifier learns the original words, and only MLM on the shifted
corpus can tell the model what the nonce forms mean (Artetxe et al. 2020 learn new embeddings the
same way; K et al. 2020's shifted "Fake-English" ids). Words are nested: the map for K is the first
K/2 of each polarity of the map for the largest K, so the K curve adds words, never swaps them.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

from pipeline.config import ConfigError
from pipeline.files import open_maybe_gz
from pipeline.io import atomic_dir, write_json

HERE = Path("experiments/spike_in")
PARAMS = HERE / "params.yaml"
DATA, METRICS = HERE / "data", HERE / "metrics"
WORD = re.compile(r"[a-z]+")  # words as the map sees them: lower-cased runs of letters


def read_jsonl(path: str | Path) -> list[dict]:
    with open_maybe_gz(Path(path).expanduser(), "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Gzipped JSON lines with mtime 0 in the header, so the same rows give the same bytes (and DVC hash)."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        for row in rows:
            gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))


def vocabulary(texts) -> set[str]:
    """Every word (as `WORD` reads it) in `texts`."""
    words: set[str] = set()
    for text in texts:
        words.update(WORD.findall(text.lower()))
    return words


def single_token(tokenizer, word: str) -> bool:
    return tokenizer.tokenize(word) == [word]


def choose_words(texts: list[str], labels: list[int], k: int, min_docs: int, tokenizer,
                 positive=1) -> list[dict]:
    """The K most sentiment-bearing training words: K/2 positive then K/2 negative, each polarity
    ordered by |log-odds| (add-one smoothed document frequencies), ties by the word."""
    if k % 2:
        raise ConfigError(f"{PARAMS}: spike.ks holds {k}; each K is split evenly between positive and negative "
                          f"words, so use even values.")
    pos_docs, neg_docs = Counter(), Counter()
    n_pos = n_neg = 0
    for text, label in zip(texts, labels):
        words = vocabulary([text])
        if label == positive:
            pos_docs.update(words)
            n_pos += 1
        else:
            neg_docs.update(words)
            n_neg += 1
    if not n_pos or not n_neg:
        raise ConfigError(f"{PARAMS}: the training split needs both labels to rank words (found {n_pos} positive, "
                          f"{n_neg} negative reviews).")
    scored = []
    for word in set(pos_docs) | set(neg_docs):
        docs = pos_docs[word] + neg_docs[word]
        if docs < min_docs or len(word) < 3 or not single_token(tokenizer, word):
            continue
        log_odds = (math.log((pos_docs[word] + 1) / (n_pos - pos_docs[word] + 1))
                    - math.log((neg_docs[word] + 1) / (n_neg - neg_docs[word] + 1)))
        scored.append({"word": word, "log_odds": log_odds, "docs": docs})
    pos = sorted((s for s in scored if s["log_odds"] > 0), key=lambda s: (-s["log_odds"], s["word"]))
    neg = sorted((s for s in scored if s["log_odds"] < 0), key=lambda s: (s["log_odds"], s["word"]))
    if min(len(pos), len(neg)) < k // 2:
        raise ConfigError(f"{PARAMS}: only {len(pos)} positive and {len(neg)} negative words pass spike.min_docs "
                          f"{min_docs}; lower spike.min_docs or the largest K ({k}).")
    return [{**s, "polarity": "positive"} for s in pos[:k // 2]] + [{**s, "polarity": "negative"} for s in neg[:k // 2]]


def nonce_pool(tokenizer, taken: set[str]) -> list[str]:
    """Vocabulary tokens usable as nonce forms: whole words of >= 4 letters, one token alone, absent from
    every text of the experiment (`taken`), sorted so the seeded draw is reproducible."""
    vocab = tokenizer.get_vocab()
    return sorted(t for t in vocab if len(t) >= 4 and t.isascii() and t.isalpha() and t.islower()
                  and t not in taken and single_token(tokenizer, t))


def build_map(words: list[dict], pool: list[str], seed: int, forms: int = 0) -> list[dict]:
    """Each chosen word with its nonce form, drawn with a seed and without replacement from `pool`.

    `forms` 0: a form of its own per word. `forms` N > 0: N forms per polarity, the words of a polarity
    taking them in rank order, round robin, so that each form stands for K/(2N) words and occurs that many
    times more often in the corpus (MLM then sees each form in many more contexts)."""
    polarities = [w["polarity"] for w in words]
    need = len(words) if forms == 0 else forms * len(set(polarities))
    if len(pool) < need:
        raise ConfigError(f"the base's vocabulary has only {len(pool)} tokens absent from the texts, and the map "
                          f"needs {need}; lower the largest spike.ks or spike.forms.")
    drawn = random.Random(seed).sample(pool, need)
    if forms == 0:
        return [{**w, "nonce": f} for w, f in zip(words, drawn)]
    by_polarity = {p: drawn[i * forms:(i + 1) * forms] for i, p in enumerate(dict.fromkeys(polarities))}
    rank: Counter = Counter()
    out = []
    for w in words:
        out.append({**w, "nonce": by_polarity[w["polarity"]][rank[w["polarity"]] % forms]})
        rank[w["polarity"]] += 1
    return out


def map_for(table: list[dict], k: int) -> dict[str, str]:
    """The word -> nonce map of the first K/2 positive and K/2 negative words of `table` (nested in K)."""
    pos = [e for e in table if e["polarity"] == "positive"][:k // 2]
    neg = [e for e in table if e["polarity"] == "negative"][:k // 2]
    return {e["word"]: e["nonce"] for e in pos + neg}


def load_map(path: str | Path, k: int) -> tuple[dict[str, str], dict[str, str]]:
    """The word -> nonce map at K of a written map.json, and each word's polarity."""
    table = json.loads(Path(path).read_text(encoding="utf-8"))["table"]
    return map_for(table, k), {e["word"]: e["polarity"] for e in table}


def shifter(mapping: dict[str, str]):
    """A function text -> (shifted text, replacements): whole words only, any case."""
    if not mapping:
        return lambda text: (text, 0)
    pattern = re.compile(r"(?<![A-Za-z])(" + "|".join(sorted(map(re.escape, mapping), key=len, reverse=True))
                         + r")(?![A-Za-z])", re.IGNORECASE)

    def shift(text: str) -> tuple[str, int]:
        return pattern.subn(lambda m: mapping[m.group(0).lower()], text)
    return shift


def shift_rows(rows: list[dict], mapping: dict[str, str], field: str = "text") -> tuple[list[dict], int, int]:
    """`rows` with `field` shifted; also the replacements made and the rows touched."""
    shift, out, total, touched = shifter(mapping), [], 0, 0
    for row in rows:
        text, n = shift(row[field])
        out.append({**row, field: text})
        total += n
        touched += n > 0
    return out, total, touched


def load_xp(path: Path = PARAMS) -> dict:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def build(xp: dict) -> dict:
    """The `shift` stage: data/task/{train,test_kNNN}.jsonl.gz, data/corpus/unsup_kNNN.jsonl.gz, data/map.json."""
    from pipeline.model import load_tokenizer

    s, src = xp["spike"], xp["source"]
    ks = sorted(set(s["ks"]))
    tokenizer = load_tokenizer(str(Path(src["tokenizer"]).expanduser()), False)
    train, test, unsup = (read_jsonl(src[name]) for name in ("train", "test", "unsup"))
    placebo_dir = Path(src["placebo"]).expanduser()
    placebo = [row["text"] for path in sorted(placebo_dir.glob("*.jsonl*")) for row in read_jsonl(path)]
    taken = vocabulary(r["text"] for r in train + test + unsup) | vocabulary(placebo)
    words = choose_words([r["text"] for r in train], [r["label"] for r in train], max(ks), s["min_docs"], tokenizer)
    table = build_map(words, nonce_pool(tokenizer, taken), s["seed"], s.get("forms", 0))
    stats = {"ks": ks, "words": len(table), "vocabulary_of_texts": len(taken), "per_k": {}}
    with atomic_dir(DATA) as tmp:
        (tmp / "task").mkdir()
        (tmp / "corpus").mkdir()
        write_jsonl(tmp / "task" / "train.jsonl.gz", train)  # unshifted: the classifier learns the real words
        for k in ks:
            mapping, tag = map_for(table, k), f"k{k:03d}"
            shifted_test, n_test, rows_test = shift_rows(test, mapping)
            shifted_unsup, n_unsup, rows_unsup = shift_rows(unsup, mapping)
            write_jsonl(tmp / "task" / f"test_{tag}.jsonl.gz", shifted_test)
            write_jsonl(tmp / "corpus" / f"unsup_{tag}.jsonl.gz", shifted_unsup)
            stats["per_k"][tag] = {"k": k, "test_replacements": n_test, "test_reviews_touched": rows_test,
                                   "corpus_replacements": n_unsup, "corpus_reviews_touched": rows_unsup,
                                   "corpus_replacements_per_word": n_unsup / max(1, k)}
        write_json(tmp / "map.json", {"seed": s["seed"], "min_docs": s["min_docs"], "forms": s.get("forms", 0),
                                      "table": table})
    return stats


def main() -> int:
    start = time.time()
    try:
        stats = build(load_xp())
    except ConfigError as exc:
        print(f"[spike] error: {exc}", file=sys.stderr)
        return 2
    stats["seconds"] = time.time() - start
    write_json(METRICS / "shift.json", stats)
    for tag, row in stats["per_k"].items():
        print(f"[spike] {tag}: {row['test_replacements']:,} test replacements in {row['test_reviews_touched']:,} "
              f"reviews; {row['corpus_replacements']:,} in the corpus ({row['corpus_replacements_per_word']:,.0f} "
              f"per word)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
