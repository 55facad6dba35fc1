"""Long texts (issue 9): head, tail, head_tail and hierarchical mean / max / attention, compared
on one prepared task and one encoder with the same fine-tuning recipe.

Each configuration runs the pipeline's own `finetune` and `evaluate` stages in its own folder
(params.yaml = the repo's params + the configuration's overrides; data/task and
models/pretrained linked in), so the figures are what `dvc exp run -S finetune.truncation=tail`
would give, without needing the DVC repository (e.g. on a GPU machine that only has the code).

    python experiments/long_texts.py --task data/task --model models/pretrained --out reports/long_texts \
        --set model.max_length=512 --set finetune.max_chunks=4

Prints a markdown table (accuracy, macro-F1, minutes) and writes it with the metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "head": {"finetune.truncation": "head"},
    "tail": {"finetune.truncation": "tail"},
    "head_tail": {"finetune.truncation": "head_tail"},
    "hier_mean": {"finetune.model": "hierarchical", "finetune.pooling": "mean"},
    "hier_max": {"finetune.model": "hierarchical", "finetune.pooling": "max"},
    "hier_attention": {"finetune.model": "hierarchical", "finetune.pooling": "attention"},
}


def set_key(params: dict, dotted: str, value) -> None:
    *path, key = dotted.split(".")
    node = params
    for part in path:
        node = node.setdefault(part, {})
    node[key] = value


def run_config(name: str, overrides: dict, args) -> dict:
    run = Path(args.out) / "runs" / name
    (run / "data").mkdir(parents=True, exist_ok=True)
    (run / "models").mkdir(exist_ok=True)
    for link, target in ((run / "data/task", args.task), (run / "models/pretrained", args.model)):
        if not link.exists():
            link.symlink_to(Path(target).resolve(), target_is_directory=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    set_key(params, "model.name", str(Path(args.model).resolve()))
    for dotted, value in [*(s.split("=", 1) for s in args.set), *overrides.items()]:
        set_key(params, dotted, yaml.safe_load(value) if isinstance(value, str) else value)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.time()
    for stage in ("finetune", "evaluate"):
        with (run / f"{stage}.log").open("w") as log:
            code = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=run, env=env, stdout=log,
                                  stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise SystemExit(f"{name}: stage {stage} failed (exit {code}); see {run / f'{stage}.log'}")
    wall = time.time() - start
    finetune = json.loads((run / "metrics/finetune.json").read_text())
    evaluation = json.loads((run / "metrics/eval.json").read_text())
    return {"config": name, **overrides, "accuracy": evaluation["accuracy"], "macro_f1": evaluation["macro_f1"],
            "error_pct": 100 * evaluation["error_rate"], "dev_accuracy": finetune["dev_accuracy"],
            "best_epoch": finetune["best_epoch"], "train_seconds": finetune["train_seconds"],
            "evaluate_seconds": evaluation["seconds"], "minutes": wall / 60,
            "length_buckets": evaluation.get("length_buckets", {})}


def table(rows: list[dict]) -> str:
    lines = ["| configuration | test accuracy | macro-F1 | error % | dev accuracy (epoch) | minutes (finetune + evaluate) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['error_pct']:.2f} | "
                     f"{r['dev_accuracy']:.4f} ({r['best_epoch']:.0f}) | {r['minutes']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, help="a prepared task folder (the prepare stage's data/task)")
    parser.add_argument("--model", required=True, help="the encoder to fine-tune (e.g. models/pretrained)")
    parser.add_argument("--out", default="reports/long_texts")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="params override for every configuration, e.g. model.max_length=512")
    args = parser.parse_args()
    rows, out = [], Path(args.out)
    for name in args.configs:
        rows.append(run_config(name, CONFIGS[name], args))
        print(f"[long_texts] {name}: accuracy {rows[-1]['accuracy']:.4f} in {rows[-1]['minutes']:.2f} min", flush=True)
        # written after every configuration: a run cut short keeps what it finished
        (out / "long_texts.json").write_text(json.dumps({"set": args.set, "rows": rows}, indent=2))
        (out / "long_texts.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
