"""Run records: what `compare`, `pipeline.labels` and `pipeline.power` read of a finished run (its params.yaml,
metrics/*.json and test predictions) in one small JSON file that can be committed with the code.

    python -m pipeline.records --repo /path/to/clone --prefix fewlabel- --out experiments/records/few-label
    python -m pipeline.compare --runs experiments/records/few-label/fewlabel-*.json

Why by hand: a DVC experiment lives in the repository that ran it (refs/exps, .dvc/cache); `dvc exp push`
keeps it only where a git remote and a DVC remote outlive the machine. A grid that takes longer than one
machine's life (a spot instance, a lent node, a workplace that wipes its machines between sessions) loses
its finished runs with the machine. A record keeps the part the analysis reads: about 6 KB for 5,000 test
examples, against 90 MB for the run's model, which is not kept. Every reader that takes run folders
(`--runs`, `--from-runs`) takes record files too.

Layout of OUT: `<experiment name>.json` per run, and `test-<sha256[:12]>.csv` (id,label in id order) per
test set, shared by the records of that test set; a record holds its predictions as one character per test
example in that order (the index of the predicted class in `classes`). Files are written to a temporary
name and renamed, so a cut-off export leaves no half record.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import pandas as pd

from pipeline.config import ConfigError
from pipeline.io import atomic_write_text
from pipeline.runs import Run, dvc_experiments, make_run

FORMAT = "dapt-pipeline run record 1"
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"  # class index -> one character (at most 36 classes)


def record_of(run: Run) -> tuple[dict, str]:
    """(the record, its test set's id,label CSV text) of a run."""
    preds = run.predictions.sort_values("id", kind="stable")
    if preds["id"].duplicated().any():
        raise ConfigError(f"run `{run.name}`: outputs/predictions.csv repeats test ids; a record keys predictions "
                          f"by id: rerun its `evaluate` stage.")
    classes = sorted(set(preds["label"]) | set(preds["pred"]))
    if len(classes) > len(DIGITS):
        raise ConfigError(f"run `{run.name}` has {len(classes)} classes; a run record holds at most {len(DIGITS)}: "
                          f"keep this run as a run folder or a DVC experiment.")
    index = {c: DIGITS[i] for i, c in enumerate(classes)}
    test_csv = preds[["id", "label"]].to_csv(index=False)
    record = {"format": FORMAT, "name": run.name, "experiment_commit": run.commit, "params": run.params,
              "metrics": run.metrics, "test_set": f"test-{hashlib.sha256(test_csv.encode()).hexdigest()[:12]}.csv",
              "classes": classes, "pred": "".join(preds["pred"].map(index))}
    return record, test_csv


def export(runs: list[Run], out: str | Path) -> dict[str, list[str]]:
    """Write a record per run to `out`; returns the names {"written": [...], "unchanged": [...]}. A record that
    exists with other content is refused (a run of the same name run again): remove it to replace it."""
    out = Path(out)
    done = {"written": [], "unchanged": []}
    for run in runs:
        record, test_csv = record_of(run)
        test_path = out / record["test_set"]
        if not test_path.exists():  # named by its content's hash: one that exists holds the same text
            atomic_write_text(test_path, test_csv)
        text = json.dumps(record, indent=1, sort_keys=True, default=str) + "\n"
        path = out / f"{run.name}.json"
        if path.exists():
            if path.read_text(encoding="utf-8") == text:
                done["unchanged"].append(run.name)
                continue
            raise ConfigError(f"{path}: a record of `{run.name}` exists with other content (the experiment was run "
                              f"again?); delete the file to replace it with this run, or rename the experiment.")
        atomic_write_text(path, text)
        done["written"].append(run.name)
    return done


def load_record(path: str | Path) -> Run:
    """The Run a record file holds, its predictions rebuilt from its test set's CSV beside it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such run record; `python -m pipeline.records` writes them.") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a run record ({exc}); write records with `python -m pipeline.records`.") \
            from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ConfigError(f"{path}: field `format` is not `{FORMAT}`; this is not a run record of this version "
                          f"(write it again with `python -m pipeline.records`).")
    missing = [k for k in ("name", "params", "metrics", "test_set", "classes", "pred") if k not in record]
    if missing:
        raise ConfigError(f"{path}: fields {missing} are missing; write the record again with "
                          f"`python -m pipeline.records`.")
    test_path = path.parent / record["test_set"]
    if not test_path.exists():
        raise ConfigError(f"{path}: its test set `{record['test_set']}` (field `test_set`) is not beside it; copy "
                          f"it from the folder the record was exported to.")
    test = pd.read_csv(io.StringIO(test_path.read_text(encoding="utf-8")), dtype={"id": str, "label": str})
    pred, classes = record["pred"], record["classes"]
    if len(pred) != len(test) or any(DIGITS.find(c) not in range(len(classes)) for c in set(pred)):
        raise ConfigError(f"{path}: field `pred` holds {len(pred)} predictions for the {len(test)} examples of "
                          f"{test_path.name}, or a class outside `classes`; the record is damaged: export it again.")
    test["pred"] = [classes[DIGITS.index(c)] for c in pred]
    return make_run(record["name"], record["params"], record["metrics"], test, commit=record.get("experiment_commit"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.records", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=".", help="the DVC repository whose finished experiments are exported")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--exps", nargs="+", help="these experiments (default: every finished one)")
    which.add_argument("--prefix", help="the finished experiments whose names start with this")
    parser.add_argument("--out", required=True, help="the records folder (e.g. experiments/records/<grid>)")
    args = parser.parse_args(argv)
    try:
        runs = dvc_experiments(args.repo, args.exps)
        if args.prefix:
            runs = [r for r in runs if r.name.startswith(args.prefix)]
        done = export(runs, args.out)
    except ConfigError as exc:
        print(f"[records] error: {exc}", file=sys.stderr)
        return 2
    print(f"[records] {args.out}: {len(done['written'])} written, {len(done['unchanged'])} unchanged"
          + (f" ({', '.join(done['written'])})" if done["written"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
