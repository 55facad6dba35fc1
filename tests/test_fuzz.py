"""Malformed task files, generated (issue 29): every one ends in a clear error (a ConfigError naming the
file or the key: `run_stage` turns it into exit 2 without a traceback) or in a prepared task whose counts
add up (every record read is kept or counted as dropped), never in anything else.

A seeded generator, not hypothesis: the cases are reproducible from the seed and the suite stays under a
minute. Each case is a task directory (train and test, as jsonl, csv or parquet) with some records
broken in one of the ways users' files break.
"""

import json
import math
import os
import random

import pytest
import yaml

from pipeline.config import ConfigError, from_dict
from pipeline.data import prepare_task

CASES = 240
GOOD = ["a fine film with a great cast", "an awful plot and a dull ending", "the actors were superb",
        "boring and far too long", "a moving story, well told", "weak script, clumsy direction"]


def bad_text(rng):
    return rng.choice(["", "   ", "\u200b\u200b", None, 7, 3.5, True, ["two", "sentences"], {"t": "x"}, "ok " * 400])


def bad_label(rng, style):
    return rng.choice([None, float("nan"), "", " ", {"a": 1}, [0, 1], "Pos ", "POS", 2.5, True, "7", 7,
                       "pos" if style == "int" else 1])


def records(rng, n, style, breakage):
    labels = ["neg", "pos"] if style == "str" else [0, 1]
    rows = [{"text": f"{rng.choice(GOOD)} {i}", "label": labels[i % 2]} for i in range(n)]
    for _ in range(rng.randint(1, 3) if breakage else 0):
        row = rng.choice(rows)
        kind = rng.choice(["text", "label", "drop_text", "drop_label", "extra"])
        if kind == "text":
            row["text"] = bad_text(rng)
        elif kind == "label":
            row["label"] = bad_label(rng, style)
        elif kind == "drop_text":
            row.pop("text")
        elif kind == "drop_label":
            row.pop("label")
        else:
            row["note"] = rng.choice([1, "x", None, [1]])
    return rows


def write(path_stem, rows, fmt, rng):
    """Rows as the format's own writer would, plus the file-level breakages a format allows."""
    if fmt == "jsonl":
        lines = [json.dumps(r) for r in rows]  # NaN as the NaN literal, as pandas writes it
        if rng.random() < 0.15:
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(['["text", 1]', '{"text": "cut', "42", "null"]))
        path = path_stem.with_suffix(".jsonl")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        header = ["text", "label"] + (["label"] if rng.random() < 0.15 else [])
        writer = csv.writer(buf)
        writer.writerow(header)
        for r in rows:
            writer.writerow([r.get("text"), r.get("label")] + ([r.get("label")] if len(header) == 3 else []))
        path = path_stem.with_suffix(".csv")
        path.write_text(buf.getvalue(), encoding="utf-8")
    else:
        from datasets import Dataset

        path = path_stem.with_suffix(".parquet")
        try:
            Dataset.from_list(rows).to_parquet(str(path))
        except Exception:  # Arrow cannot store mixed types in one column: the file is written as text instead
            path = path_stem.with_suffix(".jsonl")
            path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    if rng.random() < 0.05:
        path.write_bytes(b"")  # an empty file
    return path


