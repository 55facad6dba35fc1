"""Compare strategies over a grid of finished runs: mean +- std per strategy, the difference from
the baseline with a confidence interval and the smallest difference the grid can detect, a markdown
table, a CSV for DVC plots and a PNG.

    python -m pipeline.compare                      # every DVC experiment of this repo
    python -m pipeline.compare --exps task-seed1 …  # some of them
    python -m pipeline.compare --runs runs/*        # run folders (params.yaml, metrics/, outputs/)

Δ accuracy: the mean paired difference over the seeds both strategies have, with a t interval whose
SE covers test-set sampling AND the fine-tuning seed spread (pipeline/power.py: a seeds x test
examples random-effects model), and the minimum detectable effect (MDE) of the grid. With one paired
seed it is a paired bootstrap over test examples (Efron & Tibshirani; Koehn 2004), as is Δ macro-F1:
every resample draws the same test examples for both strategies (written here: scipy.stats.bootstrap
resamples one statistic of independent samples, not saved predictions of a DVC experiment grid).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline import power
from pipeline.config import SOURCES, ConfigError
from pipeline.io import atomic_file, atomic_write_text, write_csv, write_json

METRIC_FILES = ("eval", "pretrain", "finetune")
BOOT_CELLS = 20_000_000  # resample counts held at once (160 MB): the bootstrap runs in chunks of this size
WARN_MDE = 0.01  # warn when a comparison cannot detect a 1-point difference: the literature's effects are 0.5 to 2


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

    def param(self, dotted: str):
        """The value of a dotted param key (`pretrain.max_tokens`) in this run's params."""
        node = self.params
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
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


def _aligned(runs: list[Run]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
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
                f"needs the same test set: keep `task.*` (task.seed included) the same across the grid.")
        frame = frame.loc[ids]
        labels.append(frame["label"].map(index).to_numpy())
        preds.append(frame["pred"].map(index).to_numpy())
    labels, preds = np.stack(labels), np.stack(preds)
    if not (labels == labels[0]).all():
        raise ConfigError("the runs disagree on the test labels; they must share one prepared test set.")
    return ids, classes, labels[0], preds


def _macro_f1_weighted(labels: np.ndarray, preds: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 of each row of `weights` (resample counts, B x N) for one run's predictions."""
    f1 = []
    for c in range(k):
        tp = weights @ ((labels == c) & (preds == c)).astype(np.float64)
        fp = weights @ ((labels != c) & (preds == c)).astype(np.float64)
        fn = weights @ ((labels == c) & (preds != c)).astype(np.float64)
        denom = 2 * tp + fp + fn
        f1.append(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0))
    return np.mean(f1, axis=0)


