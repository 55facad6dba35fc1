"""How large a difference in accuracy can a grid of runs detect? SE, interval and power of the
difference between two strategies over test examples AND fine-tuning seeds.

    python -m pipeline.power --test 5000 --seeds 3 [--target-mde 0.01]   # stated variance
    python -m pipeline.power --test 5000 --seeds 5 --from-runs runs/*     # measured on a grid

d[s, i] = correct_A[s, i] - correct_B[s, i] (paired seed s, test example i) follows a two-way crossed
random-effects model, Var(Δ̂) = σ²_example/n + σ²_seed/S + σ²_resid/(n·S), estimated without bias from
the ANOVA mean squares: SE² = (MS_example + MS_seed − MS_resid)/(n·S). A bootstrap over test examples
sees the first and last terms only, and the seed term does not shrink with the test set. MS_seed has
S − 1 df, so with few seeds the SE is itself uncertain: intervals, p-values and power use Student's t
at the Satterthwaite df of that sum (a normal interval rejected a true null in 15 to 17% of simulated
3-seed grids, 11% at 5 seeds, instead of 5%). df=None gives the normal formulas, the many-seeds limit.
"""

from __future__ import annotations

import argparse
import math
import sys

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


def pooled_from_runs(runs: list, baseline: str, confidence: float = 0.95) -> tuple[dict, dict]:
    """Components averaged over every strategy's comparison with `baseline`, paired as `compare` pairs them
    (its own code: summarise), and those comparisons. `var_seed` averages the comparisons that measured
    it; None when none did (one seed)."""
    from pipeline.stats import summarise
    from pipeline.config import ConfigError

    if not any(r.strategy == baseline for r in runs):
        raise ConfigError(f"no run of the baseline `{baseline}` among them: add its runs or name another strategy "
                          f"with --baseline.")
    summary = summarise(runs, baseline, n_boot=1, confidence=confidence)
    found = {s: e["vs_baseline"]["power"] for s, e in summary["strategies"].items() if "vs_baseline" in e}
    if not found:
        raise ConfigError(f"only `{baseline}` runs: the variance of a difference needs runs of another strategy.")
    pooled = {k: float(np.mean([p["components"][k] for p in found.values()])) for k in ("var_example", "var_resid")}
    seeded = [p["components"]["var_seed"] for p in found.values() if p["seed_term"]]
    return {**pooled, "var_seed": float(np.mean(seeded)) if seeded else None}, found


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # bad input: one line naming the flag and the fix, exit status 2
        print(f"[power] error: {message}", file=sys.stderr)
        sys.exit(2)


def _number(kind, low, high, hint):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"`{text}` is not a number; {hint}") from None
        if not low <= value < high:
            raise argparse.ArgumentTypeError(f"{text} is out of range; {hint}")
        return value
    return parse


def _cli() -> _Parser:
    p = _Parser(prog="python -m pipeline.power", description=__doc__.split("\n\n")[0])
    p.add_argument("--test", required=True, type=_number(int, 2, math.inf, "give the test examples, e.g. --test 5000"))
    p.add_argument("--seeds", required=True, type=_number(int, 1, math.inf, "give seeds per strategy, e.g. --seeds 3"))
    p.add_argument("--disagreement", type=_number(float, 1e-9, 1.0, "give a share, e.g. --disagreement 0.12"),
                   help=f"share of test examples two runs differ on (default {DEFAULT_DISAGREEMENT})")
    p.add_argument("--seed-std", type=_number(float, 0.0, 0.5, "give a fraction: --seed-std 0.008 for 0.8 points"),
                   help=f"std of one strategy's test accuracy over seeds (default {DEFAULT_SEED_STD})")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from-runs", nargs="+", metavar="DIR", help="measure the variance on these run folders")
    source.add_argument("--from-exps", nargs="*", metavar="NAME", help="... on these DVC experiments (none: all)")
    p.add_argument("--repo", default=".", help="the DVC repository of --from-exps")
    p.add_argument("--baseline", default="none", help="the strategy the others are compared with")
    fraction = _number(float, 1e-9, 1.0, "give a fraction of 1, e.g. 0.01 for 1 point, 0.95 for 95%")
    p.add_argument("--target-mde", type=fraction, help="the MDE to plan for (0.01: 1 accuracy point)")
    p.add_argument("--confidence", type=fraction, default=0.95)
    p.add_argument("--power", type=fraction, default=POWER)
    return p


