"""Compare strategies over a grid of finished runs: mean +- std per strategy, the difference from
the baseline with a confidence interval and the smallest difference the grid can detect, a markdown
table, a CSV for DVC plots and a PNG.

    python -m pipeline.compare                      # every DVC experiment of this repo
    python -m pipeline.compare --exps task-seed1 …  # some of them
    python -m pipeline.compare --runs runs/*        # run folders (params.yaml, metrics/, outputs/)

Δ accuracy: the mean paired difference over the seeds both strategies have, with a t interval whose
SE covers test-set sampling AND the fine-tuning seed spread (pipeline/variance.py: a seeds x test
examples random-effects model), and the minimum detectable effect (MDE) of the grid. With one paired
seed it is a paired bootstrap over test examples (Efron & Tibshirani; Koehn 2004), as is Δ macro-F1:
every resample draws the same test examples for both strategies (scipy.stats.bootstrap, paired).

The work is in three modules: pipeline/runs.py reads the runs, pipeline/stats.py computes the figures
(with pipeline/variance.py), pipeline/report.py writes the table, CSV, JSON and plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from pipeline.config import ConfigError
from pipeline.report import markdown, power_warnings, write_report
from pipeline.runs import dvc_experiments, load_run_dir, shell_paths
from pipeline.stats import summarise, summarise_by


def arms(runs: list, arm: str, baseline: str) -> list:
    """The runs with `strategy` set to their value of the param `arm` (a bool as `true` / `false`), so that the
    statistics compare any param's values as they compare strategies: the runs sharing a fine-tuning seed are
    paired as ever."""
    def value(run):
        v = run.param(arm)
        return str(v).lower() if isinstance(v, bool) else str(v)

    runs = [dataclasses.replace(r, strategy=value(r)) for r in runs]
    values = sorted({r.strategy for r in runs})
    if baseline not in values:
        raise ConfigError(f"--arm {arm}: no run has `{arm}` = `{baseline}` (the --baseline); the runs have "
                          f"{values}: name one of them with --baseline.")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+",
                        help="run folders or run records (pipeline.records) instead of DVC experiments")
    parser.add_argument("--exps", nargs="+", help="only these DVC experiments (default: all finished ones)")
    parser.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    parser.add_argument("--baseline", default="none", help="strategy (or value of --arm) the others are compared with")
    parser.add_argument("--arm", metavar="PARAM", default="pretrain.source",
                        help="the param whose values are compared (default pretrain.source, the strategy); e.g. "
                             "--arm finetune.model --baseline flat compares the prompt classifier with [CLS] fine-tuning")
    parser.add_argument("--out", default="reports", help="folder for compare.md/.json/.csv/.png")
    parser.add_argument("--bootstrap", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    parser.add_argument("--by", metavar="PARAM", help="one table and plot over this param's values crossed with the "
                        "strategies (a dotted params.yaml key: pretrain.max_tokens, model.max_length, ...)")
    args = parser.parse_args(argv)
    try:
        runs = [load_run_dir(p) for p in args.runs] if args.runs else dvc_experiments(args.repo, args.exps)
        by_arm = args.arm != "pretrain.source"  # the values of another param compared, not strategies
        runs = arms(runs, args.arm, args.baseline) if by_arm else runs
        if args.by:
            summary = summarise_by(runs, args.by, args.baseline, args.bootstrap, args.seed, args.confidence)
        else:
            summary = summarise(runs, args.baseline, args.bootstrap, args.seed, args.confidence)
    except ConfigError as exc:
        print(f"[compare] error: {exc}", file=sys.stderr)
        return 2
    if by_arm:
        summary["arm"] = args.arm
    paths = write_report(summary, runs, args.out)
    print(markdown(summary))
    # the planning command measures the variance on these runs (one recipe per strategy: not with --by or --arm)
    plan = ([] if args.by or by_arm else
            ["--from-runs", *shell_paths(args.runs)] if args.runs else ["--from-exps", *(args.exps or [])])
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
