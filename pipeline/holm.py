"""Holm's step-down correction over a pre-registered family of primary comparisons, each read from the
report `compare` wrote (its .json), so that the decision a registration fixes in advance is one command:

    python -m pipeline.holm \\
        P1=experiments/prompt_words/reports/prompt-vs-flat/none/compare-by-task.demo.train.json:32:prompt \\
        P2=experiments/prompt_words/reports/mlm/prompt-task-tpl/compare-by-task.demo.train.json:32:task

Each comparison is NAME=REPORT[:GROUP]:STRATEGY: GROUP is the --by value (omitted for a report without
--by), STRATEGY the arm compared with the report's baseline. The p-value read is the one compare reports
for accuracy (its t test over seeds x test examples, `vs_baseline.power.p_value`), the same test that
gives the interval beside it. A comparison is confirmed when its Holm-adjusted p is below --alpha and its
interval excludes zero, in either direction: the table gives the sign, so a registered direction that the
data reverse reads as `yes (−)`, not as support.

Holm (1979) is five lines; statsmodels' `multipletests` has it but is not a dependency of this project,
and SciPy has only Benjamini-Hochberg (`false_discovery_control`), which controls a different error rate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.io import read_json, write_json


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: the i-th smallest p times (m - i), made non-decreasing
    along that order and capped at 1."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: p_values[k])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def parse_spec(spec: str) -> tuple[str, Path, str | None, str]:
    """NAME=REPORT[:GROUP]:STRATEGY -> (name, report, group or None, strategy)."""
    name, sep, rest = spec.partition("=")
    parts = rest.split(":")
    if not sep or not name or len(parts) not in (2, 3) or not all(parts):
        raise ConfigError(f"comparison `{spec}`: write NAME=REPORT[:GROUP]:STRATEGY, e.g. "
                          "P1=reports/compare-by-task.demo.train.json:32:prompt (GROUP only for a report made "
                          "with --by).")
    group = parts[1] if len(parts) == 3 else None
    return name, Path(parts[0]), group, parts[-1]


def read_comparison(report: Path, group: str | None, strategy: str) -> dict:
    """The accuracy difference, interval and p-value of `strategy` against the baseline in `report`."""
    if not report.is_file():
        raise ConfigError(f"{report}: no such compare report; run `python -m pipeline.compare ... --out` first.")
    summary = read_json(report)
    if "groups" in summary:
        if group is None:
            raise ConfigError(f"{report} was made with --by {summary.get('by')}: name the group as "
                              f"REPORT:GROUP:STRATEGY (groups: {', '.join(summary['groups'])}).")
        if group not in summary["groups"]:
            raise ConfigError(f"{report}: no group `{group}` (--by {summary.get('by')}); it has "
                              f"{', '.join(summary['groups'])}.")
        summary = summary["groups"][group]
    elif group is not None:
        raise ConfigError(f"{report} was made without --by: write REPORT:STRATEGY, with no group.")
    strategies = summary.get("strategies", {})
    if strategy not in strategies:
        raise ConfigError(f"{report}: no strategy `{strategy}`; it has {', '.join(strategies)}.")
    versus = strategies[strategy].get("vs_baseline")
    if not versus:
        raise ConfigError(f"{report}: `{strategy}` is the baseline or has no baseline runs to compare with; "
                          f"name an arm compared with `{summary.get('baseline')}`.")
    power = versus["power"]
    return {"diff": power["diff"], "ci_low": power["ci_low"], "ci_high": power["ci_high"],
            "p_value": power["p_value"], "mde": power["mde"], "seeds": power["seeds"],
            "baseline": summary.get("baseline")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.holm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparisons", nargs="+", metavar="NAME=REPORT[:GROUP]:STRATEGY")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate")
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    try:
        specs = [parse_spec(s) for s in args.comparisons]
        names = [s[0] for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"comparison names repeat ({', '.join(names)}): give each its own NAME.")
        rows = [{"name": n, "strategy": st, "group": g, **read_comparison(r, g, st)} for n, r, g, st in specs]
    except ConfigError as exc:
        print(f"[holm] error: {exc}", file=sys.stderr)
        return 2
    for row, adjusted in zip(rows, holm([r["p_value"] for r in rows])):
        row["p_holm"] = adjusted
        row["confirmed"] = adjusted < args.alpha and (row["ci_low"] > 0 or row["ci_high"] < 0)
        row["direction"] = "+" if row["diff"] > 0 else "−" if row["diff"] < 0 else "0"
        row["verdict"] = f"yes ({row['direction']})" if row["confirmed"] else "no"
    print(f"| comparison | Δ accuracy (points) [95% CI] | MDE | p | p Holm ({len(rows)}) | significant at {args.alpha} |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        what = f"{r['name']}: {r['strategy']} − {r['baseline']}" + (f" @ {r['group']}" if r["group"] else "")
        print(f"| {what} | {100 * r['diff']:+.2f} [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}] | "
              f"{100 * r['mde']:.2f} | {r['p_value']:.3g} | {r['p_holm']:.3g} | {r['verdict']} |")
    if args.out:
        write_json(args.out, {"alpha": args.alpha, "comparisons": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
