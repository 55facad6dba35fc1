"""Paired difference in test accuracy between two finished DVC experiments on the same test set.

`compare` pairs strategies at one recipe; this pairs two recipes (or any two runs), e.g. the
fine-tuning epochs of issue 14:

    python -m experiments.paired patience-imdb-e6p2-none-seed1 patience-imdb-e3p0-none-seed1

Prints A - B in accuracy and macro-F1 points with the paired-bootstrap 95% interval and p-value
(`pipeline.compare.paired_bootstrap`: the same resampled test examples for both).
"""
from __future__ import annotations

import argparse

import numpy as np

from pipeline.runs import aligned, dvc_experiments
from pipeline.stats import paired_bootstrap


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--repo", default=".")
    ap.add_argument("--bootstrap", type=int, default=10_000)
    args = ap.parse_args(argv)
    runs = {r.name: r for r in dvc_experiments(args.repo, [args.a, args.b])}
    # one test set, class indices in one order (compare's own alignment: it refuses other examples)
    _, classes, labels, preds = aligned([runs[args.a], runs[args.b]])
    out = paired_bootstrap(labels, preds[:1], preds[1:], len(classes), args.bootstrap)
    for metric in ("accuracy", "macro_f1"):
        d = out[metric]
        print(f"{metric}: {args.a} - {args.b} = {100 * d['diff']:+.2f} points "
              f"[{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}] (95%, {len(labels)} test examples), "
              f"p = {d['p_value']:.3f}")
    for name, row in ((args.a, preds[0]), (args.b, preds[1])):
        print(f"{name}: accuracy {100 * np.mean(row == labels):.2f}%")


if __name__ == "__main__":
    main()