def _components(args, parser) -> tuple[dict, str]:
    """The components to plan with and where they came from."""
    seed_std = DEFAULT_SEED_STD if args.seed_std is None else args.seed_std
    if args.from_runs is None and args.from_exps is None:
        q = DEFAULT_DISAGREEMENT if args.disagreement is None else args.disagreement
        where = "stated" if {args.disagreement, args.seed_std} != {None} else "the defaults"
        return components_from_rates(q, seed_std), (f"from rates ({where}: disagreement {q:g}, seed std "
                                                    f"{seed_std * 100:.2f} points; an upper bound)")
    if args.disagreement is not None:
        parser.error("argument --disagreement: the runs measure it; drop --disagreement or --from-runs/--from-exps")
    from pipeline.runs import dvc_experiments, load_run_dir

    runs = [load_run_dir(p) for p in args.from_runs] if args.from_runs else dvc_experiments(args.repo, args.from_exps)
    pooled, found = pooled_from_runs(runs, args.baseline, args.confidence)
    first = next(iter(found.values()))
    where = (f"measured on {len(found)} comparison(s) with `{args.baseline}` ({', '.join(found)}; up to "
             f"{max(p['seeds'] for p in found.values())} paired seeds, {first['n']} test examples)")
    if pooled["var_seed"] is not None:
        if args.seed_std is not None:
            parser.error("argument --seed-std: the runs measure the seed spread (several seeds); drop --seed-std")
        return pooled, where
    return {**pooled, "var_seed": 2 * seed_std ** 2}, (f"{where}; one seed, so σ²_seed = 2 x (seed std "
                                                       f"{seed_std * 100:.2f} points)² as stated or by default")


def _plan_lines(args, comps: dict) -> list[str]:
    target, conf, pw = args.target_mde, args.confidence, args.power
    lines = [f"target MDE {target * 100:.2f} points:"]
    n = needed_test_size(target, args.seeds, comps, conf, pw)
    if n is None:
        best = min((planned_mde(int(x), args.seeds, comps, conf, pw), int(x)) for x in np.geomspace(100, N_MAX, 40))
        lines.append(f"  at {args.seeds} seeds: no test size reaches it (best {best[0] * 100:.2f} points, near "
                     f"{best[1]:,} test examples): the seed term is too large at {args.seeds} seeds; add seeds")
    else:
        lines.append(f"  at {args.seeds} seeds: {n:,} test examples")
    seeds = needed_seeds(target, args.test, comps, conf, pw)
    if seeds is None:
        floor = mde(math.sqrt(comps["var_example"] / args.test), conf, pw, args.test - 1)
        lines.append(f"  on {args.test:,} test examples: no seed count reaches it: the example term alone gives "
                     f"{floor * 100:.2f} points; add test examples")
    else:
        lines.append(f"  on {args.test:,} test examples: {seeds} seeds per strategy")
    if n is None or seeds is None:  # both free: about half the variance budget for the seed term
        s = max(2, math.ceil(2 * comps["var_seed"] / (target / mde(1.0, conf, pw)) ** 2))
        while (n := needed_test_size(target, s, comps, conf, pw)) is None and s < SEEDS_MAX:
            s *= 2
        lines.append(f"  e.g. {s} seeds per strategy and {n:,} test examples" if n else "  beyond this planner")
    return lines


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import ConfigError

    parser = _cli()
    args = parser.parse_args(argv)
    try:
        comps, where = _components(args, parser)
    except ConfigError as exc:
        print(f"[power] error: {exc}", file=sys.stderr)
        return 2
    se, df = planned_se(args.test, args.seeds, comps), planned_df(args.test, args.seeds, comps)
    lines = [f"variance components {where}:",
             f"  σ²_example {comps['var_example']:.4g}, σ²_seed {comps['var_seed']:.4g}, "
             f"σ²_resid {comps['var_resid']:.4g}",
             f"{args.test:,} test examples x {args.seeds} seeds per strategy: SE {se * 100:.2f} points ({df:.1f} df), "
             f"MDE {mde(se, args.confidence, args.power, df) * 100:.2f} points ({args.confidence:.0%} two-sided, "
             f"{args.power:.0%} power)"]
    if args.target_mde:
        lines += _plan_lines(args, comps)
    print("\n".join(f"[power] {line}" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
