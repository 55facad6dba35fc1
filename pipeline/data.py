"""Task data: load (hub id or local directory), validate, carve a dev split, take the demo subset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from datasets import Dataset, load_dataset
from sklearn.model_selection import train_test_split

from pipeline.config import ConfigError, Dedup, Task
from pipeline.files import find_split_file, load_local_file, split_file
from pipeline.io import atomic_dir, write_json
from pipeline.sources import OFFLINE_HELP, local_or_hub

SPLITS = ("train", "dev", "test")


def load_task_split(task: Task, split: str, local: Path | None, counts: dict | None = None) -> tuple[Dataset, str]:
    """Return the split and a name for messages (the file, or hub id:split). `local` is what
    `local_or_hub` made of `task.dataset`: its folder, or None for a hub id. `counts`: a local file's
    records counted and read (`load_local_file`)."""
    if local is not None:
        if not local.is_dir():
            raise ConfigError(f"task.dataset: `{task.dataset}` is not a directory; point it at a directory "
                              f"holding train.* and test.* files, or at a hub dataset id.")
        path = find_split_file(local, split)
        return load_local_file(path, counts=counts), str(path)
    try:
        ds = load_dataset(task.dataset, task.config, split=split)
    except Exception as exc:
        raise ConfigError(f"task.dataset: loading `{task.dataset}` split `{split}` from the Hub failed "
                          f"({type(exc).__name__}: {exc}). {OFFLINE_HELP}") from exc
    return ds, f"{task.dataset}:{split}"


def check_fields(ds: Dataset, task: Task, where: str) -> None:
    for key, name in (("task.text_field", task.text_field), ("task.label_field", task.label_field)):
        if name not in ds.column_names:
            raise ConfigError(f"{where}: no field `{name}` (set by `{key}`); the data has the fields "
                              f"{', '.join(ds.column_names)}. Set `{key}` to one of them.")


# Letters and symbols that print as nothing, though Unicode does not class them as spaces or format characters:
# the braille blank, the Hangul fillers, the Khmer inherent vowels, the variation selectors, the combining
# grapheme joiner. With the separators (Z*) and the control / format / unassigned characters (C*), a text of
# only these has no visible character: blank.
INVISIBLE = frozenset("\u2800\u3164\u115f\u1160\uffa0\u17b4\u17b5\u034f\u180b\u180c\u180d\u180e\u180f"
                      + "".join(map(chr, range(0xFE00, 0xFE10))))


def is_blank(text: str | None) -> bool:
    """No visible character (`INVISIBLE`, Unicode categories Z* and C*): nothing a model could read."""
    import unicodedata

    return text is None or not any(ch not in INVISIBLE and unicodedata.category(ch)[0] not in "ZC" for ch in text)


def is_missing_label(value) -> bool:
    """No label: null, NaN or a blank string. Such a row is dropped and counted, never a class of its own."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str)
                                                                                 and not value.strip())


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_rows(ds: Dataset, task: Task, where: str) -> None:
    """The task rows' types, before any work: a text is a string (or missing: dropped and counted), a label
    is a string, a number or a boolean (or missing). A list, a dict or bytes is refused, never stringified."""
    labels = ds[task.label_field]
    named = hasattr(ds.features[task.label_field], "names")  # a ClassLabel: integers by construction
    for i, (text, label) in enumerate(zip(ds[task.text_field], labels), 1):
        if text is not None and not isinstance(text, str):
            raise ConfigError(f"{where}: record {i}: `{task.text_field}` holds a {type(text).__name__} "
                              f"({_shown(text)}), not a string; store each text as one string (join a list of "
                              f"sentences, decode bytes), or set `task.text_field` to the text's field.")
        if not named and not is_missing_label(label) and not isinstance(label, (str, int, float, bool)):
            raise ConfigError(f"{where}: record {i}: `{task.label_field}` holds a {type(label).__name__} "
                              f"({_shown(label)}); a label is one string, integer or boolean. Fix the record, or "
                              f"set `task.label_field` to the label's field.")


