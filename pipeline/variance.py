"""The seeds x test examples variance model of a difference in accuracy between two strategies, and the
planning formulas built on it: SE, interval, p-value, power and MDE over test examples AND fine-tuning
seeds. pipeline.stats (what `compare` shows) and pipeline.power (the planner's command) both use it; it
imports neither.

d[s, i] = correct_A[s, i] - correct_B[s, i] (paired seed s, test example i) follows a two-way crossed
random-effects model, Var(Δ̂) = σ²_example/n + σ²_seed/S + σ²_resid/(n·S), estimated without bias from
the ANOVA mean squares: SE² = (MS_example + MS_seed − MS_resid)/(n·S). A bootstrap over test examples
sees the first and last terms only, and the seed term does not shrink with the test set. MS_seed has
S − 1 df, so with few seeds the SE is itself uncertain: intervals, p-values and power use Student's t
at the Satterthwaite df of that sum (a normal interval rejected a true null in 15 to 17% of simulated
3-seed grids, 11% at 5 seeds, instead of 5%). df=None gives the normal formulas, the many-seeds limit.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct, norm, t

# Defaults when no runs are given, both measured on IMDB with all-MiniLM-L6-v2 at 128 tokens (docs/results.md):
DEFAULT_DISAGREEMENT = 0.09  # share of test examples on which two runs differ in correctness: 0.087 between
#   `none` and `in_domain` on 5,000 test reviews (spike-in grid, K = 0)
DEFAULT_SEED_STD = 0.008  # std of one strategy's test accuracy over fine-tuning seeds: 0.6 to 1.0 points on
#   1,000 test reviews (the warm-up grid); 0.8 points
POWER = 0.8
SE2_FLOOR = 1e-12  # a grid whose runs all agree has no measured variance: a tiny positive SE, not 0
N_MAX, SEEDS_MAX = 10_000_000, 1000  # the planning searches stop here


def satterthwaite(ms_example: float, ms_seed: float, ms_resid: float, seeds: int, n: int) -> float:
    """Degrees of freedom of MS_example + MS_seed − MS_resid (Satterthwaite 1946), at least 1."""
    total = ms_example + ms_seed - ms_resid
    parts = ms_example ** 2 / (n - 1) + ms_seed ** 2 / (seeds - 1) + ms_resid ** 2 / ((seeds - 1) * (n - 1))
    return max(1.0, total ** 2 / parts) if total > 0 and parts > 0 else float(n - 1)


def paired_components(d: np.ndarray) -> dict:
    """Variance components of the S x n matrix `d` (seeds x test examples), the SE of its mean and the df.

    With one seed (S = 1) the seed spread is not measured: SE² = var_i(d_i)/n, `seed_term` False,
    and σ²_example holds the whole per-example variance (the residual cannot be told apart)."""
    d = np.atleast_2d(np.asarray(d, dtype=np.float64))
    seeds, n = d.shape
    if n < 2:
        raise ValueError("the variance over test examples needs at least 2 test examples")
    diff, rows, cols = float(d.mean()), d.mean(1), d.mean(0)
    ms_example = seeds * float(cols.var(ddof=1))
    if seeds == 1:
        var = {"var_example": ms_example, "var_seed": 0.0, "var_resid": 0.0}
        se2, df, seed_std = ms_example / n, float(n - 1), None
    else:
        ms_seed = n * float(rows.var(ddof=1))
        ms_resid = float(((d - rows[:, None] - cols[None, :] + diff) ** 2).sum()) / ((seeds - 1) * (n - 1))
        total = ms_example + ms_seed - ms_resid
        se2 = (total if total > 0 else ms_example) / (n * seeds)
        df = satterthwaite(ms_example, ms_seed, ms_resid, seeds, n)
        var = {"var_example": max(0.0, (ms_example - ms_resid) / seeds),
               "var_seed": max(0.0, (ms_seed - ms_resid) / n), "var_resid": max(0.0, ms_resid)}
        seed_std = float(rows.std(ddof=1))
    return {"n": n, "seeds": seeds, "diff": diff, **var, "se": math.sqrt(max(se2, SE2_FLOOR)), "df": df,
            "se_test": math.sqrt(max(ms_example / (n * seeds), SE2_FLOOR)), "seed_term": seeds > 1,
            "disagreement": float(np.mean(d != 0)), "seed_std": seed_std}


def _quantile(q: float, df: float | None) -> float:
    return float(norm.ppf(q) if df is None else t.ppf(q, df))


def power_at(effect: float, se: float, confidence: float = 0.95, df: float | None = None) -> float:
    """Probability that the two-sided test at `confidence` rejects "no difference" when the truth is `effect`:
    Φ(|effect|/se − z) + Φ(−|effect|/se − z), or the noncentral t at `df` degrees of freedom."""
    crit, c = _quantile(1 - (1 - confidence) / 2, df), abs(effect) / se if se > 0 else math.inf
    if df is None or math.isinf(c):
        return float(norm.cdf(c - crit) + norm.cdf(-c - crit))
    return float(nct.sf(crit, df, c) + np.nan_to_num(nct.cdf(-crit, df, c)))  # the lower tail is NaN when ~0


def mde(se: float, confidence: float = 0.95, power: float = POWER, df: float | None = None) -> float:
    """Minimum detectable effect: the true difference the two-sided test at `confidence` detects with `power`;
    (z_{1-α/2} + z_power)·se, or at `df` degrees of freedom the root of power_at."""
    if df is None:
        return (_quantile(1 - (1 - confidence) / 2, None) + _quantile(power, None)) * se
    if power <= 1 - confidence:
        return 0.0
    crit = _quantile(1 - (1 - confidence) / 2, df)
    guess = crit + _quantile(power, df)  # the shifted-t approximation brackets the root
    return se * brentq(lambda c: power_at(c, 1.0, confidence, df) - power, 0.0, 2 * max(guess, 1.0), xtol=1e-9)


def interval(d: np.ndarray, confidence: float = 0.95) -> dict:
    """Interval diff ± t·SE of the mean of `d` (seeds x examples), its p-value and MDE, at the Satterthwaite df."""
    comp = paired_components(d)
    crit, se, df = _quantile(1 - (1 - confidence) / 2, comp["df"]), comp["se"], comp["df"]
    return {"diff": comp["diff"], "ci_low": comp["diff"] - crit * se, "ci_high": comp["diff"] + crit * se,
            "p_value": float(min(1.0, 2 * t.sf(abs(comp["diff"]) / se, df))), "mde": mde(se, confidence, POWER, df),
            **{k: comp[k] for k in ("se", "df", "se_test", "seed_term", "seeds", "n")},
            "components": {k: comp[k] for k in ("var_example", "var_seed", "var_resid", "disagreement", "seed_std")}}


def paired_diff(correct_a: np.ndarray, seeds_a: list, correct_b: np.ndarray, seeds_b: list) -> tuple:
    """The S x n matrix d from two strategies' (runs x examples) correctness. Seeds both have are paired
    (runs of one side that share a seed are averaged): "seed". Without a common seed, runs are paired in
    seed order up to the smaller count: "order"."""
    a, b, seeds_a, seeds_b = np.asarray(correct_a, float), np.asarray(correct_b, float), list(seeds_a), list(seeds_b)
    if common := sorted(set(seeds_a) & set(seeds_b)):
        return np.stack([a[[x == s for x in seeds_a]].mean(0) - b[[x == s for x in seeds_b]].mean(0)
                         for s in common]), "seed"
    k = min(len(seeds_a), len(seeds_b))
    return a[np.argsort(seeds_a, kind="stable")[:k]] - b[np.argsort(seeds_b, kind="stable")[:k]], "order"


def planned_se(n: int, seeds: int, components: dict) -> float:
    return math.sqrt(components["var_example"] / n + components["var_seed"] / seeds
                     + components["var_resid"] / (n * seeds))


def planned_df(n: int, seeds: int, components: dict) -> float:
    """Satterthwaite df of a grid of `seeds` x `n`, from the expected mean squares of `components`."""
    if seeds == 1:
        return float(n - 1)
    resid = components["var_resid"]
    return satterthwaite(resid + seeds * components["var_example"], resid + n * components["var_seed"], resid,
                         seeds, n)


def planned_mde(n: int, seeds: int, components: dict, confidence: float = 0.95, power: float = POWER) -> float:
    return mde(planned_se(n, seeds, components), confidence, power, planned_df(n, seeds, components))


def components_from_rates(disagreement: float = DEFAULT_DISAGREEMENT, seed_std: float = DEFAULT_SEED_STD) -> dict:
    """Components from two stated rates, for a grid not yet run: σ²_example = q, σ²_seed = 2σ², σ²_resid = 0.

    An upper bound on the SE. d_i is -1, 0 or 1, so the per-cell variance σ²_example + σ²_resid is at
    most E[d²] = q; putting all of it in the example term counts churn between seeds as systematic
    (divided by n, not n·S). σ² measured on a finite test set includes that churn too, so the seed term
    counts it again, as a global shift. Paired runs of two strategies have independent seed shifts: 2σ²."""
    return {"var_example": disagreement, "var_seed": 2 * seed_std ** 2, "var_resid": 0.0}


def _smallest(reaches, low: int, high: int) -> int | None:
    """The smallest integer in [low, high] where `reaches` holds: a geometric scan, then bisection of the first
    step that reaches it. A scan, because at few seeds the MDE can rise again with the test size: the seed
    term's share grows, and with it the weight of its S − 1 degrees of freedom."""
    below = low - 1
    for x in np.unique(np.geomspace(low, high, 80).astype(int)):
        if reaches(int(x)):
            hi = int(x)
            while hi - below > 1:
                mid = (hi + below) // 2
                hi, below = (mid, below) if reaches(mid) else (hi, mid)
            return hi
        below = int(x)
    return None


def needed_test_size(target_mde: float, seeds: int, components: dict, confidence: float = 0.95,
                     power: float = POWER) -> int | None:
    """Test examples for an MDE of `target_mde` at `seeds` seeds; None when no test size up to N_MAX reaches it
    (the seed term alone is too large at that seed count)."""
    return _smallest(lambda n: planned_mde(n, seeds, components, confidence, power) <= target_mde, 2, N_MAX)


def needed_seeds(target_mde: float, n: int, components: dict, confidence: float = 0.95,
                 power: float = POWER) -> int | None:
    """Seeds per strategy for an MDE of `target_mde` on `n` test examples; None when no seed count up to
    SEEDS_MAX reaches it (the example term alone is too large at that test size). At least 2: one seed
    cannot measure the seed spread (compare then shows test sampling only)."""
    return _smallest(lambda s: planned_mde(n, s, components, confidence, power) <= target_mde, 2, SEEDS_MAX)