def paired_bootstrap(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, k: int,
                     n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Difference a - b in accuracy and macro-F1 (each averaged over its runs' rows), with a
    percentile interval from resampling test examples, the same draw for a and b.

    `preds_a`, `preds_b`: (runs x examples). Returns point estimates, intervals and the
    two-sided bootstrap p-value of "no difference".
    """
    n = labels.shape[0]
    rng = np.random.default_rng(seed)

    def f1(preds, w):
        return np.mean([_macro_f1_weighted(labels, p, w, k) for p in preds], axis=0)

    acc_diff = (preds_a == labels).mean(0) - (preds_b == labels).mean(0)  # per example, over runs
    ones = np.ones((1, n))
    points = {"accuracy": float(acc_diff.mean()), "macro_f1": float((f1(preds_a, ones) - f1(preds_b, ones))[0])}
    boots = {"accuracy": [], "macro_f1": []}
    chunk = max(1, min(n_boot, BOOT_CELLS // max(n, 1)))  # bounded memory whatever the test set size
    for start in range(0, n_boot, chunk):
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - start)).astype(np.float64)
        boots["accuracy"].append(weights @ acc_diff / n)
        boots["macro_f1"].append(f1(preds_a, weights) - f1(preds_b, weights))
    alpha = (1 - confidence) / 2
    out = {}
    for metric, parts in boots.items():
        boot = np.concatenate(parts)
        low, high = np.quantile(boot, [alpha, 1 - alpha])
        p = 2 * min((boot <= 0).mean(), (boot >= 0).mean())
        out[metric] = {"diff": points[metric], "ci_low": float(low), "ci_high": float(high),
                       "p_value": float(min(1.0, p))}
    return out


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std; the std is None (no spread measured, shown as "–") for fewer than 2 values."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return float("nan"), None
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None


def summarise(runs: list[Run], baseline: str = "none", n_boot: int = 10_000, seed: int = 0,
              confidence: float = 0.95) -> dict:
    """Per strategy: runs, seeds, mean +- std of the metrics, and the paired difference from `baseline`."""
    if not runs:
        raise ConfigError("no finished runs to compare; run the grid first (README: Compare strategies).")
    _, classes, labels, preds = _aligned(runs)
    order = [s for s in SOURCES if any(r.strategy == s for r in runs)]
    order += sorted({r.strategy for r in runs} - set(order))
    base_rows = [i for i, r in enumerate(runs) if r.strategy == baseline]
    table = {}
    for strategy in order:
        rows = [i for i, r in enumerate(runs) if r.strategy == strategy]
        group = [runs[i] for i in rows]
        entry = {"runs": [r.name for r in group], "seeds": sorted(r.seed for r in group),
                 "pretrain_seeds": sorted({r.pretrain_seed for r in group})}
        # pretraining figures once per pretrained model: seeds that share one (same pretrain.seed) do not
        # make a spread
        models = list({r.pretrain_seed: r for r in group}.values())
        for key, values in (
                ("accuracy", [r.accuracy for r in group]),
                ("macro_f1", [r.macro_f1 for r in group]),
                ("perplexity_before", [r.metrics.get("pretrain", {}).get("perplexity_before") for r in models]),
                ("perplexity_after", [r.metrics.get("pretrain", {}).get("perplexity_after") for r in models]),
                ("tokens_trained", [r.metrics.get("pretrain", {}).get("tokens_trained") for r in models])):
            entry[key], entry[f"{key}_std"] = _mean_std(values)
        entry["minutes"], entry["minutes_std"] = _mean_std([r.minutes for r in group])
        if strategy != baseline and base_rows:
            # pair seed with seed where both have it; otherwise all runs of each side
            common = sorted({runs[i].seed for i in rows} & {runs[i].seed for i in base_rows})
            a = [i for i in rows if runs[i].seed in common] or rows
            b = [i for i in base_rows if runs[i].seed in common] or base_rows
            entry["vs_baseline"] = paired_bootstrap(labels, preds[a], preds[b], len(classes), n_boot, seed,
                                                    confidence)
            entry["vs_baseline"]["paired_seeds"] = common
            d, paired_by = power.paired_diff(preds[a] == labels, [runs[i].seed for i in a], preds[b] == labels,
                                             [runs[i].seed for i in b])
            entry["vs_baseline"]["power"] = {**power.interval(d, confidence), "paired_by": paired_by}
        table[strategy] = entry
    return {"baseline": baseline, "order": order, "confidence": confidence, "bootstrap_resamples": n_boot,
            "test_examples": int(labels.shape[0]), "classes": classes, "strategies": table}


def _pm(mean: float, std: float | None, scale: float = 100.0, digits: int = 2) -> str:
    if math.isnan(mean):
        return "–"
    spread = "–" if std is None else f"{std * scale:,.{digits}f}"
    return f"{mean * scale:,.{digits}f} ± {spread}"


def _ci(d: dict, scale: float = 100.0) -> str:
    return f"{d['diff'] * scale:+.2f} [{d['ci_low'] * scale:+.2f}, {d['ci_high'] * scale:+.2f}]"


def _headline(vs: dict) -> dict:
    """The Δ accuracy that tables, CSVs and plots show: over test examples and seeds (pipeline/power.py) when
    several paired seeds measured the seed spread, else the paired bootstrap over test examples."""
    return vs["power"] if vs["power"]["seed_term"] else vs["accuracy"]


def _delta_cells(vs: dict | None) -> list[str]:
    """Δ accuracy [CI], the p of that interval, the MDE in points; †: one paired seed (test sampling only)."""
    if not vs:
        return ["–"] * 3
    shown, mark = _headline(vs), "" if vs["power"]["seed_term"] else " †"
    return [_ci(shown) + mark, f"{shown['p_value']:.3f}", f"{vs['power']['mde'] * 100:.2f}{mark}"]


def _delta_note(summary: dict, groups: list[dict]) -> str:
    """What the Δ accuracy, p and MDE columns cover (both kinds when the table holds both)."""
    kinds = {e["vs_baseline"]["power"]["seed_term"] for g in groups for e in g["strategies"].values()
             if "vs_baseline" in e}
    note = (f"Δ accuracy: the difference in points ± t·SE, the SE covering both the sampling of the "
            f"{summary['test_examples']} test examples and the spread over the paired fine-tuning seeds (seeds x "
            f"examples random-effects model, pipeline/power.py), t at its Satterthwaite df (few seeds widen it); "
            f"p: its two-sided p-value. " * (True in kinds))
    note += (f"{'†: ' if True in kinds else 'Δ accuracy: '}one paired seed, no measured seed spread: paired "
             f"bootstrap over the test examples only ({summary['bootstrap_resamples']:,} resamples), p its "
             f"two-sided p-value, the MDE from test sampling only. " * (False in kinds))
    return note + (f"MDE: the smallest true difference detected with 80% power at {summary['confidence']:.0%} "
                   f"confidence (a warning says when it is above {WARN_MDE * 100:g} point).")


def _csv_row(e: dict, lead: dict, default: float | None = None, **extra) -> dict:
    """A CSV row: accuracy, the Δ accuracy the table shows and its MDE (points), perplexity, minutes."""
    vs = e.get("vs_baseline")
    shown = _headline(vs) if vs else {}
    return {**lead, "runs": len(e["runs"]), "accuracy": round(e["accuracy"] * 100, 3),
            "accuracy_std": None if e["accuracy_std"] is None else round(e["accuracy_std"] * 100, 3), **extra,
            **{col: round(shown[key] * 100, 3) if vs else default
               for col, key in (("delta_accuracy", "diff"), ("ci_low", "ci_low"), ("ci_high", "ci_high"))},
            "mde": round(vs["power"]["mde"] * 100, 3) if vs else None, "perplexity_after": e["perplexity_after"],
            "minutes": round(e["minutes"], 2)}


def markdown(summary: dict) -> str:
    conf = int(round(summary["confidence"] * 100))
    base = summary["baseline"]
    lines = [f"| strategy | runs (seeds) | accuracy % | macro-F1 % | Δ accuracy vs `{base}` [{conf}% CI] | p | "
             f"MDE (80% power) | Δ macro-F1 vs `{base}` [{conf}% CI] | held-out MLM ppl before → after | "
             f"minutes per run |", "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for strategy, e in summary["strategies"].items():
        vs = e.get("vs_baseline")
        delta_f1 = _ci(vs["macro_f1"]) if vs else "–"
        ppl = _pm(e["perplexity_after"], e["perplexity_after_std"], scale=1.0, digits=0)
        ppl = ppl if ppl == "–" else f"{e['perplexity_before']:,.0f} → {ppl}"
        lines.append(f"| `{strategy}` | {len(e['runs'])} ({', '.join(map(str, e['seeds']))}) | "
                     f"{_pm(e['accuracy'], e['accuracy_std'])} | {_pm(e['macro_f1'], e['macro_f1_std'])} | "
                     f"{' | '.join(_delta_cells(vs))} | {delta_f1} | {ppl} | "
                     f"{_pm(e['minutes'], e['minutes_std'], scale=1.0, digits=1)} |")
    lines.append("")
    lines.append(f"Mean ± sample std over seeds. {_delta_note(summary, [summary])} Δ macro-F1: paired bootstrap "
                 f"over the test examples only ({summary['bootstrap_resamples']:,} resamples), averaged over the "
                 f"seeds both strategies have. Minutes: wall time of a run's pretrain, finetune and evaluate stages "
                 f"(their metrics' `seconds`).")
    return "\n".join(lines) + "\n"


def power_warnings(summary: dict, plan_flags: str = "") -> list[str]:
    """A line per comparison whose MDE is above WARN_MDE, and per comparison paired in seed order."""
    lines = []
    for value, group in summary["groups"].items() if "by" in summary else [(None, summary)]:
        for strategy, e in group["strategies"].items():
            pw = e.get("vs_baseline", {}).get("power")
            what = f"{strategy} vs {summary['baseline']}" + (f" at {summary['by']}={value}" if "by" in summary else "")
            if pw and pw["paired_by"] == "order":
                lines.append(f"[compare] note: {what}: no fine-tuning seed in common; Δ accuracy pairs "
                             f"{pw['seeds']} run(s) of each in seed order")
            if pw and pw["mde"] > WARN_MDE:
                lines.append(f"[compare] warning: {what}: this grid can only detect differences of "
                             f"{pw['mde'] * 100:.1f} points or more (80% power"
                             f"{'' if pw['seed_term'] else '; test sampling only, one seed'}); the literature's "
                             f"effects are 0.5 to 2 points. Plan a larger grid: python -m pipeline.power --test "
                             f"{group['test_examples']} --seeds {pw['seeds']} --target-mde {WARN_MDE:g}{plan_flags}")
    return lines


def plot(summary: dict, runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(summary["strategies"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    for x, s in enumerate(strategies):
        e = summary["strategies"][s]
        ax.errorbar(x, e["accuracy"] * 100, yerr=(e["accuracy_std"] or 0.0) * 100, fmt="o", capsize=6, color="C0")
        ax.scatter([x] * len(e["runs"]), [r.accuracy * 100 for r in runs if r.strategy == s],
                   color="C1", s=12, zorder=3)
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_ylabel("test accuracy % (mean ± std; dots: seeds)")
    ax = axes[1]
    rows = [(x, summary["strategies"][s].get("vs_baseline")) for x, s in enumerate(strategies)]
    for x, vs in rows:
        if vs:
            a = _headline(vs)
            ax.errorbar(x, a["diff"] * 100, yerr=[[(a["diff"] - a["ci_low"]) * 100], [(a["ci_high"] - a["diff"]) * 100]],
                        fmt="s", capsize=6, color="C2")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_ylabel(f"Δ accuracy vs {summary['baseline']} (points, {int(summary['confidence'] * 100)}% CI)")
    ax = axes[2]
    floor = min((summary["strategies"][s]["perplexity_after"] for s in strategies
                 if not math.isnan(summary["strategies"][s]["perplexity_after"])), default=1.0)
    for x, s in enumerate(strategies):
        e = summary["strategies"][s]
        if not math.isnan(e["perplexity_after"]):
            ax.bar(x - 0.2, e["perplexity_before"], width=0.4, color="C7", label="before" if x == 0 else None)
            ax.bar(x + 0.2, e["perplexity_after"], width=0.4, color="C3", label="after" if x == 0 else None)
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(1.0, floor / 2))
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_ylabel("held-out task MLM perplexity")
    ax.legend()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_report(summary: dict, runs: list[Run], out: str | Path) -> dict:
    """reports/compare.{md,json,csv,png}: the csv is the DVC plot (`dvc plots show`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.md", markdown(summary))
    write_json(out / "compare.json", summary)
    rows = [_csv_row(e, {"strategy": s}, 0.0, macro_f1=round(e["macro_f1"] * 100, 3))
            for s, e in summary["strategies"].items()]
    write_csv(out / "compare.csv", rows, list(rows[0]))
    plot(summary, runs, out / "compare.png")
    return {"markdown": out / "compare.md", "json": out / "compare.json", "csv": out / "compare.csv",
            "png": out / "compare.png"}


def _sort_key(value):
    return (0, float(value), "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0.0, str(value))


def summarise_by(runs: list[Run], by: str, baseline: str = "none", n_boot: int = 10_000, seed: int = 0,
                 confidence: float = 0.95) -> dict:
    """`summarise` at each value of the param `by` (a dotted key such as pretrain.max_tokens).

    At a value with no baseline runs, the baseline runs are borrowed when they all share one value
    of `by`: a baseline that does not depend on it (`none` trains no MLM, so its budget is moot).
    Otherwise that value has no comparison with the baseline.
    """
    if not runs:
        raise ConfigError("no finished runs to compare; run the grid first (README: Compare strategies).")
    at: dict = {}
    for run in runs:
        at.setdefault(run.param(by), []).append(run)
    base_runs = [r for r in runs if r.strategy == baseline]
    base_values = {repr(r.param(by)) for r in base_runs}
    groups, borrowed = {}, []
    for value in sorted(at, key=_sort_key):
        group = at[value]
        if base_runs and all(r.strategy != baseline for r in group) and len(base_values) == 1:
            group = group + base_runs
            borrowed.append(value)
        groups[value] = summarise(group, baseline, n_boot, seed, confidence)
    first = next(iter(groups.values()))
    return {"by": by, "baseline": baseline, "values": list(groups), "baseline_borrowed_at": borrowed,
            "confidence": confidence, "bootstrap_resamples": n_boot, "test_examples": first["test_examples"],
            "groups": groups}


def markdown_by(summary: dict) -> str:
    by, base, conf = summary["by"], summary["baseline"], int(round(summary["confidence"] * 100))
    lines = [f"| `{by}` | strategy | runs (seeds) | accuracy % | Δ accuracy vs `{base}` [{conf}% CI] | p | MDE (80% "
             f"power) | held-out MLM ppl after | minutes per run |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for value, group in zip(summary["values"], summary["groups"].values()):
        for strategy, e in group["strategies"].items():
            ppl = _pm(e["perplexity_after"], e["perplexity_after_std"], scale=1.0, digits=0)  # – : no MLM
            lines.append(f"| {value} | `{strategy}` | {len(e['runs'])} ({', '.join(map(str, e['seeds']))}) | "
                         f"{_pm(e['accuracy'], e['accuracy_std'])} | "
                         f"{' | '.join(_delta_cells(e.get('vs_baseline')))} | "
                         f"{ppl} | {_pm(e['minutes'], e['minutes_std'], scale=1.0, digits=1)} |")
    lines.append("")
    note = (f" The `{base}` runs (one value of `{by}`) serve as the baseline at "
            f"{', '.join(map(str, summary['baseline_borrowed_at']))}." if summary["baseline_borrowed_at"] else "")
    lines.append(f"Mean ± sample std over seeds (– : one run). At each value of `{by}`: "
                 f"{_delta_note(summary, list(summary['groups'].values()))}{note}")
    return "\n".join(lines) + "\n"


def plot_by(summary: dict, path: Path) -> None:
    """Against the param's values, a line per strategy (the baseline dashed): test accuracy with each
    point's minutes per run written beside it, the difference from the baseline with its interval,
    and, when the runs did MLM, the held-out perplexity after it (a dose-response reads all three)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = summary["values"]
    numeric = all(_sort_key(v)[0] == 0 for v in values)
    xs = [float(v) for v in values] if numeric else list(range(len(values)))
    strategies = list(dict.fromkeys(s for g in summary["groups"].values() for s in g["strategies"]))
    with_ppl = any(not math.isnan(e["perplexity_after"]) for g in summary["groups"].values()
                   for e in g["strategies"].values())
    fig, axes = plt.subplots(1, 3 if with_ppl else 2, figsize=(16 if with_ppl else 11, 4))
    for i, strategy in enumerate(strategies):
        pts = [(x, g["strategies"][strategy]) for x, g in zip(xs, summary["groups"].values())
               if strategy in g["strategies"]]
        style = dict(color=f"C{i}", capsize=4, marker="o", label=strategy,
                     linestyle="--" if strategy == summary["baseline"] else "-")
        axes[0].errorbar([x for x, _ in pts], [e["accuracy"] * 100 for _, e in pts],
                         yerr=[(e["accuracy_std"] or 0.0) * 100 for _, e in pts], **style)
        if strategy != summary["baseline"]:  # the baseline's minutes are the same run at every value
            for x, e in pts:
                if not math.isnan(e["minutes"]):
                    axes[0].annotate(f"{e['minutes']:.0f} min", (x, e["accuracy"] * 100), fontsize=7,
                                     color=f"C{i}", textcoords="offset points", xytext=(4, 4))
        vs = [(x, _headline(e["vs_baseline"])) for x, e in pts if e.get("vs_baseline")]
        if vs:
            axes[1].errorbar([x for x, _ in vs], [a["diff"] * 100 for _, a in vs],
                             yerr=[[(a["diff"] - a["ci_low"]) * 100 for _, a in vs],
                                   [(a["ci_high"] - a["diff"]) * 100 for _, a in vs]], **style)
        ppl = [(x, e) for x, e in pts if not math.isnan(e["perplexity_after"])]
        if with_ppl and ppl:
            axes[2].errorbar([x for x, _ in ppl], [e["perplexity_after"] for _, e in ppl],
                             yerr=[e["perplexity_after_std"] or 0.0 for _, e in ppl], **style)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[0].set_ylabel("test accuracy % (mean ± std over seeds; minutes per run)")
    axes[1].set_ylabel(f"Δ accuracy vs {summary['baseline']} (points, {int(summary['confidence'] * 100)}% CI)")
    if with_ppl:
        axes[2].set_ylabel("held-out MLM perplexity after pretraining")
        axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel(summary["by"])
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in values])
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_report_by(summary: dict, out: str | Path) -> dict:
    """reports/compare-by-<param>.{md,json,csv,png}; the strategy table's files are left as they are."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"compare-by-{summary['by']}.{ext}"
             for kind, ext in (("markdown", "md"), ("json", "json"), ("csv", "csv"), ("png", "png"))}
    atomic_write_text(paths["markdown"], markdown_by(summary))
    write_json(paths["json"], {**summary, "values": [str(v) for v in summary["values"]],
                                           "groups": {str(k): g for k, g in summary["groups"].items()},
                                           "baseline_borrowed_at": [str(v) for v in summary["baseline_borrowed_at"]]})
    rows = [_csv_row(e, {summary["by"]: value, "strategy": strategy})
            for value, group in zip(summary["values"], summary["groups"].values())
            for strategy, e in group["strategies"].items()]
    write_csv(paths["csv"], rows, list(rows[0]))
    plot_by(summary, paths["png"])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", help="run folders instead of DVC experiments")
    parser.add_argument("--exps", nargs="+", help="only these DVC experiments (default: all finished ones)")
    parser.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    parser.add_argument("--baseline", default="none", help="strategy the others are compared with")
    parser.add_argument("--out", default="reports", help="folder for compare.md/.json/.csv/.png")
    parser.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    parser.add_argument("--by", metavar="PARAM", help="one table and plot over this param's values crossed with the "
                        "strategies (a dotted params.yaml key: pretrain.max_tokens, model.max_length, ...)")
    args = parser.parse_args(argv)
    try:
        runs = [load_run_dir(p) for p in args.runs] if args.runs else dvc_experiments(args.repo, args.exps)
        if args.by:
            summary = summarise_by(runs, args.by, args.baseline, args.bootstrap, args.seed, args.confidence)
        else:
            summary = summarise(runs, args.baseline, args.bootstrap, args.seed, args.confidence)
    except ConfigError as exc:
        print(f"[compare] error: {exc}", file=sys.stderr)
        return 2
    if args.by:
        paths = write_report_by(summary, args.out)
        print(markdown_by(summary))
    else:
        paths = write_report(summary, runs, args.out)
        print(markdown(summary))
    # the planning command measures the variance on these runs (one recipe per strategy: not with --by)
    plan = [] if args.by else ["--from-runs", *args.runs] if args.runs else ["--from-exps", *(args.exps or [])]
    plan += ["--repo", args.repo] * (args.repo != "." and not args.runs)
    plan += ["--baseline", args.baseline] * (args.baseline != "none")
    for line in power_warnings(summary, " ".join(["", *plan])):
        print(line, file=sys.stderr)
    print(f"[compare] wrote {', '.join(str(p) for p in paths.values())}")
    # not declared in dvc.yaml: it exists only once compare has run (a declared plot would warn before)
    axes = "-x accuracy -y strategy --template bar_horizontal" if not args.by else f"-x {args.by} -y accuracy"
    print(f"[compare] DVC plot: dvc plots show {paths['csv']} {axes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
