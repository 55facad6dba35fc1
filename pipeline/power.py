"""How large a difference in accuracy can a grid of runs detect? The planner's command: SE, MDE and the
test size or seed count a target MDE needs, from stated rates or measured on finished runs.

    python -m pipeline.power --test 5000 --seeds 3 [--target-mde 0.01]   # stated variance
    python -m pipeline.power --test 5000 --seeds 5 --from-runs runs/*     # measured on a grid
    python -m pipeline.power --test 5000 --seeds 5 --labels 100 --from-exps   # ... on its runs at 100 labels

The seed spread depends on the setting: `none`'s was 0.8 points at 1,000 labels and 3.15 at 100. So with
runs, the plan uses those at the asked label count (`--labels N`: the runs whose `--labels-param` is N) and
refuses runs that mix label counts; without runs it says which defaults it fell back to and where they
were measured.

The variance model and its formulas are pipeline.variance; runs are paired as `compare` pairs them
(pipeline.stats.summarise), so this module imports both and neither imports it.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from pipeline.config import ConfigError
from pipeline.runs import Run, dvc_experiments, load_run_dir
from pipeline.stats import summarise
from pipeline.variance import (DEFAULT_DISAGREEMENT, DEFAULT_SEED_STD, N_MAX, POWER, SEEDS_MAX,
                               components_from_rates, mde, needed_seeds, needed_test_size, planned_df, planned_mde,
                               planned_se)


LABELS_PARAM = "task.demo.train"  # the dotted param that holds a run's number of labelled training examples
# Where pipeline/variance.py's defaults were measured (IMDB, all-MiniLM-L6-v2, 128 tokens; docs/results.md)
DEFAULTS_AT = {"seed std": "at 1,000 labels on 1,000 test reviews (the MiniLM warm-up grid)",
               "disagreement": "at 1,000 labels on 5,000 test reviews (the spike-in grid)"}
DEFAULTS_LABELS = 1000
NONE_SEED_STD_AT_100 = 0.0315  # `none` at 100 labels, 5 seeds on 5,000 test reviews: the spread grows with few labels


def labels_of(run: Run, labels_param: str = LABELS_PARAM):
    """The run's label count (its `labels_param`), or None when its params do not hold it."""
    node = run.params
    for part in labels_param.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def runs_at_labels(runs: list, labels: int | None, labels_param: str = LABELS_PARAM) -> tuple[list, object]:
    """The runs measured at `labels` labelled examples, and that count. With `labels` None, every run, as long
    as they do not mix label counts (the seed spread depends on it); the count is then theirs (None if unknown)."""
    found = {}
    for run in runs:
        found.setdefault(labels_of(run, labels_param), []).append(run)
    known = sorted((k for k in found if k is not None), key=str)
    if labels is None:
        if len(known) > 1:
            raise ConfigError(f"the runs were fine-tuned on different label counts ({labels_param}: "
                              f"{', '.join(map(str, known))}), and the seed spread depends on it; plan for one with "
                              f"--labels N (e.g. --labels {known[0]}).")
        return runs, known[0] if known and None not in found else None
    if None in found:
        raise ConfigError(f"run `{found[None][0].name}` has no param `{labels_param}`, so its label count is "
                          f"unknown; --labels-param names the dotted params.yaml key that holds it.")
    at = [r for r in runs if labels_of(r, labels_param) == labels]
    if not at:
        raise ConfigError(f"no run at {labels} labels ({labels_param}) among the runs (they have "
                          f"{', '.join(map(str, known))}); give runs measured at {labels} labels "
                          f"(--from-exps NAME ... or --from-runs DIR ...), or plan for a count they have.")
    return at, labels


def fallback_line(defaulted: list[str], labels: int | None, test: int, runs_given: bool) -> str:
    """The plain statement that the plan uses rates measured elsewhere, where, and which runs would replace them."""
    values = {"seed std": f"seed std {DEFAULT_SEED_STD * 100:.2f} points",
              "disagreement": f"disagreement {DEFAULT_DISAGREEMENT:g}"}
    what = "; ".join(f"{values[k]} {DEFAULTS_AT[k]}" for k in defaulted)
    asked = f"{labels:,} labels" if labels is not None else "label count not given (--labels)"
    why = "the runs measured one seed, so" if runs_given else "no runs given, so"
    caution = (f" The seed spread grows with few labels (`none`: {NONE_SEED_STD_AT_100 * 100:.2f} points at 100 "
               f"labels against {DEFAULT_SEED_STD * 100:.2f} at {DEFAULTS_LABELS:,})." if "seed std" in defaulted
               else "")
    runs = "runs with several seeds" if runs_given else "runs"
    return (f"fallback: {why} this plan uses defaults measured elsewhere, not at the setting asked for ({asked}, "
            f"{test:,} test examples): {what}.{caution} To plan from rates measured at your setting, give {runs} "
            f"at it: --from-exps NAME ... (or --from-runs DIR ...) --labels {labels if labels is not None else 'N'}.")


