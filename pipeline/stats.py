"""The statistics of a grid: per strategy mean +- std over seeds, and the paired difference from the
baseline over the same test examples (a bootstrap here, the seeds x examples interval and MDE in
pipeline/variance.py), at one recipe or at each value of a param (`summarise_by`)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import bootstrap

from pipeline import variance
from pipeline.config import SOURCES, ConfigError
from pipeline.runs import Run, aligned, one_per_model

BOOT_CELLS = 20_000_000  # resampled indices held at once (160 MB): SciPy's `batch` is sized from it


def macro_f1(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 along the last axis (one value per resample row): SciPy's bootstrap statistic."""
    f1 = []
    for c in range(k):
        tp = ((labels == c) & (preds == c)).sum(-1)
        fp = ((labels != c) & (preds == c)).sum(-1)
        fn = ((labels == c) & (preds != c)).sum(-1)
        denom = 2 * tp + fp + fn
        f1.append(np.divide(2 * tp, denom, out=np.zeros(tp.shape), where=denom > 0))
    return np.mean(f1, axis=0)


def macro_f1_values(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """Per-example values (runs x examples) whose mean over examples is each run's macro-F1 exactly: the
    delta-method linearisation (influence function) of F1_c = 2·TP_c / (predicted_c + true_c). Macro-F1
    is not a mean over examples, so the seeds x examples model of pipeline/variance.py cannot take it as
    it is; its linearisation is a mean, with the same variance to first order in 1/n, so the macro-F1
    interval gets the seed term the accuracy interval has. Written here because neither SciPy nor
    scikit-learn linearises F1, and a two-level bootstrap over 2 to 5 seeds has too few distinct resamples.
    """
    preds = np.atleast_2d(preds)
    values = np.zeros(preds.shape, dtype=np.float64)
    for c in range(k):
        hit = ((labels == c) & (preds == c)).astype(np.float64)
        pred_c, true_c = (preds == c).astype(np.float64), np.broadcast_to(labels == c, preds.shape).astype(np.float64)
        denom = (pred_c.mean(-1) + true_c.mean(-1))[:, None]  # (runs x 1)
        f1 = np.divide(2 * hit.mean(-1)[:, None], denom, out=np.zeros(denom.shape), where=denom > 0)
        values += f1 + np.divide(2 * hit - f1 * (pred_c + true_c), denom, out=np.zeros(preds.shape),
                                 where=denom > 0)
    return values / k


def paired_bootstrap(labels: np.ndarray, preds_a: np.ndarray, preds_b: np.ndarray, k: int,
                     n_boot: int = 10_000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Difference a - b in accuracy and macro-F1 (each averaged over its runs' rows), with a
    percentile interval from resampling test examples, the same draw for a and b (SciPy's
    `bootstrap(paired=True)`: every run's predictions are one paired sample, so a resample takes the
    same examples from each).

    `preds_a`, `preds_b`: (runs x examples). Returns point estimates, intervals and the two-sided
    bootstrap p-value of "no difference" (the share of the bootstrap distribution beyond zero).
    """
    n, ra = labels.shape[0], len(preds_a)

    def f1_diff(y, *p, axis=-1):
        return (np.mean([macro_f1(y, q, k) for q in p[:ra]], axis=0)
                - np.mean([macro_f1(y, q, k) for q in p[ra:]], axis=0))

    # accuracy: the mean of one per-example difference (a's correctness over its runs minus b's)
    acc_diff = (preds_a == labels).mean(0) - (preds_b == labels).mean(0)
    tests = {"accuracy": ((acc_diff,), lambda d, axis=-1: d.mean(axis)),
             "macro_f1": ((labels, *preds_a, *preds_b), f1_diff)}
    out = {}
    for name, (samples, stat) in tests.items():
        # the same seed and sample length for both metrics: the same resampled examples
        res = bootstrap(samples, stat, n_resamples=n_boot, batch=max(1, BOOT_CELLS // max(n, 1)), vectorized=True,
                        paired=True, confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
        boot = res.bootstrap_distribution
        p = 2 * min((boot <= 0).mean(), (boot >= 0).mean())
        out[name] = {"diff": float(stat(*samples)), "ci_low": float(res.confidence_interval.low),
                     "ci_high": float(res.confidence_interval.high), "p_value": float(min(1.0, p))}
    return out


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std; the std is None (no spread measured, shown as "–") for fewer than 2 values."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return float("nan"), None
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None


def replicates(runs: list[Run]) -> tuple[str, object]:
    """What one replicate of a strategy is in this comparison, and the key that pairs replicates across
    strategies: the fine-tuning `seed` whenever it varies (runs of a strategy at one seed are averaged, over
    pretrain.seed too), else `pretrain.seed` where it varies within a strategy: a zero-shot grid
    (`finetune.epochs: 0`) has no fine-tuning seed to vary, its runs differ in their MLM seed alone."""
    pretrain_varies = len({(r.strategy, r.pretrain_seed) for r in runs}) > len({r.strategy for r in runs})
    if len({r.seed for r in runs}) == 1 and pretrain_varies:
        return "pretrain.seed", lambda r: r.pretrain_seed
    return "seed", lambda r: r.seed


# what else may vary between the runs of one replicate (a grid of label draws x MLM seeds x fine-tuning seeds)
WITHIN_REPLICATE = ("pretrain.seed", "task.demo.train_seed", "task.seed")


def averaged_over(group: list[Run], replicate_of) -> list[str]:
    """The params that differ between runs of one replicate: a replicate is then their mean, and what those
    runs share across replicates (one MLM model or label draw for every seed) is not in its interval."""
    found = []
    for dotted in WITHIN_REPLICATE:
        values: dict = {}
        for r in group:
            values.setdefault(replicate_of(r), set()).add(repr(r.param(dotted, default=None)))
        if any(len(v) > 1 for v in values.values()):
            found.append(dotted)
    return found


def summarise(runs: list[Run], baseline: str = "none", n_boot: int = 10_000, seed: int = 0,
              confidence: float = 0.95) -> dict:
    """Per strategy: runs, replicates (`replicates`), mean +- std of the metrics, and the paired difference
    from `baseline`."""
    if not runs:
        raise ConfigError("no finished runs to compare; run the grid first (README: Compare strategies).")
    replicate_by, replicate_of = replicates(runs)
    _, classes, labels, preds = aligned(runs)
    order = [s for s in SOURCES if any(r.strategy == s for r in runs)]
    order += sorted({r.strategy for r in runs} - set(order))
    base_rows = [i for i, r in enumerate(runs) if r.strategy == baseline]
    table = {}
    for strategy in order:
        rows = [i for i, r in enumerate(runs) if r.strategy == strategy]
        group = [runs[i] for i in rows]
        entry = {"runs": [r.name for r in group], "seeds": sorted((replicate_of(r) for r in group), key=sort_key),
                 "pretrain_seeds": sorted({r.pretrain_seed for r in group})}
        models = one_per_model(group)
        for key, values in (
                ("accuracy", [r.accuracy for r in group]),
                ("macro_f1", [r.macro_f1 for r in group]),
                ("perplexity_before", [r.metrics.get("pretrain", {}).get("perplexity_before") for r in models]),
                ("perplexity_after", [r.metrics.get("pretrain", {}).get("perplexity_after") for r in models]),
                ("tokens_trained", [r.metrics.get("pretrain", {}).get("tokens_trained") for r in models])):
            entry[key], entry[f"{key}_std"] = mean_std(values)
        entry["minutes"], entry["minutes_std"] = mean_std([r.minutes for r in group])
        entry["averaged_over"] = averaged_over(group, replicate_of)
        if strategy != baseline and base_rows:
            # pair replicate with replicate where both have it; otherwise all runs of each side
            common = sorted({replicate_of(runs[i]) for i in rows} & {replicate_of(runs[i]) for i in base_rows}, key=sort_key)
            a = [i for i in rows if replicate_of(runs[i]) in common] or rows
            b = [i for i in base_rows if replicate_of(runs[i]) in common] or base_rows
            entry["vs_baseline"] = paired_bootstrap(labels, preds[a], preds[b], len(classes), n_boot, seed,
                                                    confidence)
            entry["vs_baseline"]["paired_seeds"] = common
            d, paired_by = variance.paired_diff(preds[a] == labels, [replicate_of(runs[i]) for i in a],
                                                preds[b] == labels, [replicate_of(runs[i]) for i in b])
            entry["vs_baseline"]["power"] = {**variance.interval(d, confidence), "paired_by": paired_by}
            f1_values = macro_f1_values(labels, preds[a + b], len(classes))
            d_f1, _ = variance.paired_diff(f1_values[:len(a)], [replicate_of(runs[i]) for i in a],
                                           f1_values[len(a):], [replicate_of(runs[i]) for i in b])
            entry["vs_baseline"]["power_macro_f1"] = variance.interval(d_f1, confidence)
        table[strategy] = entry
    return {"baseline": baseline, "order": order, "confidence": confidence, "bootstrap_resamples": n_boot,
            "test_examples": int(labels.shape[0]), "classes": classes, "replicates": replicate_by,
            "strategies": table}


def headline(vs: dict, metric: str = "accuracy") -> dict:
    """The Δ accuracy (or Δ macro-F1) that tables, CSVs and plots show: over test examples and seeds
    (pipeline/variance.py; macro-F1 through its linearisation, `macro_f1_values`) when several paired seeds
    measured the seed spread, else the paired bootstrap over test examples."""
    if not vs["power"]["seed_term"]:
        return vs[metric]
    return vs["power"] if metric == "accuracy" else vs["power_macro_f1"]


def sort_key(value):
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
    for value in sorted(at, key=sort_key):
        group = at[value]
        if base_runs and all(r.strategy != baseline for r in group) and len(base_values) == 1:
            group = group + base_runs
            borrowed.append(value)
        groups[value] = summarise(group, baseline, n_boot, seed, confidence)
    first = next(iter(groups.values()))
    return {"by": by, "baseline": baseline, "values": list(groups), "baseline_borrowed_at": borrowed,
            "confidence": confidence, "bootstrap_resamples": n_boot, "test_examples": first["test_examples"],
            "groups": groups}
