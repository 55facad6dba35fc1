"""Malformed task files, generated (issue 29): every one ends in a clear error (a ConfigError naming the
file or the key: `run_stage` turns it into exit 2 without a traceback) or in a prepared task whose counts
add up (every record read is kept or counted as dropped), never in anything else.

A seeded generator, not hypothesis: the cases are reproducible from the seed and the suite stays under a
minute. Each case is a task directory (train and test, as jsonl, csv or parquet) with some records
broken in one of the ways users' files break.
"""

import json
import math
import random

import pytest

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
