"""Compare strategies over a grid of finished runs: mean +- std per strategy, the difference from
the baseline with a paired bootstrap confidence interval, a markdown table, a CSV for DVC plots
and a PNG.

    python -m pipeline.compare                      # every DVC experiment of this repo
    python -m pipeline.compare --exps task-seed1 …  # some of them
    python -m pipeline.compare --runs runs/*        # run folders (params.yaml, metrics/, outputs/)

The interval is a paired bootstrap over test examples (Efron & Tibshirani; Koehn 2004 for NLP):
every resample draws the same test examples for the strategy and the baseline, and the
difference is averaged over the seeds both have. It measures how much the figure depends on
which test examples were drawn; the spread over seeds is the separate `std` column.
Written here because no library at hand does a paired bootstrap over saved predictions of a
DVC experiment grid (scipy.stats.bootstrap resamples one statistic of independent samples).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.config import SOURCES, ConfigError
from pipeline.io import atomic_file, atomic_write_text, write_csv, write_json

METRIC_FILES = ("eval", "pretrain", "finetune")
BOOT_CELLS = 20_000_000  # resample counts held at once (160 MB): the bootstrap runs in chunks of this size


@dataclass
class Run:
    """One finished experiment: its strategy, seeds, test metrics and per-example predictions."""
    name: str
    strategy: str
    seed: int
    pretrain_seed: int
    metrics: dict  # {"eval": {...}, "pretrain": {...}, "finetune": {...}}
    predictions: pd.DataFrame = field(repr=False)  # id, label, pred

    @property
    def accuracy(self) -> float:
        return float(self.metrics["eval"]["accuracy"])

    @property
    def macro_f1(self) -> float:
        return float(self.metrics["eval"]["macro_f1"])


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
               predictions=preds[["id", "label", "pred"]])


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


def dvc_experiments(repo: str | Path = ".", names: list[str] | None = None) -> list[Run]:
    """Finished DVC experiments of `repo` (on every baseline commit). Params and metrics come from
    `dvc exp show --json`, predictions from the DVC cache at the experiment's revision; queued,
    running and failed experiments (no metrics/eval.json) are skipped."""
    import dvc.api
    from dvc.exceptions import DvcException

    result = subprocess.run(["dvc", "exp", "show", "--json", "-A"], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(f"{repo}: `dvc exp show` failed: {result.stderr.strip()[-500:]}")
    found = {}
    for baseline in json.loads(result.stdout or "[]"):
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name") and rev.get("rev"):
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


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


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
        for key, values in (
                ("accuracy", [r.accuracy for r in group]),
                ("macro_f1", [r.macro_f1 for r in group]),
                ("perplexity_before", [r.metrics.get("pretrain", {}).get("perplexity_before") for r in group]),
                ("perplexity_after", [r.metrics.get("pretrain", {}).get("perplexity_after") for r in group]),
                ("tokens_trained", [r.metrics.get("pretrain", {}).get("tokens_trained") for r in group])):
            entry[key], entry[f"{key}_std"] = _mean_std(values)
        if strategy != baseline and base_rows:
            # pair seed with seed where both have it; otherwise all runs of each side
            common = sorted({runs[i].seed for i in rows} & {runs[i].seed for i in base_rows})
            a = [i for i in rows if runs[i].seed in common] or rows
            b = [i for i in base_rows if runs[i].seed in common] or base_rows
            entry["vs_baseline"] = paired_bootstrap(labels, preds[a], preds[b], len(classes), n_boot, seed,
                                                    confidence)
            entry["vs_baseline"]["paired_seeds"] = common
        table[strategy] = entry
    return {"baseline": baseline, "order": order, "confidence": confidence, "bootstrap_resamples": n_boot,
            "test_examples": int(labels.shape[0]), "classes": classes, "strategies": table}


def _pm(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _ci(d: dict, scale: float = 100.0) -> str:
    return f"{d['diff'] * scale:+.2f} [{d['ci_low'] * scale:+.2f}, {d['ci_high'] * scale:+.2f}]"


def markdown(summary: dict) -> str:
    conf = int(round(summary["confidence"] * 100))
    base = summary["baseline"]
    lines = [f"| strategy | runs (seeds) | accuracy % | macro-F1 % | Δ accuracy vs `{base}` [{conf}% CI] | "
             f"Δ macro-F1 vs `{base}` [{conf}% CI] | p | held-out MLM ppl before → after |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for strategy, e in summary["strategies"].items():
        vs = e.get("vs_baseline")
        delta_acc = _ci(vs["accuracy"]) if vs else "–"
        delta_f1 = _ci(vs["macro_f1"]) if vs else "–"
        p = f"{vs['accuracy']['p_value']:.3f}" if vs else "–"
        if math.isnan(e["perplexity_after"]):
            ppl = "–"
        else:
            ppl = f"{e['perplexity_before']:,.0f} → {e['perplexity_after']:,.0f} ± {e['perplexity_after_std']:,.0f}"
        lines.append(f"| `{strategy}` | {len(e['runs'])} ({', '.join(map(str, e['seeds']))}) | "
                     f"{_pm(e['accuracy'], e['accuracy_std'])} | {_pm(e['macro_f1'], e['macro_f1_std'])} | "
                     f"{delta_acc} | {delta_f1} | {p} | {ppl} |")
    lines.append("")
    lines.append(f"Mean ± sample std over seeds. Δ: paired bootstrap over the {summary['test_examples']} test "
                 f"examples ({summary['bootstrap_resamples']:,} resamples), averaged over the seeds both strategies "
                 f"have, in accuracy points; p: two-sided bootstrap p-value of no difference in accuracy.")
    return "\n".join(lines) + "\n"


def plot(summary: dict, runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(summary["strategies"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    for x, s in enumerate(strategies):
        e = summary["strategies"][s]
        ax.errorbar(x, e["accuracy"] * 100, yerr=e["accuracy_std"] * 100, fmt="o", capsize=6, color="C0")
        ax.scatter([x] * len(e["runs"]), [r.accuracy * 100 for r in runs if r.strategy == s],
                   color="C1", s=12, zorder=3)
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_ylabel("test accuracy % (mean ± std; dots: seeds)")
    ax = axes[1]
    rows = [(x, summary["strategies"][s].get("vs_baseline")) for x, s in enumerate(strategies)]
    for x, vs in rows:
        if vs:
            a = vs["accuracy"]
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
    rows = []
    for s, e in summary["strategies"].items():
        vs = (e.get("vs_baseline") or {}).get("accuracy", {})
        rows.append({"strategy": s, "runs": len(e["runs"]), "accuracy": round(e["accuracy"] * 100, 3),
                     "accuracy_std": round(e["accuracy_std"] * 100, 3),
                     "macro_f1": round(e["macro_f1"] * 100, 3),
                     "delta_accuracy": round(vs.get("diff", 0.0) * 100, 3),
                     "ci_low": round(vs.get("ci_low", 0.0) * 100, 3), "ci_high": round(vs.get("ci_high", 0.0) * 100, 3),
                     "perplexity_after": e["perplexity_after"]})
    write_csv(out / "compare.csv", rows, list(rows[0]))
    plot(summary, runs, out / "compare.png")
    return {"markdown": out / "compare.md", "png": out / "compare.png"}


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
    args = parser.parse_args(argv)
    try:
        runs = [load_run_dir(p) for p in args.runs] if args.runs else dvc_experiments(args.repo, args.exps)
        summary = summarise(runs, args.baseline, args.bootstrap, args.seed, args.confidence)
    except ConfigError as exc:
        print(f"[compare] error: {exc}", file=sys.stderr)
        return 2
    paths = write_report(summary, runs, args.out)
    print(markdown(summary))
    print(f"[compare] wrote {paths['markdown']} and {paths['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