def lines_of(path):
    """Records a file holds as its format defines them (what must be kept or counted)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows
    text = path.read_text(encoding="utf-8")
    n = sum(1 for line in text.splitlines() if line.strip())
    return n - 1 if path.suffix == ".csv" else n


@pytest.mark.parametrize("chunk", range(4))
def test_malformed_task_files_end_in_a_clear_error_or_counted_drops(tmp_path, chunk):
    outcomes = {"error": 0, "prepared": 0}
    for case in range(chunk * CASES // 4, (chunk + 1) * CASES // 4):
        rng = random.Random(case)
        task_dir = tmp_path / f"case{case}"
        task_dir.mkdir()
        style = rng.choice(["int", "str"])
        files = {split: write(task_dir / split, records(rng, rng.randint(12, 30), style, rng.random() < 0.85),
                              rng.choice(["jsonl", "csv", "parquet"]), rng) for split in ("train", "test")}
        task = from_dict({"task": {"dataset": str(task_dir), "demo": {"enabled": False}, "dev_size": 0.25}}).task
        try:
            stats = prepare_task(task, tmp_path / f"out{case}")
        except ConfigError as exc:
            message = str(exc)
            assert str(task_dir) in message or "task." in message, (case, message)
            outcomes["error"] += 1
            continue
        except Exception as exc:  # anything else is a traceback for the user
            raise AssertionError(f"case {case} (seed {case}): {type(exc).__name__}: {exc}") from exc
        outcomes["prepared"] += 1
        dropped = {s: stats["dropped_blank_text"][s] + stats["dropped_missing_label"][s] for s in ("train", "test")}
        assert stats["train_docs"] + stats["dev_docs"] + dropped["train"] == stats["records_read"]["train"], case
        assert stats["test_docs"] + dropped["test"] == stats["records_read"]["test"], case
        for split, path in files.items():  # nothing lost between the file and the reader
            assert stats["records_read"][split] == lines_of(path), (case, split)
        assert stats["classes"] >= 2 and not any(isinstance(v, float) and math.isnan(v) for v in [stats["classes"]])
    # the generator makes both kinds: a fuzz test that only ever errs (or never does) tests little
    assert outcomes["error"] >= 5 and outcomes["prepared"] >= 5, outcomes


# Corpus definitions and source folders, generated (issue 42): every case ends in a clear error (a ConfigError
# naming the definition, the source or the file) or in sources whose every file's records were all read, counted.

CORPUS_CASES = 200
DOCS = ["a review of the film and its cast", "the plot was thin but the music was fine", "news of the market today",
        "a long story about a director and a sequel", "the actors were wonderful in every scene"]


def broken_value(rng):
    return rng.choice([None, 7, 2.5, ["two", "parts"], {"k": 1}, "", "ok"])


def source_file(folder, rng, i, field):
    fmt = rng.choice(["jsonl", "jsonl.gz", "csv", "parquet"])
    rows = [{field: f"{rng.choice(DOCS)} {k}"} for k in range(rng.randint(3, 12))]
    kind = rng.choice(["fine"] * 4 + ["value", "field", "empty", "garbage", "gzip", "folder", "fifo", "crlf",
                                      "comma", "quote", "latin1", "array_line"])
    if kind == "value":
        rows[rng.randrange(len(rows))][field] = broken_value(rng)
    elif kind == "field":
        rows = [{"other": r[field]} for r in rows]
    path = folder / f"f{i}.{fmt}"
    if kind == "folder":
        path.mkdir()
        return path, kind
    if kind == "fifo":
        os.mkfifo(path)
        return path, kind
    if fmt == "parquet":
        from datasets import Dataset

        try:
            Dataset.from_list(rows).to_parquet(str(path))
        except Exception:
            path = path.with_suffix(".jsonl")
            fmt = "jsonl"
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(list(rows[0]))
        writer.writerows([[r[k] for k in rows[0]] for r in rows])
        text = buf.getvalue()
        if kind == "comma":
            text = text.replace("\n", "\nan unquoted, comma\n", 1)
        elif kind == "quote":
            text = text.replace("\n", '\n"a stray quote\n', 1)
        data = text.replace("\r\n", "\r" if kind == "crlf" else "\n").encode()
    elif fmt.startswith("jsonl"):
        lines = [json.dumps(r) for r in rows] + (["[1, 2]"] if kind == "array_line" else [])
        data = ("\r" if kind == "crlf" else "\n").join(lines).encode() + b"\n"
    else:
        data = None
    if data is not None:
        if kind == "latin1":
            data = data.replace(b"the", "th\u00e9".encode("latin-1"), 1)
        if kind == "garbage":
            data = bytes(rng.randrange(256) for _ in range(200))
        if kind == "empty":
            data = b""
        if fmt.endswith(".gz"):
            import gzip

            data = gzip.compress(data)[: -8 if kind == "gzip" else None]
        path.write_bytes(data)
    return path, kind


def corpus_definition(rng, folder, task_dir):
    field = rng.choice(["text", "body"])
    src = {"name": "reviews", "path": str(folder), "text_field": field, "weight": 1.0, "licence": "test"}
    kind = rng.choice(["fine"] * 5 + ["key", "weight", "field", "path", "no_path", "min_chars", "twice",
                                      "not_list", "task_train", "task_test", "field_list", "alias"])
    if kind == "key":
        src["wieght"] = 1.0
    elif kind == "weight":
        src["weight"] = rng.choice([-1, 0, "heavy", float("inf"), True])
    elif kind == "field":
        src["text_field"] = rng.choice(["txt", 3, [], None])
    elif kind == "path":
        src["path"] = str(folder / "nothing_here.jsonl")
    elif kind == "no_path":
        src.pop("path")
    elif kind == "min_chars":
        src["min_chars"] = rng.choice([-5, "ten", 2.5])
    elif kind == "task_train":
        src["path"] = str(task_dir / "train.jsonl")
    elif kind == "task_test":
        src["path"] = str(task_dir / "test.jsonl")
    elif kind == "field_list":
        src["text_field"] = [field, field]
    sources = [src, dict(src)] if kind == "twice" else [src]
    if kind == "not_list":
        return yaml.safe_dump({"sources": src}), kind, field
    if kind == "alias":
        return "base: &b " + json.dumps(src) + "\nsources: [*b]\n", kind, field
    return yaml.safe_dump({"sources": sources}), kind, field


@pytest.mark.parametrize("chunk", range(4))
def test_generated_corpus_definitions_and_folders_end_in_a_clear_error_or_counted_reads(tmp_path, task_dir, chunk):
    from pipeline.corpus_spec import check_sources, load_source, load_spec

    task = from_dict({"task": {"dataset": str(task_dir)}}).task
    outcomes = {"error": 0, "read": 0}
    for case in range(chunk * CORPUS_CASES // 4, (chunk + 1) * CORPUS_CASES // 4):
        rng = random.Random(1000 + case)
        folder, corpora = tmp_path / f"src{case}", tmp_path / f"corpora{case}"
        folder.mkdir()
        corpora.mkdir()
        text, spec_kind, field = corpus_definition(rng, folder, task_dir)
        files = [source_file(folder, rng, i, field) for i in range(rng.randint(1, 3))]
        (corpora / "in_domain.yaml").write_text(text)
        counts: dict = {}
        try:
            spec = load_spec(corpora, "in_domain")
            check_sources(spec, task, "in_domain")
            read = sum(len(load_source(src, task_dir, counts)) for src in spec["sources"])
        except ConfigError as exc:
            message = str(exc)
            assert str(corpora) in message or str(folder) in message or str(task_dir) in message, (case, message)
            assert len(message) < 2000 and "Traceback" not in message, case
            outcomes["error"] += 1
            continue
        except Exception as exc:  # anything else is a traceback for the user
            raise AssertionError(f"corpus case {case} ({spec_kind}, files {[k for _, k in files]}): "
                                 f"{type(exc).__name__}: {exc}") from exc
        outcomes["read"] += 1
        assert counts and all(c["records"] == c["read"] for c in counts.values()), (case, counts)
        assert read == sum(c["read"] for c in counts.values()), case  # every record read reaches the corpus step
    assert outcomes["error"] >= 5 and outcomes["read"] >= 5, outcomes