def label_key(value) -> tuple:
    """What a label means, for finding one class spelled several ways: a number by its value, however it is
    written ("1", "1.0", 1, " 1 "), any other string without case or surrounding spaces."""
    if isinstance(value, bool):
        return ("bool", value)
    text = value.strip() if isinstance(value, str) else value
    try:
        number = float(text)
    except (TypeError, ValueError):
        return ("str", str(text).casefold())
    return ("number", number) if math.isfinite(number) else ("str", str(text).casefold())


def label_values(train: Dataset, task: Task, where: str = "train") -> list:
    """Class values in id order: the ClassLabel names when the data has them, else the sorted values found
    (missing labels left out). Two spellings of one class (case, surrounding spaces, a number written two
    ways: "1" and "1.0") are refused."""
    feature = train.features[task.label_field]
    if hasattr(feature, "names"):
        return list(feature.names)
    values = sorted({v for v in train[task.label_field] if not is_missing_label(v)}, key=lambda v: (str(type(v)), v))
    spellings: dict[tuple, list] = {}
    for v in values:
        spellings.setdefault(label_key(v), []).append(v)
    clash = next((found for found in spellings.values() if len(found) > 1), None)
    if clash:
        raise ConfigError(f"{where}: `{task.label_field}` spells one class in {len(clash)} ways "
                          f"({', '.join(map(repr, clash))}), which would make {len(clash)} classes; write every "
                          f"label of a class the same way.")
    return values


def display_names(values: list, task: Task, where: str) -> list[str]:
    """What reports call each class: `task.label_names` checked against the values found, or the values."""
    given = task.label_names
    if given is None:
        return [str(v) for v in values]
    if isinstance(given, list):
        if len(given) != len(values):
            raise ConfigError(f"params.yaml: `task.label_names` lists {len(given)} name(s) {given}, but {where} has "
                              f"{len(values)} class(es) {[str(v) for v in values]}; give one name per class, in "
                              f"the order of the sorted label values (or a mapping value: name).")
        names = [str(n) for n in given]
    else:
        by_value = {str(k): str(v) for k, v in given.items()}
        missing = [str(v) for v in values if str(v) not in by_value]
        extra = sorted(set(by_value) - {str(v) for v in values})
        if missing or extra:
            raise ConfigError(f"params.yaml: `task.label_names` does not match the labels of {where} "
                              f"({[str(v) for v in values]}): " + "; ".join(
                                  ([f"no name for {missing}"] if missing else [])
                                  + ([f"no such label {extra}"] if extra else []))
                              + ". Name every label value found, and only those.")
        names = [by_value[str(v)] for v in values]
    if len(set(names)) != len(names):
        raise ConfigError(f"params.yaml: `task.label_names` gives two classes the same name ({names}); make them unique.")
    return names


def train_overlap(train: Dataset, heldout: list[Dataset], d: Dedup) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `train` whose text copies a dev or test text: exactly (after cleaning, case and
    punctuation ignored) and nearly (MinHash Jaccard of word shingles >= the threshold): the `dedup`
    section `d`, the same test as `collect`'s leak guard (pipeline.dedup.heldout_copies)."""
    from pipeline.dedup import clean_text, heldout_copies, keys_and_signatures

    _, keys, index = heldout_copies([t for ds in heldout for t in ds["text"]], d)
    train_keys, train_sigs = keys_and_signatures([clean_text(t) for t in train["text"]], d.shingle_words,
                                                 d.minhash_perm)
    exact = np.isin(np.asarray(train_keys, dtype=np.int64), keys)
    near_rows = np.asarray([not e and index.contains(sig) for e, sig in zip(exact, train_sigs)], dtype=bool)
    return np.flatnonzero(exact), np.flatnonzero(near_rows)


