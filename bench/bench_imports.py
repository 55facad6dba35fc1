"""Import time of each DVC stage module, and which heavy libraries it pulls in (issue 45).

    python bench/bench_imports.py [--rounds 5]

Each stage module is imported in a fresh interpreter (`python -X importtime -c "import stages.<name>"`),
`--rounds` times; the best round is reported (the others carry the noise of a shared machine). The
`inputs` stage only hashes files, which DVC runs on every `dvc repro`: it must not import torch, datasets,
scikit-learn, transformers or datatrove. Times are this machine's; compare them before and after a change,
in the same session.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("inputs", "prepare", "collect", "pretrain", "finetune", "evaluate")
HEAVY = ("torch", "datasets", "sklearn", "transformers", "datatrove", "wandb", "pandas", "pyarrow")
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def import_profile(module: str) -> tuple[float, set[str]]:
    """Seconds to import `module` (its cumulative import time) and the heavy top-level packages imported."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stderr
    total, heavy = 0.0, set()
    for match in LINE.finditer(err):
        cumulative, name = int(match.group(2)), match.group(4)
        if name == module:
            total = cumulative / 1e6
        if name in HEAVY:
            heavy.add(name)
    return total, heavy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stages", nargs="+", default=list(STAGES))
    args = ap.parse_args(argv)
    print("| stage | import s (best of %d) | heavy libraries imported |" % args.rounds)
    print("|---|---:|---|")
    for stage in args.stages:
        runs = [import_profile(f"stages.{stage}") for _ in range(args.rounds)]
        best = min(t for t, _ in runs)
        print(f"| `{stage}` | {best:.2f} | {', '.join(sorted(runs[0][1])) or '–'} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
