"""Finished runs as `compare` and `power` read them: a run folder or a DVC experiment, its params,
metrics and per-example test predictions, and several runs aligned on one test set."""

from __future__ import annotations

import glob
import io
import json
import os
import re
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
    commit: str | None = None  # the DVC experiment's git commit, where it was read from one

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
    def mlm_model(self) -> tuple:
        """Which pretrained model this run fine-tuned, as far as its records tell: runs that share one have the
        same pretrain.seed and the same metrics/pretrain.json (DVC restores a shared pretrain stage from its cache,
        metrics and all), and two MLM runs never match to the hundredth of a second of their `seconds`.
        pretrain.seed alone does not tell: `task`'s corpus is the draw's labelled reviews, so each label draw
        (task.demo.train_seed) pretrains a model of its own at the same seed."""
        return self.pretrain_seed, json.dumps(self.metrics.get("pretrain") or {}, sort_keys=True, default=str)

    @property
    def minutes(self) -> float:
        """Wall time of the run's pretrain, finetune and evaluate stages (their metrics' `seconds`)."""
        return sum(float(m.get("seconds", 0.0)) for m in self.metrics.values()) / 60


def one_per_model(runs: list[Run]) -> list[Run]:
    """One run per pretrained model (`Run.mlm_model`): pretraining figures (perplexity, MLM minutes) count once
    per model, since fine-tuning seeds that share one do not make a spread."""
    return list({r.mlm_model: r for r in runs}.values())


def make_run(name: str, params: dict, metrics: dict, predictions: str | pd.DataFrame,
             commit: str | None = None) -> Run:
    """A Run from its params, metrics and test predictions (predictions.csv's text, or its frame); `commit`:
    the DVC experiment's git commit, where it was read from one."""
    where = f"run `{name}`"
    if "eval" not in metrics:
        raise ConfigError(f"{where}: metrics/eval.json is missing; the run did not finish `evaluate`.")
    preds = (predictions if isinstance(predictions, pd.DataFrame) else
             pd.read_csv(io.StringIO(predictions), dtype={"id": str, "label": str, "pred": str}))
    missing = {"id", "label", "pred"} - set(preds.columns)
    if missing:
        raise ConfigError(f"{where}: outputs/predictions.csv lacks the columns {sorted(missing)}; "
                          f"rerun its `evaluate` stage with this version of the pipeline.")
    pretrain = params.get("pretrain") or {}
    return Run(name=name, strategy=str(pretrain.get("source", "task")), seed=int(params.get("seed", 42)),
               pretrain_seed=int(pretrain.get("seed", 42)), metrics=metrics,
               predictions=preds[["id", "label", "pred"]], params=params, commit=commit)


def params_yaml(text: str, where) -> dict:
    """A params.yaml as DVC reads it: YAML 1.2 (ruamel), so `lr: 2e-05` is a number, not the string
    PyYAML's YAML 1.1 makes of it."""
    from dvc.utils.serialize import parse_yaml

    return parse_yaml(text, str(where)) or {}


def load_run_dir(path: str | Path) -> Run:
    """A run folder: params.yaml, metrics/{eval,pretrain,finetune}.json, outputs/predictions.csv; or a run
    record, the same in one JSON file (pipeline.records)."""
    path = Path(path)
    if path.suffix == ".json":
        from pipeline.records import load_record

        return load_record(path)
    for need in ("params.yaml", "metrics/eval.json", "outputs/predictions.csv"):
        if not (path / need).exists():
            raise ConfigError(f"{path}: `{need}` is missing; a run folder holds params.yaml, metrics/*.json and "
                              f"outputs/predictions.csv of a finished pipeline run.")
    params = params_yaml((path / "params.yaml").read_text(), path / "params.yaml")
    metrics = {m: json.loads((path / f"metrics/{m}.json").read_text())
               for m in METRIC_FILES if (path / f"metrics/{m}.json").exists()}
    return make_run(path.name, params, metrics, (path / "outputs/predictions.csv").read_text())