def encode(ds: Dataset, task: Task, values: list, where: str) -> tuple[Dataset, dict]:
    """Keep `text`, an integer `label` and the record's index `id`; drop, and count, records whose text
    is blank (zero-width characters count as blank) or whose label is missing."""
    texts, labels = ds[task.text_field], ds[task.label_field]
    feature = ds.features[task.label_field]
    index = {value: i for i, value in enumerate(values)}
    keep_text, keep_label, keep_id, unknown = [], [], [], set()
    dropped = {"blank_text": 0, "missing_label": 0}
    for i, (text, label) in enumerate(zip(texts, labels)):
        if is_blank(text):
            dropped["blank_text"] += 1
            continue
        if hasattr(feature, "names"):
            label = feature.names[label]
        if is_missing_label(label):
            dropped["missing_label"] += 1
            continue
        if label not in index:
            unknown.add(label)
            continue
        keep_text.append(text)
        keep_label.append(index[label])
        keep_id.append(i)
    if unknown:
        shown = sorted(map(repr, unknown))
        same = [u for u in unknown if any(str(u) == str(v) for v in values)]
        why = (f" They are written as {type(same[0]).__name__} ({same[0]!r}) where train's are "
               f"{type(next(v for v in values if str(v) == str(same[0]))).__name__} "
               f"({next(v for v in values if str(v) == str(same[0]))!r}): write the labels of every split with "
               f"one type." if same else " Fix the labels or the split.")
        raise ConfigError(f"{where}: label(s) {', '.join(shown)} in `{task.label_field}` never occur in the train "
                          f"split (labels there: {', '.join(map(repr, values))}).{why}")
    if not keep_text:
        raise ConfigError(f"{where}: every text in `{task.text_field}` is empty; check `task.text_field`.")
    return Dataset.from_dict({"id": keep_id, "text": keep_text, "label": keep_label}), dropped


def check_stratifiable(ds: Dataset, names: list, where: str, what: str) -> None:
    """A stratified split needs two examples of every class (sklearn's own error names neither)."""
    counts = np.bincount(np.asarray(ds["label"]), minlength=len(names))
    small = [str(names[k]) for k, c in enumerate(counts) if 0 < c < 2]
    if small:
        raise ConfigError(f"{where}: class(es) {small} have a single example, too few for the stratified {what}; "
                          f"add examples of them or remove them from the data.")


def stratified_take(ds: Dataset, n: int, seed: int) -> Dataset:
    if n >= len(ds):
        return ds
    idx, _ = train_test_split(np.arange(len(ds)), train_size=n, stratify=ds["label"], random_state=seed)
    return ds.select(np.sort(idx))


def split_dev(train: Dataset, dev_size: float, seed: int) -> tuple[Dataset, Dataset]:
    idx = np.arange(len(train))
    train_idx, dev_idx = train_test_split(idx, test_size=dev_size, stratify=train["label"], random_state=seed)
    return train.select(np.sort(train_idx)), train.select(np.sort(dev_idx))


def handle_train_overlap(splits: dict, task: Task, dedup: Dedup, where: str) -> tuple[Dataset, dict]:
    """Train texts that copy a held-out text (IMDB: 123 train copies of test reviews) inflate dev and test
    scores; every strategy sees them alike, so they are reported by default and dropped on request
    (`task.train_overlap`). Returns the train split to keep and the figures."""
    exact, near = train_overlap(splits["train"], [splits["dev"], splits["test"]], dedup)
    overlap = {"exact": int(len(exact)), "near": int(len(near)), "action": task.train_overlap,
               "train_docs_checked": len(splits["train"]), "near_threshold": dedup.near_dup_threshold}
    if not (len(exact) or len(near)):
        return splits["train"], overlap
    print(f"[prepare] {where}: {len(exact)} train text(s) copy a dev/test text exactly and {len(near)} nearly; "
          f"task.train_overlap={task.train_overlap}: "
          + ("dropped from train" if task.train_overlap == "drop" else "kept (set drop to remove them)"), flush=True)
    if task.train_overlap != "drop":
        return splits["train"], overlap
    return splits["train"].select(np.setdiff1d(np.arange(len(splits["train"])), np.concatenate([exact, near]))), overlap


