"""The whole pipeline through DVC on a fixture project, one experiment per strategy.

A tiny BERT (built in the test) is pretrained and fine-tuned on synthetic reviews whose label
is carried by sentiment words; in-domain text is more reviews (with planted leaks, duplicates
and noise), cross-domain text is synthetic news.
"""

import csv
import json
import os
import re
import shutil
import sys
import subprocess
import time

import numpy as np
import pytest

from fixtures import ROOT, heldout_hashes, make_project, set_params
from pipeline.artifacts import load_corpus
from pipeline.dedup import normalised_hash

SOURCES = ("none", "task", "in_domain", "cross_domain")


def dvc(project, *args, env=None, check=True):
    merged = {**os.environ, **(env or {})}  # a None value unsets the variable
    result = subprocess.run(["dvc", *args], cwd=project, capture_output=True,
                            env={k: v for k, v in merged.items() if v is not None})
    # decoded by hand: text=True would turn a progress bar's redraws (\r) into new lines
    result.stdout, result.stderr = (b.decode("utf-8", "replace") for b in (result.stdout, result.stderr))
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def metrics(project, name):
    return json.loads((project / "metrics" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Run `dvc exp run -S pretrain.source=...` for every strategy; keep each one's metrics."""
    project = make_project(tmp_path_factory.mktemp("e2e"))
    results = {}
    for source in SOURCES:
        # WANDB_MODE unset: W&B's default here is offline (pipeline/tracking.py)
        run = dvc(project, "exp", "run", "-n", f"exp-{source}", "-S", f"pretrain.source={source}",
                  env={"WANDB_MODE": None})
        results[source] = {name: metrics(project, name) for name in ("corpus", "pretrain", "finetune", "eval")}
        results[source]["console"] = run.stdout + run.stderr
        results[source]["predictions"] = list(csv.DictReader((project / "outputs/predictions.csv").open()))
        corpus = load_corpus(project / "data/corpus")
        results[source]["corpus_hashes"] = {normalised_hash(t) for t in corpus["text"]}
    return project, results


def test_baseline_passes_the_model_through(grid):
    _, r = grid
    assert r["none"]["corpus"]["docs"] == 0 and r["none"]["corpus"]["tokens"] == 0
    assert r["none"]["pretrain"]["tokens_trained"] == 0
    assert r["none"]["pretrain"]["perplexity_after"] == r["none"]["pretrain"]["perplexity_before"]


def test_same_token_budget_for_every_strategy(grid):
    _, r = grid
    trained = {s: r[s]["pretrain"]["tokens_trained"] for s in SOURCES[1:]}
    assert len(set(trained.values())) == 1, trained
    assert trained["task"] >= r["task"]["corpus"]["budget_tokens"]
    for s in SOURCES[1:]:
        assert r[s]["corpus"]["docs"] > 0


def test_review_text_lowers_heldout_perplexity_news_does_not(grid):
    _, r = grid
    for s in ("task", "in_domain"):
        assert r[s]["pretrain"]["perplexity_after"] < r[s]["pretrain"]["perplexity_before"], s
    # all start from the same base model and the same masks
    assert len({round(r[s]["pretrain"]["perplexity_before"], 6) for s in SOURCES}) == 1
    # review text helps on held-out reviews more than news does (news may even hurt)
    assert r["task"]["pretrain"]["perplexity_after"] < r["cross_domain"]["pretrain"]["perplexity_after"]
    assert r["in_domain"]["pretrain"]["perplexity_after"] < r["cross_domain"]["pretrain"]["perplexity_after"]


def test_classifier_learns_and_metrics_match_predictions(grid):
    _, r = grid
    for s in SOURCES:
        ev, preds = r[s]["eval"], r[s]["predictions"]
        assert ev["accuracy"] >= 0.8, (s, ev["accuracy"])
        assert len(preds) == ev["examples"] == 80
        correct = np.mean([p["label"] == p["pred"] for p in preds])
        assert ev["accuracy"] == pytest.approx(correct)
        assert ev["error_rate"] == pytest.approx(1 - ev["accuracy"])
        assert sum(map(sum, ev["confusion_matrix"])) == 80
        assert 0 < ev["macro_f1"] <= 1
        assert r[s]["finetune"]["dev_accuracy"] >= 0.8


def test_no_task_dev_or_test_text_in_any_corpus(grid):
    project, r = grid
    banned = heldout_hashes(project / "data/task")
    assert r["in_domain"]["corpus"]["leaked_removed"] == 5  # planted by the fixture
    for s in SOURCES:
        assert not banned & r[s]["corpus_hashes"], s


def test_experiments_are_recorded_by_dvc(grid):
    project, _ = grid
    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    names = {exp.get("name") for commit in shown for exp in commit.get("experiments") or []}
    assert {f"exp-{s}" for s in SOURCES} <= names
    # W&B offline runs, one per stage run (prepare ran once, the rest once per strategy)
    runs = list((project / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 + 4 * len(SOURCES)
    assert (project / "plots/confusion.csv").exists() and (project / "plots/pretrain_loss.csv").exists()


def test_default_params_without_network_stop_fast_with_the_fix(tmp_path):
    project = make_project(tmp_path)
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    set_params(project, **{"task.dataset": "stanfordnlp/imdb", "model.name": "google-bert/bert-base-uncased",
                           "collect.corpora_dir": "corpora"})  # what the README gives for real studies
    start = time.time()
    result = dvc(project, "repro", check=False,
                 env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0", "WANDB_MODE": "disabled"})
    elapsed = time.time() - start
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "task.dataset" in output and "model.name" in output and "local" in output
    assert elapsed < 60, elapsed


def test_compare_reads_the_dvc_experiments(grid):
    """`python -m pipeline.compare` on the four experiments: their own metrics, paired intervals."""
    project, r = grid
    result = subprocess.run([sys.executable, "-m", "pipeline.compare", "--bootstrap", "500", "--out", "reports"],
                            cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((project / "reports/compare.json").read_text())
    assert summary["order"] == list(SOURCES)
    for source in SOURCES:
        entry = summary["strategies"][source]
        assert entry["runs"] == [f"exp-{source}"]
        assert entry["accuracy"] == pytest.approx(r[source]["eval"]["accuracy"])
        assert entry["perplexity_after"] == pytest.approx(r[source]["pretrain"]["perplexity_after"])
        if source == "none":
            assert "vs_baseline" not in entry
        else:
            vs = entry["vs_baseline"]["accuracy"]
            assert vs["diff"] == pytest.approx(entry["accuracy"] - summary["strategies"]["none"]["accuracy"])
            assert vs["ci_low"] <= vs["diff"] <= vs["ci_high"]
    assert (project / "reports/compare.png").stat().st_size > 0


def test_console_shows_bars_and_summaries_not_step_logs(grid):
    """What a person reads (issue 27): per-step metrics stay off the console (they go to W&B, the log
    history and the DVC plots), each stage ends with one summary line, W&B says one line per stage, and
    the run ends with its result block."""
    _, r = grid
    for s in SOURCES:
        lines = [ln for ln in r[s]["console"].replace("\r", "\n").splitlines() if ln.strip()]
        shown = r[s]["console"].splitlines()  # a terminal shows a redrawn bar (\r) as one line
        text = "\n".join(lines)
        assert not [ln for ln in lines if "{'loss'" in ln or "{'eval_" in ln or "'learning_rate'" in ln], s
        assert not [ln for ln in lines if ln.startswith("wandb:") or "Running in WANDB offline mode" in ln], s
        for stage in ("collect", "pretrain", "finetune", "evaluate"):  # prepare ran once, for the first strategy
            assert sum(ln.startswith(f"[{stage}] W&B run saved offline in ") for ln in lines) == 1, (s, stage)
        assert re.search(r"^\[collect\] (no corpus|[\d,]+ documents, [\d,]+ tokens)", text, re.M), s
        assert re.search(r"^\[pretrain\] (no MLM \(pretrain.source none\)|[\d,]+ tokens) in \d+ s, held-out "
                         r"perplexity [\d,.]+", text, re.M), s
        assert re.search(r"^\[finetune\] best dev accuracy [01]\.\d{4} at epoch \d of \d", text, re.M), s
        assert re.search(r"^\[evaluate\] test accuracy [01]\.\d{4}, macro-F1 [01]\.\d{4}", text, re.M), s
        assert re.search(rf"^result   strategy {s}: test accuracy {r[s]['eval']['accuracy']:.4f}", text, re.M), s
        # a bar is drawn once its phase has run a second (TQDM_DELAY, stages/__init__.py); bars of quicker steps never
        if r[s]["pretrain"].get("train_seconds", 0) > 2:
            assert "[pretrain] MLM" in text and "loss=" in text  # the bar and its postfix
        if r[s]["finetune"]["train_seconds"] / r[s]["finetune"]["epochs_run"] > 2:
            assert "[finetune] epoch 1/" in text and "dev_acc=" in text
        # DVC's own lines included (about 45 here, 14 of them its end-of-run warnings about uncached outputs);
        # per-step logs would add a line per step (about 110 on this fixture). Progress bars are not counted line
        # by line: which phases outlast TQDM_DELAY, and how often a bar redraws, depend on the machine's load (a
        # loaded run drew 121 lines here). Each bar counts once, by its label; plain lines count each.
        plain = [ln for ln in shown if "%|" not in ln]
        bars = {re.split(r":?\s*\d+%\|", ln.split("\r")[-1].strip())[0] for ln in shown if "%|" in ln}
        counted = plain + sorted(bars)
        assert len(counted) < 100, (s, len(counted), "\n".join(counted)[-3000:])