def dvc_experiments(repo: str | Path = ".", names: list[str] | None = None) -> list[Run]:
    """Finished DVC experiments of `repo` (on every baseline commit): each is read at its own git
    revision, params.yaml from git, metrics/*.json and outputs/predictions.csv by the md5 its dvc.lock
    records, from the local DVC cache, or through `dvc.api.read` (which fetches from the DVC remote)
    where the local cache lacks them. Queued, running and failed experiments have no experiment ref
    and are not listed; a finished one without metrics/eval.json is skipped.

    Why not `Repo.experiments.show` and `dvc.api.read` alone (what this did before): both rebuild DVC's
    index of every dvc.yaml and dvc.lock (ruamel YAML) once per experiment and per file, some seconds
    each: 38 s against 0.6 s for 15 experiments on a 2-core CPU (bench/bench_read_exps.py, BENCHMARKS.md).
    The ref listing, git trees and cache layout used here are DVC's own APIs (`exp_refs`, `scm.get_fs`,
    `cache.local.oid_to_path`); only the lockfile lookup of an out's md5 is by hand."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo.open(str(repo)) as dvc_repo:
            found = _experiment_commits(dvc_repo.scm)
            if names:
                unknown = [n for n in names if n not in found]
                if unknown:
                    raise ConfigError(f"{repo}: no finished experiment named {', '.join(unknown)}; "
                                      f"`dvc exp list -A` lists them (queued, running and failed ones are not "
                                      f"read: `dvc queue status`).")
                found = {n: found[n] for n in names}
            runs = []
            for name, sha in sorted(found.items()):
                read = _reader_at(dvc_repo, repo, sha, name)
                metrics = {m: json.loads(text) for m in METRIC_FILES
                           if (text := read(f"metrics/{m}.json", required=False)) is not None}
                if "eval" not in metrics:
                    if names:
                        raise ConfigError(f"{repo}: experiment `{name}` has no metrics/eval.json; did it finish?")
                    print(f"[compare] skipping experiment `{name}`: no metrics/eval.json", file=sys.stderr)
                    continue
                params = params_yaml(read("params.yaml", required=False) or "", f"{name}:params.yaml")
                runs.append(make_run(name, params, metrics, read("outputs/predictions.csv"), commit=sha))
            return runs
    except DvcException as exc:
        raise ConfigError(f"{repo}: DVC could not read the experiments: {exc}") from exc


def _experiment_commits(scm) -> dict[str, str]:
    """Experiment name -> its commit. A name run on two baseline commits (a grid queued again after a
    commit) is read from its newest run, and stderr says so."""
    from dvc.repo.experiments.utils import exp_refs

    shas: dict[str, list[str]] = {}
    for info in exp_refs(scm):
        if info.name and (sha := scm.get_ref(str(info))):
            shas.setdefault(info.name, []).append(sha)
    newest = {}
    for name, found in shas.items():
        if len(found) > 1:
            print(f"[compare] experiment `{name}` exists on {len(found)} baselines; reading the newest run",
                  file=sys.stderr)
        newest[name] = found[0] if len(found) == 1 else max(found, key=lambda sha: scm.resolve_commit(sha).commit_time)
    return newest


def _reader_at(dvc_repo, repo, sha: str, name: str):
    """read(path): a file of experiment `name` at commit `sha`: from git if committed, else the DVC out
    of that path in the commit's dvc.lock, from the local cache or, failing that, the DVC remote."""
    import os

    import dvc.api
    from dvc.exceptions import DvcException

    fs = dvc_repo.scm.get_fs(sha)
    # git paths are from the git root; the DVC project may be a folder of it (`dvc init --subdir`)
    sub = os.path.relpath(dvc_repo.root_dir, dvc_repo.scm.root_dir)
    at = (lambda path: path) if sub == "." else (lambda path: f"{sub}/{path}")
    outs = {}
    if fs.exists(at("dvc.lock")):
        lock = yaml.load(fs.read_text(at("dvc.lock")), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        outs = {out["path"]: out for stage in (lock.get("stages") or {}).values() for out in stage.get("outs") or []}

    def read(path: str, required: bool = True) -> str | None:
        if fs.exists(at(path)):
            return fs.read_text(at(path))
        out = outs.get(path)
        if out is None:
            if not required:
                return None
            raise ConfigError(f"{repo}: experiment `{name}` has no `{path}` (neither in git nor in its dvc.lock); "
                              f"rerun it with this version of the pipeline.")
        if out.get("hash") == "md5" and out.get("md5"):
            local = dvc_repo.cache.local.oid_to_path(out["md5"])
            if os.path.exists(local):
                with open(local, encoding="utf-8") as f:
                    return f.read()
        try:  # not in the local cache: DVC fetches it from the remote
            return dvc.api.read(path, repo=str(repo), rev=sha)
        except DvcException as exc:
            raise ConfigError(f"{repo}: experiment `{name}` has no `{path}` in the DVC cache ({exc}); rerun it "
                              f"or pull its outputs (`dvc pull`).") from exc

    return read


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


def shell_paths(paths: list[str]) -> list[str]:
    """The paths as one shell glob that matches exactly them among the files there now (a name's "-" or "."
    separated parts that differ become "*"), else as given: a planning command over 100 run records stays one
    line that a shell expands to the same runs. Written here: no library inverts a glob."""
    paths = [str(p) for p in paths]
    parents = {os.path.dirname(p) for p in paths}
    if len(set(paths)) < 3 or len(parents) != 1 or any(re.search(r"[\s*?\[\]$'\"\\]", p) for p in paths):
        return paths
    parts = [re.split(r"([-.])", os.path.basename(p)) for p in paths]
    if len({len(x) for x in parts}) != 1:
        return paths
    pattern = os.path.join(parents.pop(), "".join(c[0] if len(set(c)) == 1 else "*" for c in zip(*parts)))
    return [pattern] if sorted(glob.glob(pattern)) == sorted(set(paths)) else paths