def load_checked_splits(task: Task, files: dict) -> dict:
    """{split: (dataset, name for messages)} for train, test and, where a local directory ships one, dev,
    each with its fields and rows checked; `files` gets each local file's counts (`load_local_file`)."""
    local = local_or_hub("task.dataset", task.dataset)  # decided once: a hub id asks the Hub once
    names = [("train", task.train_split), ("test", task.test_split)]
    # a local directory may ship its own dev split (dev.*): used as it is, instead of carving one from train
    if local is not None and split_file(local, "dev"):
        names.append(("dev", "dev"))
    raw = {}
    for split, name in names:
        ds, where = load_task_split(task, name, local, files)
        check_fields(ds, task, where)
        check_rows(ds, task, where)
        raw[split] = (ds, where)
    if "dev" in raw:
        print(f"[prepare] {raw['dev'][1]}: used as the dev split (task.dev_size is not used)", flush=True)
    return raw


def prepare_task(task: Task, out_dir: str | Path = "data/task", dedup: Dedup | None = None,
                 made_from: dict | None = None) -> dict:
    """Write {train,dev,test}.parquet and labels.json under `out_dir`; return the stats. `dedup`: the
    `collect` section, whose near-duplicate settings also find train copies of dev/test text; `made_from`:
    the params it follows from (pipeline.lineage), recorded beside the data."""
    files: dict = {}
    raw = load_checked_splits(task, files)
    values = label_values(raw["train"][0], task, raw["train"][1])
    if len(values) < 2:
        raise ConfigError(f"{raw['train'][1]}: `{task.label_field}` has a single class ({values}); a classifier "
                          f"needs at least two. Check `task.label_field`.")
    names = display_names(values, task, raw["train"][1])
    encoded, dropped = {}, {}
    for split, (ds, where) in raw.items():
        encoded[split], dropped[split] = encode(ds, task, values, where)
        for what, field in (("blank_text", task.text_field), ("missing_label", task.label_field)):
            if dropped[split][what]:
                print(f"[prepare] {where}: dropped {dropped[split][what]} record(s) with a "
                      f"{'blank or missing' if what == 'blank_text' else 'missing (null, NaN or blank)'} `{field}`",
                      flush=True)
    if "dev" not in encoded:
        check_stratifiable(encoded["train"], names, raw["train"][1], f"dev split (task.dev_size {task.dev_size})")
        encoded["train"], encoded["dev"] = split_dev(encoded["train"], task.dev_size, task.seed)
    splits = {s: encoded[s] for s in SPLITS}
    if task.demo.enabled:
        for split, ds in splits.items():
            if getattr(task.demo, split) < len(ds):
                check_stratifiable(ds, names, f"{raw['train'][1] if split != 'test' else raw['test'][1]} ({split})",
                                   f"demo subset (task.demo.{split})")
        # dev and test first: the overlap check below looks for train copies of the texts actually held out
        splits.update({s: stratified_take(splits[s], getattr(task.demo, s), task.seed) for s in ("dev", "test")})

    splits["train"], overlap = handle_train_overlap(splits, task, dedup or Dedup(), raw["train"][1])
    if task.demo.enabled:
        draw = task.seed if task.demo.train_seed is None else task.demo.train_seed  # the labelled examples
        splits["train"] = stratified_take(splits["train"], task.demo.train, draw)

    stats = {"classes": len(names), "demo": task.demo.enabled,
             # every record read is kept or counted here: records = kept + dropped (integrity, per split)
             "records_read": {split: len(ds) for split, (ds, _) in raw.items()},
             "files": files,  # per local file: records it holds as its format counts them, and read
             "dropped_blank_text": {split: d["blank_text"] for split, d in dropped.items()},
             "dropped_missing_label": {split: d["missing_label"] for split, d in dropped.items()},
             "train_overlap": overlap}
    with atomic_dir(out_dir) as tmp:
        for split, ds in splits.items():
            ds.to_parquet(str(tmp / f"{split}.parquet"))
            stats[f"{split}_docs"] = len(ds)
            stats[f"{split}_label_counts"] = {names[k]: int(v) for k, v in
                                              zip(*np.unique(ds["label"], return_counts=True))}
        write_json(tmp / "labels.json", {"names": names, "values": [str(v) for v in values],
                                         "field": task.label_field})
        if made_from is not None:
            write_json(tmp / "made_from.json", made_from)
    return stats
