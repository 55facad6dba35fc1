"""The benches run from a fresh clone: no model cache, no ../shared (tiny sizes here; the defaults are the
same code at full size)."""

from __future__ import annotations

import os
import subprocess
import sys

from fixtures import ROOT


def run_bench(script: str, *args: str, home) -> str:
    env = {**os.environ, "HOME": str(home), "WANDB_MODE": "disabled"}  # no ~/.cache model to fall back on
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_speed_runs_without_model_or_data_arguments(tmp_path):
    out = run_bench("bench_speed.py", "--layers", "1", "--hidden", "32", "--heads", "1", "--batch", "2", "--seq", "16",
                    "--steps", "1", "--rounds", "1", "--train", "4", "--eval", "4", "--max-length", "32", home=tmp_path)
    assert "## MLM training, tokens/s" in out and "## Fine-tune + eval, examples/s" in out
    assert out.count("| run_mlm (") >= 1 and "| pipeline: length-grouped" in out


def test_bench_steps_reports_each_loop_against_a_bare_one(tmp_path):
    out = run_bench("bench_steps.py", "--train", "32", "--max-length", "32", "--batch", "8", "--mlm-steps", "6",
                    "--skip", "1", "--rounds", "1", home=tmp_path)
    rows = [line for line in out.splitlines() if line.startswith(("| pretrain", "| finetune", "| predict"))]
    assert len(rows) == 3, out
    for row in rows:
        pipeline_ms, bare_ms = (float(x) for x in row.split("|")[2:4])
        assert pipeline_ms > 0 and bare_ms > 0
    assert "data path alone" in out