def pooled_from_runs(runs: list, baseline: str, confidence: float = 0.95) -> tuple[dict, dict]:
    """Components averaged over every strategy's comparison with `baseline`, paired as `compare` pairs them
    (its own code: summarise), and those comparisons. `var_seed` averages the comparisons that measured
    it; None when none did (one seed)."""
    if not any(r.strategy == baseline for r in runs):
        raise ConfigError(f"no run of the baseline `{baseline}` among them: add its runs or name another strategy "
                          f"with --baseline.")
    summary = summarise(runs, baseline, n_boot=2, confidence=confidence)  # its bootstrap is not used here (2: no
    #   warning from a one-resample std)
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
    source.add_argument("--from-runs", nargs="+", metavar="DIR",
                        help="measure the variance on these run folders or run records")
    source.add_argument("--from-exps", nargs="*", metavar="NAME", help="... on these DVC experiments (none: all)")
    p.add_argument("--repo", default=".", help="the DVC repository of --from-exps")
    p.add_argument("--baseline", default="none", help="the strategy the others are compared with")
    p.add_argument("--labels", type=_number(int, 1, math.inf, "give the labelled examples, e.g. --labels 100"),
                   help="the label count to plan for: with runs, only those at it are used")
    p.add_argument("--labels-param", default=LABELS_PARAM,
                   help=f"dotted param holding a run's label count (default {LABELS_PARAM})")
    fraction = _number(float, 1e-9, 1.0, "give a fraction of 1, e.g. 0.01 for 1 point, 0.95 for 95%")
    p.add_argument("--target-mde", type=fraction, help="the MDE to plan for (0.01: 1 accuracy point)")
    p.add_argument("--confidence", type=fraction, default=0.95)
    p.add_argument("--power", type=fraction, default=POWER)
    return p


def _components(args, parser) -> tuple[dict, str, str | None]:
    """The components to plan with, where they came from, and the fallback line when some are defaults
    measured at another setting (None when every rate was measured on the runs or stated)."""
    seed_std = DEFAULT_SEED_STD if args.seed_std is None else args.seed_std
    if args.from_runs is None and args.from_exps is None:
        q = DEFAULT_DISAGREEMENT if args.disagreement is None else args.disagreement
        where = "stated" if {args.disagreement, args.seed_std} != {None} else "the defaults"
        defaulted = [k for k, v in (("seed std", args.seed_std), ("disagreement", args.disagreement)) if v is None]
        fallback = fallback_line(defaulted, args.labels, args.test, False) if defaulted else None
        return components_from_rates(q, seed_std), (f"from rates ({where}: disagreement {q:g}, seed std "
                                                    f"{seed_std * 100:.2f} points; an upper bound)"), fallback
    if args.disagreement is not None:
        parser.error("argument --disagreement: the runs measure it; drop --disagreement or --from-runs/--from-exps")
    runs = [load_run_dir(p) for p in args.from_runs] if args.from_runs else dvc_experiments(args.repo, args.from_exps)
    runs, labels = runs_at_labels(runs, args.labels, args.labels_param)
    pooled, found = pooled_from_runs(runs, args.baseline, args.confidence)
    first = next(iter(found.values()))
    at = f"{labels:,} labels, " if isinstance(labels, int) else ""
    where = (f"measured on {len(found)} comparison(s) with `{args.baseline}` ({', '.join(found)}; {at}up to "
             f"{max(p['seeds'] for p in found.values())} paired seeds, {first['n']} test examples)")
    if pooled["var_seed"] is not None:
        if args.seed_std is not None:
            parser.error("argument --seed-std: the runs measure the seed spread (several seeds); drop --seed-std")
        return pooled, where, None
    fallback = None if args.seed_std is not None else \
        fallback_line(["seed std"], labels if isinstance(labels, int) else None, args.test, True)
    where = f"{where}; one seed, so σ²_seed = 2 x (seed std {seed_std * 100:.2f} points)² as stated or by default"
    return {**pooled, "var_seed": 2 * seed_std ** 2}, where, fallback


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
    parser = _cli()
    args = parser.parse_args(argv)
    try:
        comps, where, fallback = _components(args, parser)
    except ConfigError as exc:
        print(f"[power] error: {exc}", file=sys.stderr)
        return 2
    se, df = planned_se(args.test, args.seeds, comps), planned_df(args.test, args.seeds, comps)
    lines = [f"variance components {where}:",
             f"  σ²_example {comps['var_example']:.4g}, σ²_seed {comps['var_seed']:.4g}, "
             f"σ²_resid {comps['var_resid']:.4g}",
             *([fallback] if fallback else []),
             f"{args.test:,} test examples x {args.seeds} seeds per strategy: SE {se * 100:.2f} points ({df:.1f} df), "
             f"MDE {mde(se, args.confidence, args.power, df) * 100:.2f} points ({args.confidence:.0%} two-sided, "
             f"{args.power:.0%} power)"]
    if args.target_mde:
        lines += _plan_lines(args, comps)
    print("\n".join(f"[power] {line}" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
