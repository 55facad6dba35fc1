"""How well zero-shot prompt runs rank the test reviews, apart from where their threshold falls.

    python -m experiments.spike_in.margin_auc zs-1m-k100-none-1-seed1 zs-1m-k100-in_domain-1-seed1 ...

Reads each DVC experiment's outputs/predictions.csv from the DVC cache (the md5 its dvc.lock records) and prints
its accuracy, the share of reviews it calls positive, and the AUC of the score margin `prob_1 - prob_0` against
the label (scikit-learn's roc_auc_score): a threshold-free reading of what MLM taught the head (docs/results.md,
"Prompt-based classification: the output-role spike-in").
"""

from __future__ import annotations

import argparse
import subprocess

import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score


def predictions(name: str) -> pd.DataFrame:
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], capture_output=True,
                          text=True, check=True).stdout.split()
    found = [r for r in refs if r.endswith("/" + name)]
    if not found:
        raise SystemExit(f"no DVC experiment named {name} in this repository (dvc exp ls)")
    lock = yaml.safe_load(subprocess.run(["git", "show", f"{found[0]}:dvc.lock"], capture_output=True, text=True,
                                         check=True).stdout)
    md5 = next(o["md5"] for o in lock["stages"]["evaluate"]["outs"] if o["path"] == "outputs/predictions.csv")
    return pd.read_csv(f".dvc/cache/files/md5/{md5[:2]}/{md5[2:]}", dtype={"label": str, "pred": str})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exps", nargs="+")
    ap.add_argument("--positive", default="1", help="the positive class's name (prob_<name> column)")
    ap.add_argument("--negative", default="0")
    args = ap.parse_args(argv)
    for name in args.exps:
        df = predictions(name)
        margin = df[f"prob_{args.positive}"] - df[f"prob_{args.negative}"]
        auc = roc_auc_score(df["label"] == args.positive, margin)
        print(f"{name}: accuracy {(df['label'] == df['pred']).mean():.4f}, called positive "
              f"{(df['pred'] == args.positive).mean():.3f}, AUC of the margin {auc:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
