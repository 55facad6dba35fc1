"""The label-equivalent of a gain (Bai et al. 2021, "Pre-train or Annotate?"): how many labelled reviews the
baseline would have needed to match each strategy. A gain in points does not say whether labelling more
would have bought the same for less; L* does.

    python -m pipeline.labels --runs runs/*                       # run folders
    python -m pipeline.labels --exps none-100-d1-s1 ... --holdout 250   # DVC experiments

Input: finished runs of the baseline (`--baseline`, default `none`) at several label counts (the dotted param
`--labels-param`, default task.demo.train), each with several fine-tuning seeds (`seed`) and label draws
(`task.demo.train_seed`, else `task.seed`), and runs of other strategies at some label count. Every run must be
tested on the same test examples (their per-example correctness is resampled jointly).

The curve: the baseline's accuracy at each label count (the mean over label draws of the mean over each
draw's seeds), fitted by isotonic regression (non-decreasing; scipy.optimize.isotonic_regression, the same
pool-adjacent-violators fit as sklearn's IsotonicRegression on sorted distinct x, weighted by the runs at each
count) against log(labels), with linear interpolation in log(labels) between the fitted points. Isotonic, not
a parametric a + b·log(L): learning curves bend (they saturate towards the full-data accuracy), a log-linear
fit would be biased wherever they do, and a monotone interpolation only uses the counts around L*. Neither
fit is trusted outside the measured counts, so there is no extrapolation: a strategy above the fitted
accuracy at the largest count gets L* "> max", one below it at the smallest count gets "< min".

L*: the smallest label count at which the fitted curve reaches the strategy's mean accuracy (the inverse of
the monotone fit). A strategy below the baseline at its own label count has L* below that count.

The interval: a hierarchical percentile bootstrap. Each replicate resamples the label draws (task.demo.train_seed
values), within each drawn draw the MLM models (`pretrain.seed`: runs that share a pretrained model are not
independent; `none` has one), within each model the fine-tuning seeds, and the test examples: the same resampled
test indices for every run (they share the test set); it refits the curve and recomputes L*. Draws, models and
seeds are drawn with shared random numbers across strategies, label counts and draws, so cells with the same
draw, model and seed values resample the same ones (a paired bootstrap, as compare pairs seeds, and a model
shared by the draws, as an `in_domain` corpus is, stays shared). A level with few units (2 draws, 2 MLM models)
is resampled from those few: the bootstrap's variance at that level is (k-1)/k of the sample variance, half
at k = 2, so the interval is then on the narrow side; the report gives the per-model L* beside it. Censored replicates
(L* beyond the measured counts) count as below the smallest / above the largest count, so an interval end
can itself be "< min" or "> max".

A wide interval (upper/lower above 2, or beyond the measured counts) gets a warning with a pipeline.power plan.
With several label draws the plan is over draws (the draws in the planner's seed role, their spread of the
difference with the baseline as its seed term): the interval resamples them, and a plan over fine-tuning seeds
alone would leave that spread out.

`--holdout N`: the baseline's runs at N labels are left out of the fit, and the fit's prediction at N is
checked against their mean's interval over seeds x test examples (pipeline/variance.py).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import isotonic_regression
from scipy.stats import norm

from pipeline import variance
from pipeline.config import ConfigError
from pipeline.io import atomic_write_text, write_json
from pipeline.runs import Run, aligned, dvc_experiments, load_run_dir, one_per_model, shell_paths
from pipeline.stats import sort_key

LABELS_PARAM = "task.demo.train"
# the label draw, which labelled examples a run was given: task.demo.train_seed (dev and test stay task.seed's
# draw, one test set for every run), or task.seed where that is null
DRAW_PARAMS = ("task.demo.train_seed", "task.seed")
WIDE = 2.0  # flag an interval whose upper/lower L* ratio exceeds this
CHUNK = 5_000_000  # resampled test indices held at once (40 MB)


@dataclass(frozen=True)
class Key:
    """What one run is in the grid: its strategy, label count, label draw, fine-tuning seed and MLM model
    (`pretrain.seed`: the runs of one strategy that share a pretrained model are not independent)."""
    strategy: str
    labels: int
    draw: object = 0
    seed: object = 0
    model: object = 0


@dataclass
class Cell:
    """The runs of one strategy at one label count: per label draw (sorted), per MLM model (sorted), its runs
    (rows of the correctness matrix) sorted by fine-tuning seed."""
    strategy: str
    labels: int
    draws: list = field(default_factory=list)
    rows: list = field(default_factory=list)  # rows[draw]: {MLM model (its pretrain.seed): run indices}, sorted

    def model_mean(self, acc: np.ndarray, model) -> float:
        """The mean over draws of one MLM model's runs (the draws that have it)."""
        return float(np.mean([acc[models[model]].mean() for models in self.rows if model in models]))

    def model_ids(self) -> list:
        return sorted({q for models in self.rows for q in models}, key=sort_key)

    @property
    def runs(self) -> int:
        return len(self.indices())

    @property
    def models(self) -> int:
        """MLM models per label draw (the most of any draw)."""
        return max(len(models) for models in self.rows)

    def indices(self) -> list[int]:
        return [i for models in self.rows for r in models.values() for i in r]

    def per_draw(self, acc: np.ndarray) -> list:
        """Each label draw's mean over its models of the mean over each model's runs; `acc` (runs,) or
        (replicates x runs)."""
        return [np.mean([acc[..., r].mean(-1) for r in models.values()], axis=0) for models in self.rows]

    def mean(self, acc: np.ndarray) -> np.ndarray:
        """The mean over draws of per_draw."""
        return np.mean(self.per_draw(acc), axis=0)

    def draw_means(self, acc: np.ndarray) -> dict:
        """{label draw: its per_draw mean}, for a vector `acc` (runs,)."""
        return {d: float(m) for d, m in zip(self.draws, self.per_draw(acc))}

    def resampled_mean(self, acc: np.ndarray, u: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The cell mean in each replicate, resampled at three levels: draws picked by the uniforms `u`
        (B x draw slots); in every picked draw its models by `w` (B x model slots, the same for every draw, so
        a model shared by the draws, as `in_domain`'s is, stays shared); in each picked model its runs by `v`
        (B x draw slots x run slots, the same for every model, so a fine-tuning seed stays paired across
        models and strategies). `acc` (B x runs): the runs' accuracies on that replicate's test examples."""
        m = len(self.rows)
        pmax = self.models
        n_models = np.array([len(models) for models in self.rows])  # per draw
        n_runs = np.zeros((m, pmax), dtype=np.int64)
        for j, models in enumerate(self.rows):
            n_runs[j, :len(models)] = [len(r) for r in models.values()]
        kmax = int(n_runs.max())
        table = np.zeros((m, pmax, kmax), dtype=np.int64)
        for j, models in enumerate(self.rows):
            for q, r in enumerate(models.values()):
                table[j, q, :len(r)] = r
        draw = np.minimum((u[:, :m] * m).astype(np.int64), m - 1)  # B x m
        p = n_models[draw][..., None]  # B x m x 1: models of each picked draw
        model = np.minimum((w[:, None, :pmax] * p).astype(np.int64), p - 1)  # B x m x pmax
        k = n_runs[draw[..., None], model][..., None]  # B x m x pmax x 1: runs of each picked model
        slot = np.minimum((v[:, :m, None, :kmax] * k).astype(np.int64), k - 1)  # B x m x pmax x kmax
        run = table[draw[..., None, None], model[..., None], slot]
        vals = np.take_along_axis(acc, run.reshape(len(acc), -1), axis=1).reshape(run.shape)
        per_model = (vals * (np.arange(kmax) < k)).sum(-1) / k[..., 0]  # B x m x pmax
        per_draw = (per_model * (np.arange(pmax) < p)).sum(-1) / p[..., 0]  # B x m
        return per_draw.mean(-1)


def cells_of(keys: list[Key]) -> dict:
    """{(strategy, labels): Cell} from the runs' keys (row i of the correctness matrix is keys[i])."""
    found: dict = {}
    for i, key in enumerate(keys):
        (found.setdefault((key.strategy, key.labels), {}).setdefault(key.draw, {})
         .setdefault(key.model, []).append((key.seed, i)))
    cells = {}
    for (strategy, labels), draws in found.items():
        order = sorted(draws, key=sort_key)
        cells[strategy, labels] = Cell(strategy, labels, order, [
            {q: [i for _, i in sorted(draws[d][q], key=lambda pair: sort_key(pair[0]))]
             for q in sorted(draws[d], key=sort_key)} for d in order])
    return cells


def fit_curve(means: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The isotonic (non-decreasing) fit of `means` (..., label counts in increasing order), weighted."""
    means = np.atleast_2d(means)
    return np.stack([isotonic_regression(row, weights=weights, increasing=True).x for row in means])


def invert(log_x: np.ndarray, fitted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """log L*: the smallest log(labels) where the piecewise-linear curve through (log_x, fitted[b]) reaches
    target[b]; -inf when the curve is above the target already at the smallest count, +inf when it never
    reaches it within the measured counts (no extrapolation)."""
    target = np.atleast_1d(target).astype(np.float64)
    fitted = np.broadcast_to(np.atleast_2d(fitted), (len(target), len(log_x)))  # one curve for all, or one each
    reach = fitted >= target[:, None]
    k = reach.argmax(1)
    out = np.full(len(target), np.inf)
    inside = reach.any(1) & (k > 0)
    kk = k[inside]
    lo, hi = fitted[inside, kk - 1], fitted[inside, kk]
    out[inside] = log_x[kk - 1] + (target[inside] - lo) / (hi - lo) * (log_x[kk] - log_x[kk - 1])
    first = reach.any(1) & (k == 0)
    out[first] = np.where(fitted[first, 0] == target[first], log_x[0], -np.inf)
    return out


def _bound(log_l: float, x_min: int, x_max: int) -> dict:
    """A value of L* as {value, bound}: bound "<" (below the smallest count), ">" (above the largest) or None."""
    if log_l == -np.inf:
        return {"value": x_min, "bound": "<"}
    if log_l == np.inf:
        return {"value": x_max, "bound": ">"}
    return {"value": float(math.exp(log_l)), "bound": None}


def fmt(v: dict, digits: int = 0) -> str:
    text = f"{v['value']:,.{digits}f}"
    return f"{v['bound']} {text}" if v["bound"] else text


def _ratio(upper: dict, lower: dict) -> dict:
    """upper/lower of two L* values; a censored end makes it a lower bound ("> r")."""
    value = upper["value"] / lower["value"]
    return {"value": value, "bound": ">" if upper["bound"] == ">" or lower["bound"] == "<" else None}


def _resamples(n: int, n_boot: int, rng: np.random.Generator):
    """Per chunk of replicates, the resampled test examples as counts (chunk x n): one draw per replicate,
    the same for every run."""
    chunk = max(1, min(n_boot, CHUNK // max(n, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, (b, n))
        yield np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        done += b


def label_equivalents(correct: np.ndarray, keys: list[Key], baseline: str = "none", n_boot: int = 2000,
                      seed: int = 0, confidence: float = 0.95, holdout: int | None = None) -> dict:
    """L* and its bootstrap interval for every non-baseline (strategy, label count) of the grid.

    `correct`: (runs x test examples) 0/1 correctness on one shared test set; `keys[i]` says what run i is."""
    correct = np.asarray(correct, dtype=np.float64)
    if correct.ndim != 2 or len(correct) != len(keys) or not len(keys):
        raise ConfigError("no finished runs to read; run the grid first (a baseline at several label counts).")
    n = correct.shape[1]
    if n < 2:
        raise ConfigError("the runs have fewer than 2 test examples; the interval resamples them.")
    cells = cells_of(keys)
    counts = sorted({lab for (s, lab) in cells if s == baseline})
    if not counts:
        have = ", ".join(sorted({s for s, _ in cells}))
        raise ConfigError(f"no run of the baseline `{baseline}` among the runs (they are: {have}); L* reads the "
                          f"baseline's accuracy against labels: add `{baseline}` runs at several label counts "
                          f"(e.g. 100, 150, 200, 300, 500), or name the baseline with --baseline.")
    if holdout is not None:
        if holdout not in counts:
            raise ConfigError(f"--holdout {holdout}: `{baseline}` has no runs at {holdout} labels (it has "
                              f"{', '.join(map(str, counts))}); hold out a label count it was measured at.")
        counts = [c for c in counts if c != holdout]
    if len(counts) < 2:
        left = f" besides the held-out {holdout}" if holdout is not None else ""
        raise ConfigError(f"`{baseline}` was measured at one label count only ({', '.join(map(str, counts))}"
                          f"{left}): a curve of accuracy against labels needs at least two; run `{baseline}` at "
                          f"more label counts (e.g. 100, 150, 200, 300, 500), several seeds and label draws each.")
    others = [c for (s, lab), c in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])) if s != baseline]
    if not others and holdout is None:
        raise ConfigError(f"only `{baseline}` runs: add runs of the strategies to convert (e.g. task, in_domain at "
                          f"{counts[0]} labels), or check the fit alone with --holdout.")
    base = [cells[baseline, c] for c in counts]
    log_x = np.log(np.array(counts, dtype=np.float64))
    weights = np.array([c.runs for c in base], dtype=np.float64)

    acc = correct.mean(1)
    fitted = fit_curve(np.array([c.mean(acc) for c in base]), weights)[0]
    point = {id(c): float(invert(log_x, fitted, c.mean(acc))[0]) for c in others}

    # the bootstrap: L* per replicate, the curve refitted each time
    rng = np.random.default_rng(seed)
    draws_max = max(len(c.rows) for c in cells.values())
    models_max = max(c.models for c in cells.values())
    runs_max = max(len(r) for c in cells.values() for models in c.rows for r in models.values())
    boot = {id(c): [] for c in others}
    for counts_b in _resamples(n, n_boot, rng):
        b = len(counts_b)
        u, w, v = rng.random((b, draws_max)), rng.random((b, models_max)), rng.random((b, draws_max, runs_max))
        acc_b = (counts_b @ correct.T) / n  # B x runs: every run on the same resampled test examples
        curve = fit_curve(np.stack([c.resampled_mean(acc_b, u, w, v) for c in base], axis=1), weights)
        for c in others:
            boot[id(c)].append(invert(log_x, curve, c.resampled_mean(acc_b, u, w, v)))
    alpha = (1 - confidence) / 2
    lo_count, hi_count = counts[0], counts[-1]
    rows = []
    for c in others:
        dist = np.concatenate(boot[id(c)])
        # inverted_cdf: an order statistic, so censored (±inf) replicates need no arithmetic
        low, high = np.quantile(dist, [alpha, 1 - alpha], method="inverted_cdf")
        l_star, ci_low, ci_high = (_bound(x, lo_count, hi_count) for x in (point[id(c)], low, high))
        ratio = {"value": l_star["value"] / c.labels, "bound": l_star["bound"]}
        width = _ratio(ci_high, ci_low)
        rows.append({"strategy": c.strategy, "labels": c.labels, "runs": c.runs, "draws": len(c.rows),
                     "models": c.models,
                     "accuracy": float(c.mean(acc)), "l_star": l_star, "ci_low": ci_low, "ci_high": ci_high,
                     "ratio": ratio, "width_ratio": width,
                     "wide": width["value"] > WIDE or bool(width["bound"]),
                     "censored_replicates": float(np.mean(~np.isfinite(dist))),
                     "per_model": {str(q): _bound(float(invert(log_x, fitted, c.model_mean(acc, q))[0]),
                                                  lo_count, hi_count)
                                   for q in c.model_ids()},
                     "slope": _slope(log_x, fitted, point[id(c)]),
                     **draw_spread(correct, acc, keys, c, cells.get((baseline, c.labels)))})
    out = {"baseline": baseline, "confidence": confidence, "bootstrap_resamples": n_boot, "seed": seed,
           "test_examples": n, "fit": "isotonic regression of accuracy on log(labels), linear interpolation; "
                                      "no extrapolation",
           "curve": [{"labels": c.labels, "runs": c.runs, "draws": len(c.rows), "accuracy": float(c.mean(acc)),
                      "fitted": float(f)} for c, f in zip(base, fitted)],
           "strategies": rows}
    if holdout is not None:
        out["holdout"] = holdout_check(correct, cells[baseline, holdout], log_x, fitted, confidence)
    return out


def draw_spread(correct: np.ndarray, acc: np.ndarray, keys: list[Key], cell: Cell, base: Cell | None) -> dict:
    """What a plan over label draws needs: the strategy's difference from the baseline in each label draw both
    have at the strategy's label count (`draw_deltas`, points as fractions), and the share of test examples on
    which a run and the baseline's run of the same draw and fine-tuning seed disagree (`disagreement`). Empty
    without such a baseline cell. `acc`: each run's accuracy (correct.mean(1), computed once by the caller)."""
    if base is None:
        return {}
    mine, theirs = cell.draw_means(acc), base.draw_means(acc)
    baseline_run = {(keys[i].draw, keys[i].seed): i for i in base.indices()}
    shares = [float(np.mean(correct[i] != correct[baseline_run[keys[i].draw, keys[i].seed]]))
              for i in cell.indices() if (keys[i].draw, keys[i].seed) in baseline_run]
    return {"draw_deltas": {str(d): mine[d] - theirs[d] for d in cell.draws if d in theirs},
            "disagreement": float(np.mean(shares)) if shares else None}


def _slope(log_x: np.ndarray, fitted: np.ndarray, log_l: float) -> float:
    """Accuracy per unit of log(labels) of the fitted curve around L*: its segment there, else (censored or
    flat) the secant over all counts."""
    if np.isfinite(log_l):
        k = int(np.clip(np.searchsorted(log_x, log_l), 1, len(log_x) - 1))
        slope = (fitted[k] - fitted[k - 1]) / (log_x[k] - log_x[k - 1])
        if slope > 0:
            return float(slope)
    return float((fitted[-1] - fitted[0]) / (log_x[-1] - log_x[0]))


def holdout_check(correct: np.ndarray, cell: Cell, log_x: np.ndarray, fitted: np.ndarray,
                  confidence: float = 0.95) -> dict:
    """Does the fit, made without the baseline's runs at `cell.labels`, predict their mean? The held-out mean's
    interval is over runs (seeds x draws) and test examples (pipeline/variance.py's model, one strategy)."""
    rows = cell.indices()
    iv = variance.interval(correct[rows])
    x = math.log(cell.labels)
    inside = bool(log_x[0] <= x <= log_x[-1])
    predicted = float(np.interp(x, log_x, fitted)) if inside else None
    return {"labels": cell.labels, "runs": len(rows), "accuracy": iv["diff"], "ci_low": iv["ci_low"],
            "ci_high": iv["ci_high"], "predicted": predicted,
            "within": None if predicted is None else bool(iv["ci_low"] <= predicted <= iv["ci_high"])}


def run_labels(run: Run, labels_param: str = LABELS_PARAM) -> int:
    """The number of labelled training examples of `run` (its `labels_param`), a positive integer."""
    value = run.param(labels_param, default=None)
    if value is None:
        raise ConfigError(f"run `{run.name}` has no param `{labels_param}` in its params.yaml; --labels-param "
                          f"names the dotted params.yaml key that holds its number of labelled examples.")
    try:
        labels = int(value)
    except (TypeError, ValueError):
        labels = 0
    if labels < 1 or labels != value:
        raise ConfigError(f"run `{run.name}`: `{labels_param}` is {value!r}, not a count of labelled examples; "
                          f"--labels-param names the param that holds it.")
    return labels


def run_draw(run: Run):
    """The run's label draw (DRAW_PARAMS: the first set); a run whose params hold neither is one draw (0)."""
    for dotted in DRAW_PARAMS:
        if (value := run.param(dotted, default=None)) is not None:
            return value
    return 0


def keys_of(runs: list[Run], labels_param: str = LABELS_PARAM) -> list[Key]:
    """Each run's Key (strategy, label count, label draw, fine-tuning seed, MLM model). `none` trains no MLM
    model: its runs are one model whatever their pretrain.seed."""
    return [Key(r.strategy, run_labels(r, labels_param), run_draw(r), r.seed,
                0 if r.strategy == "none" else r.pretrain_seed) for r in runs]


def summarise_runs(runs: list[Run], baseline: str = "none", labels_param: str = LABELS_PARAM, n_boot: int = 2000,
                   seed: int = 0, confidence: float = 0.95, holdout: int | None = None) -> dict:
    """label_equivalents on finished runs, with each strategy's mean MLM minutes where the runs record them."""
    if not runs:
        raise ConfigError("no finished runs to read; run the grid first (a baseline at several label counts).")
    keys = keys_of(runs, labels_param)
    try:
        _, _, labels, preds = aligned(runs)
    except ConfigError as exc:
        raise ConfigError(f"{exc} pipeline.labels compares every run on one test set: vary the label draw with "
                          f"task.demo.train_seed (dev and test keep task.seed's draw), not task.seed.") from exc
    out = label_equivalents((preds == labels).astype(np.float64), keys, baseline, n_boot, seed, confidence, holdout)
    out["labels_param"] = labels_param
    for row in out["strategies"]:
        group = [r for r, k in zip(runs, keys) if (k.strategy, k.labels) == (row["strategy"], row["labels"])]
        seconds = [float(r.metrics["pretrain"]["seconds"]) for r in one_per_model(group)
                   if isinstance(r.metrics.get("pretrain"), dict) and "seconds" in r.metrics["pretrain"]]
        row["mlm_minutes"] = float(np.mean(seconds)) / 60 if seconds else None
        row["mlm_minutes_each"] = [s / 60 for s in seconds]  # per MLM model: a run that shared the CPU shows
        row["run_names"] = [r.name for r in group]
    return out


def warnings(summary: dict, plan=lambda n_labels: "") -> list[str]:
    """A line per strategy whose interval is wide (upper/lower above 2, or beyond the measured counts), with
    what would narrow it; `plan(labels)`: the runs flags of pipeline.power for the runs at that label count."""
    lines = []
    z = norm.ppf(1 - (1 - summary["confidence"]) / 2)
    for row in summary["strategies"]:
        if not row["wide"]:
            continue
        near = _around(summary, row)
        width = row["width_ratio"]
        what = (f"spans a factor {fmt(width, 1)} (upper/lower above {WIDE:g})" if not width["bound"] else
                f"reaches beyond the measured label counts ({fmt(row['ci_low'])} to {fmt(row['ci_high'])})")
        more = ""
        if not width["bound"]:
            more = (f"; about {math.ceil((math.log(width['value']) / math.log(WIDE)) ** 2)}x the seeds x label draws "
                    f"would bring it to {WIDE:g}")
        # the accuracy half-width that gives a factor-2 interval, as an MDE to plan for
        mde = (row["slope"] * math.log(WIDE) / 2 / z * variance.mde(1.0, summary["confidence"])
               if row["slope"] > 0 else None)
        if row["ci_low"]["bound"] == "<":
            what += (f"; its lower end is below the smallest count measured, so the factor it spans cannot be read: "
                     f"measure `{summary['baseline']}` below {summary['curve'][0]['labels']} labels too")
        plan_line = ""
        if mde and len(row.get("draw_deltas") or {}) >= 2 and row.get("disagreement"):
            plan_line = " " + draw_plan(summary, row, mde)
        elif mde:
            plan_line = (f" Plan for the MDE at which L* is known to a factor {WIDE:g}: python -m pipeline.power "
                         f"--test {summary['test_examples']} --seeds {row['runs']} --target-mde "
                         f"{max(mde, 0.001):.3f} --labels {row['labels']}{plan(row['labels'])}")
        lines.append(f"[labels] warning: {row['strategy']} at {row['labels']} labels: the "
                     f"{summary['confidence']:.0%} interval of L* {what}{more}. Narrow it with more fine-tuning "
                     f"seeds x label draws (task.demo.train_seed) of `{summary['baseline']}` at the label counts around L* "
                     f"({near}) and of {row['strategy']} at {row['labels']}{models_line(row)}.{plan_line}")
    return lines


def draw_plan(summary: dict, row: dict, mde: float) -> str:
    """The plan over label draws. The interval resamples the draws, and the seed-level plan (pipeline.power on
    the runs, which pairs replicates by fine-tuning seed and averages the draws within each) leaves the
    draw-to-draw spread of the difference out; with it the plan is too optimistic wherever the draws disagree.
    So this plan puts draws in the planner's seed role: the spread of the per-draw difference with the
    baseline (which includes each draw's seed and example noise: an upper bound) as its seed term."""
    deltas = row["draw_deltas"]
    sd = float(np.std(list(deltas.values()), ddof=1))
    per_draw = ", ".join(f"{d}: {v * 100:+.2f}" for d, v in deltas.items())
    return (f"Its difference from `{summary['baseline']}` per label draw is "
            f"{per_draw} points (std {sd * 100:.2f}, {len(deltas) - 1} df); plan for the MDE at which L* is known "
            f"to a factor {WIDE:g} over draws (the planner's seeds are label draws, each with this grid's seeds "
            f"and MLM models; an upper bound): python -m pipeline.power --test {summary['test_examples']} "
            f"--seeds {len(deltas)} --seed-std {min(sd / math.sqrt(2), 0.4999):.4f} --disagreement "
            f"{row['disagreement']:.3f} --target-mde {max(mde, 0.001):.3f}")


def models_line(row: dict) -> str:
    """Where a strategy's MLM models disagree, more of them narrow the interval too."""
    if row.get("models", 1) < 2:
        return ""
    return (f", and more MLM models (`pretrain.seed`) of {row['strategy']}: the interval resamples its "
            f"{row['models']} per draw, whose L* are {per_model(row)}")


def _around(summary: dict, row: dict) -> str:
    counts = [c["labels"] for c in summary["curve"]]
    l_star = row["l_star"]
    if l_star["bound"] == ">":
        return f"{counts[-1]} and above: measure larger counts too"
    if l_star["bound"] == "<":
        return f"{counts[0]} and below: measure smaller counts too"
    k = int(np.searchsorted(counts, l_star["value"]))
    return ", ".join(str(c) for c in counts[max(0, k - 1):k + 1])


def markdown(summary: dict) -> str:
    conf = f"{summary['confidence']:.0%}"
    lines = [f"L*: the labels `{summary['baseline']}` needs to match each strategy ({summary['fit']}; "
             f"{conf} hierarchical bootstrap over label draws, MLM models, fine-tuning seeds and "
             f"{summary['test_examples']:,} test examples, {summary['bootstrap_resamples']:,} resamples)", "",
             f"| strategy | labels | runs | accuracy % | L* | {conf} interval | L*/labels | upper/lower "
             f"| L* per MLM model | MLM minutes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in summary["strategies"]:
        lines.append(f"| {row['strategy']} | {row['labels']:,} | {row['runs']} | {row['accuracy'] * 100:.2f} | "
                     f"{fmt(row['l_star'])} | [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}] | "
                     f"{fmt(row['ratio'], 2)} | {fmt(row['width_ratio'], 2)} | {per_model(row)} | "
                     f"{mlm_minutes(row)} |")
    lines += ["", f"`{summary['baseline']}` against labels:", "",
              "| labels | runs | label draws | accuracy % | fitted % |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {c['labels']:,} | {c['runs']} | {c['draws']} | {c['accuracy'] * 100:.2f} | {c['fitted'] * 100:.2f} |"
              for c in summary["curve"]]
    if "holdout" in summary:
        lines += ["", holdout_line(summary)]
    return "\n".join(lines) + "\n"


def mlm_minutes(row: dict) -> str:
    """The mean MLM minutes of a strategy's pretrained models, and each one's where they are several (a run that
    shared the CPU with other work stands out), else a dash."""
    if row.get("mlm_minutes") is None:
        return "–"
    each = row.get("mlm_minutes_each") or []
    return f"{row['mlm_minutes']:.1f}" + (f" ({', '.join(f'{m:.1f}' for m in each)})" if len(each) > 1 else "")


def per_model(row: dict) -> str:
    """`pretrain.seed: L*` for each MLM model of a strategy with several, else a dash."""
    models = row.get("per_model") or {}
    return "; ".join(f"{q}: {fmt(v)}" for q, v in models.items()) if len(models) > 1 else "–"


def holdout_line(summary: dict) -> str:
    h = summary["holdout"]
    head = (f"Held out: `{summary['baseline']}` at {h['labels']:,} labels ({h['runs']} runs), "
            f"{h['accuracy'] * 100:.2f} [{h['ci_low'] * 100:.2f}, {h['ci_high'] * 100:.2f}] "
            f"({summary['confidence']:.0%}, seeds x test examples)")
    if h["predicted"] is None:
        return f"{head}: outside the fitted label counts, no prediction (the fit does not extrapolate)."
    verdict = "within" if h["within"] else "OUTSIDE"
    return f"{head}; the fit without it predicts {h['predicted'] * 100:.2f}: {verdict} the interval."


def plot(summary: dict, path: Path) -> None:
    """The baseline's curve (its fitted points joined in log labels, the measured means), each strategy's
    accuracy at its label count and its L* on the curve with the interval."""
    from pipeline.report import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    curve = summary["curve"]
    xs = [c["labels"] for c in curve]
    ax.plot(xs, [c["fitted"] * 100 for c in curve], "-", color="C0", label=f"{summary['baseline']} (isotonic fit)")
    ax.scatter(xs, [c["accuracy"] * 100 for c in curve], color="C0", zorder=3, label=f"{summary['baseline']} (mean)")
    if "holdout" in summary:
        h = summary["holdout"]
        ax.errorbar([h["labels"]], [h["accuracy"] * 100], yerr=[[(h["accuracy"] - h["ci_low"]) * 100],
                    [(h["ci_high"] - h["accuracy"]) * 100]], fmt="D", color="grey", capsize=4, label="held out")
    for i, row in enumerate(summary["strategies"], start=1):
        y, color = row["accuracy"] * 100, f"C{i % 10}"
        ax.scatter([row["labels"]], [y], marker="s", color=color, zorder=4,
                   label=f"{row['strategy']} @ {row['labels']}: L* {fmt(row['l_star'])}")
        lo, hi, star = row["ci_low"]["value"], row["ci_high"]["value"], row["l_star"]["value"]
        ax.plot([row["labels"], star], [y, y], ":", color=color)
        ax.errorbar([star], [y], xerr=[[max(star - lo, 0)], [max(hi - star, 0)]], fmt="*", ms=12, color=color,
                    capsize=4, zorder=5)
        for end, at, dx in ((row["l_star"], star, 6), (row["ci_low"], lo, -30), (row["ci_high"], hi, 6)):
            if end["bound"]:  # censored: the bar stops at the measured counts, the label says it goes on
                ax.annotate(fmt(end), (at, y), textcoords="offset points", xytext=(dx, 6), color=color)
    ax.set_xscale("log")
    ticks = sorted(set(xs) | ({summary["holdout"]["labels"]} if "holdout" in summary else set()))
    ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("labelled training examples (log scale)")
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"label-equivalent L* ({summary['confidence']:.0%} bootstrap interval)")
    ax.legend(fontsize=8)
    _save(fig, path)


def write(summary: dict, out: str | Path) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "labels.md", "json": out / "labels.json", "png": out / "labels.png"}
    atomic_write_text(paths["markdown"], markdown(summary))
    write_json(paths["json"], summary)
    plot(summary, paths["png"])
    return paths


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"`{text}` is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.labels", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--runs", nargs="+",
                        help="run folders or run records (pipeline.records) instead of DVC experiments")
    source.add_argument("--exps", nargs="+", help="only these DVC experiments (default: all finished ones)")
    parser.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    parser.add_argument("--baseline", default="none", help="the strategy measured at several label counts")
    parser.add_argument("--labels-param", default=LABELS_PARAM,
                        help=f"dotted param holding a run's number of labelled examples (default {LABELS_PARAM})")
    parser.add_argument("--bootstrap", type=_positive(int), default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--holdout", type=_positive(int), metavar="N",
                        help="leave the baseline's runs at N labels out of the fit and check its prediction there")
    parser.add_argument("--out", default="reports", help="folder for labels.md/.json/.png")
    args = parser.parse_args(argv)
    if not 0 < args.confidence < 1:
        parser.error("argument --confidence: give a fraction of 1, e.g. 0.95")
    try:
        runs = [load_run_dir(p) for p in args.runs] if args.runs else dvc_experiments(args.repo, args.exps)
        summary = summarise_runs(runs, args.baseline, args.labels_param, args.bootstrap, args.seed, args.confidence,
                                 args.holdout)
    except ConfigError as exc:
        print(f"[labels] error: {exc}", file=sys.stderr)
        return 2
    paths_of = dict(zip((r.name for r in runs), args.runs or []))

    def plan(n_labels: int) -> str:
        """pipeline.power's flags for the runs at `n_labels` labels: it measures the variance on them."""
        at = [r.name for r in runs if run_labels(r, args.labels_param) == n_labels]
        flags = ["--from-runs", *shell_paths([paths_of[name] for name in at])] if args.runs else ["--from-exps", *at]
        flags += ["--repo", args.repo] * (args.repo != "." and not args.runs)
        flags += ["--baseline", args.baseline] * (args.baseline != "none")
        flags += ["--labels-param", args.labels_param] * (args.labels_param != LABELS_PARAM)
        return " ".join(["", *flags])

    summary["warnings"] = warnings(summary, plan)
    paths = write(summary, args.out)
    print(markdown(summary))
    for line in summary["warnings"]:
        print(line)
    print(f"[labels] wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
