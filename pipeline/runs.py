"""Finished runs as `compare` and `power` read them: a run folder or a DVC experiment, its params,
metrics and per-example test predictions, and several runs aligned on one test set."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.config import ConfigError

METRIC_FILES = ("eval", "pretrain", "finetune")


@dataclass
class Run:
    """One finished experiment: its strategy, seeds, test metrics and per-example predictions."""
    name: str
    strategy: str
    seed: int
    pretrain_seed: int
    metrics: dict  # {"eval": {...}, "pretrain": {...}, "finetune": {...}}
    predictions: pd.DataFrame = field(repr=False)  # id, label, pred
    params: dict = field(default_factory=dict, repr=False)  # the run's params.yaml, for --by

    def param(self, dotted: str, default=ConfigError):
        """The value of a dotted param key (`pretrain.max_tokens`) in this run's params; where they lack it,
        `default` if given, else a ConfigError."""
        node = self.params
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not ConfigError:
                    return default
                raise ConfigError(f"run `{self.name}` has no param `{dotted}` in its params.yaml; --by takes a "
                                  f"dotted key of params.yaml such as pretrain.max_tokens or model.max_length.")
            node = node[part]
        return node

    @property
    def accuracy(self) -> float:
        return float(self.metrics["eval"]["accuracy"])

    @property
    def macro_f1(self) -> float:
        return float(self.metrics["eval"]["macro_f1"])

    @property
    def minutes(self) -> float:
        """Wall time of the run's pretrain, finetune and evaluate stages (their metrics' `seconds`)."""
        return sum(float(m.get("seconds", 0.0)) for m in self.metrics.values()) / 60


def make_run(name: str, params: dict, metrics: dict, predictions_csv: str) -> Run:
    where = f"run `{name}`"
    if "eval" not in metrics:
        raise ConfigError(f"{where}: metrics/eval.json is missing; the run did not finish `evaluate`.")
    preds = pd.read_csv(io.StringIO(predictions_csv), dtype={"id": str, "label": str, "pred": str})
    missing = {"id", "label", "pred"} - set(preds.columns)
    if missing:
        raise ConfigError(f"{where}: outputs/predictions.csv lacks the columns {sorted(missing)}; "
                          f"rerun its `evaluate` stage with this version of the pipeline.")
    pretrain = params.get("pretrain") or {}
    return Run(name=name, strategy=str(pretrain.get("source", "task")), seed=int(params.get("seed", 42)),
               pretrain_seed=int(pretrain.get("seed", 42)), metrics=metrics,
               predictions=preds[["id", "label", "pred"]], params=params)


def load_run_dir(path: str | Path) -> Run:
    """A run folder: params.yaml, metrics/{eval,pretrain,finetune}.json, outputs/predictions.csv."""
    path = Path(path)
    for need in ("params.yaml", "metrics/eval.json", "outputs/predictions.csv"):
        if not (path / need).exists():
            raise ConfigError(f"{path}: `{need}` is missing; a run folder holds params.yaml, metrics/*.json and "
                              f"outputs/predictions.csv of a finished pipeline run.")
    params = yaml.safe_load((path / "params.yaml").read_text()) or {}
    metrics = {m: json.loads((path / f"metrics/{m}.json").read_text())
               for m in METRIC_FILES if (path / f"metrics/{m}.json").exists()}
    return make_run(path.name, params, metrics, (path / "outputs/predictions.csv").read_text())


def _has_eval(rev: dict) -> bool:
    entry = ((rev.get("data") or {}).get("metrics") or {}).get("metrics/eval.json") or {}
    return bool(entry.get("data")) and not rev.get("error")


def dvc_experiments(repo: str | Path = ".", names: list[str] | None = None) -> list[Run]:
    """Finished DVC experiments of `repo` (on every baseline commit). Params and metrics come from
    DVC's experiment table, read in process, predictions from the DVC cache at the experiment's
    revision (`dvc.api.read`); queued, running and failed experiments (no metrics/eval.json) are skipped.

    `dvc.api.exp_show` is not used: it flattens every metrics file into one row of columns, so
    a key found in two files (`seconds` is in every stage's metrics) is renamed by file and the
    rest are not. `Repo.experiments.show` is what that function and `dvc exp show --json` both
    call; its states keep each file's metrics apart (`dumpd()` is the JSON the CLI prints)."""
    import dvc.api
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo.open(str(repo)) as dvc_repo:
            states = [state.dumpd() for state in dvc_repo.experiments.show(all_commits=True)]
    except DvcException as exc:
        raise ConfigError(f"{repo}: DVC could not list the experiments: {exc}") from exc
    found = {}
    for baseline in states:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                # a name can come twice (a failed queue entry beside the finished run of that name):
                # the finished one wins
                if rev.get("name") and rev.get("rev") and not (rev["name"] in found and _has_eval(found[rev["name"]])):
                    found[rev["name"]] = rev
    if names:
        unknown = [n for n in names if n not in found]
        if unknown:
            raise ConfigError(f"{repo}: no experiment named {', '.join(unknown)}; `dvc exp list -A` lists them.")
        found = {n: found[n] for n in names}
    runs = []
    for name, rev in sorted(found.items()):
        data = rev.get("data") or {}
        metrics = {m: ((data.get("metrics") or {}).get(f"metrics/{m}.json") or {}).get("data")
                   for m in METRIC_FILES}
        metrics = {m: v for m, v in metrics.items() if v}
        if "eval" not in metrics:
            if names:
                raise ConfigError(f"{repo}: experiment `{name}` has no metrics/eval.json; did it finish?")
            print(f"[compare] skipping experiment `{name}`: not finished", file=sys.stderr)
            continue
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        try:
            predictions = dvc.api.read("outputs/predictions.csv", repo=str(repo), rev=rev["rev"])
        except DvcException as exc:
            raise ConfigError(f"{repo}: experiment `{name}` has no outputs/predictions.csv in the DVC cache "
                              f"({exc}); rerun it or pull its outputs (`dvc pull`).") from exc
        runs.append(make_run(name, params, metrics, predictions))
    return runs


def aligned(runs: list[Run]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Labels and predictions as (runs x examples) class indices, examples in one shared id order."""
    ids = sorted(runs[0].predictions["id"])
    classes = sorted(set().union(*(set(r.predictions["label"]) | set(r.predictions["pred"]) for r in runs)))
    index = {c: i for i, c in enumerate(classes)}
    labels, preds = [], []
    for run in runs:
        frame = run.predictions.set_index("id")
        if sorted(frame.index) != ids:
            raise ConfigError(
                f"run `{run.name}` was tested on other examples than run `{runs[0].name}`; a paired comparison "
                f"needs the same test set: keep `task.*` (task.seed included) the same across the grid; "
                f"task.demo.train_seed draws other labelled examples on the same test set.")
        frame = frame.loc[ids]
        labels.append(frame["label"].map(index).to_numpy())
        preds.append(frame["pred"].map(index).to_numpy())
    labels, preds = np.stack(labels), np.stack(preds)
    if not (labels == labels[0]).all():
        raise ConfigError("the runs disagree on the test labels; they must share one prepared test set.")
    return ids, classes, labels[0], preds
