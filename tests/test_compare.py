"""The compare command on fixture runs whose metrics and predictions are known."""

import json
import math
import re

import numpy as np
import pytest
import yaml
from scipy.stats import binom
from scipy.stats import t as student_t

from pipeline.compare import main
from pipeline.report import markdown
from pipeline.runs import load_run_dir, shell_paths
from pipeline.stats import paired_bootstrap, summarise, summarise_by
from pipeline.config import ConfigError

N = 200
LABELS = ["neg" if i % 2 else "pos" for i in range(N)]


def write_run(root, name, strategy, seed, correct, ppl=(100.0, 50.0), task_seed=42, pretrain_seed=42, **params):
    """A run folder whose first `correct` test predictions are right and the rest wrong."""
    run = root / name
    (run / "metrics").mkdir(parents=True)
    (run / "outputs").mkdir()
    preds = [lab if i < correct else ("pos" if lab == "neg" else "neg") for i, lab in enumerate(LABELS)]
    ids = [f"{task_seed}-{i}" for i in range(N)]
    rows = ["id,label,pred,correct"] + [f"{i},{lab},{p},{int(lab == p)}" for i, lab, p in zip(ids, LABELS, preds)]
    (run / "outputs/predictions.csv").write_text("\n".join(rows) + "\n")
    accuracy = correct / N
    (run / "metrics/eval.json").write_text(json.dumps({"accuracy": accuracy, "macro_f1": accuracy - 0.01}))
    (run / "metrics/pretrain.json").write_text(json.dumps(
        {"perplexity_before": ppl[0], "perplexity_after": ppl[1], "tokens_trained": 0 if strategy == "none" else 1000}))
    values = {"seed": seed, "pretrain": {"source": strategy, "seed": pretrain_seed}, "task": {"seed": task_seed}}
    for dotted, value in params.items():  # e.g. pretrain__max_tokens=1000
        section, key = dotted.split("__")
        values.setdefault(section, {})[key] = value
    (run / "params.yaml").write_text(yaml.safe_dump(values))
    return run


@pytest.fixture
def grid(tmp_path):
    # none: 160, 164, 168 right (80, 82, 84 %); task: 180 right for every seed (90 %)
    runs = [write_run(tmp_path, f"none-seed{s}", "none", s, 160 + 4 * (s - 1), ppl=(100.0, 100.0)) for s in (1, 2, 3)]
    # each task run with its own pretrained model (pretrain.seed = s): a perplexity spread over 3 models
    runs += [write_run(tmp_path, f"task-seed{s}", "task", s, 180, ppl=(100.0, 40.0 + s), pretrain_seed=s)
             for s in (1, 2, 3)]
    return tmp_path, runs


def test_table_has_mean_std_and_known_interval(grid):
    _, dirs = grid
    summary = summarise([load_run_dir(d) for d in dirs], n_boot=20_000, seed=1)
    none, task = summary["strategies"]["none"], summary["strategies"]["task"]
    assert none["accuracy"] == pytest.approx(0.82) and none["accuracy_std"] == pytest.approx(0.02)
    assert task["accuracy"] == pytest.approx(0.90) and task["accuracy_std"] == 0.0
    assert task["perplexity_after"] == pytest.approx(42.0) and task["perplexity_after_std"] == pytest.approx(1.0)
    assert "vs_baseline" not in none
    vs = task["vs_baseline"]["accuracy"]
    assert vs["diff"] == pytest.approx(0.08)
    # Paired per example and averaged over seeds, task beats none by 1/3 on examples 160-163 (none
    # right in 2 of 3 seeds), 2/3 on 164-167 and 1 on 168-179. A resample's difference is then
    # (X1/3 + 2*X2/3 + X3) / N with (X1, X2, X3) the multinomial counts of those groups; its
    # quantiles, simulated independently here, are the interval to expect.
    rng = np.random.default_rng(0)
    draws = rng.multinomial(N, [4 / N, 4 / N, 12 / N, (N - 20) / N], size=200_000)
    ref = (draws[:, 0] * 1 / 3 + draws[:, 1] * 2 / 3 + draws[:, 2] * 1.0) / N
    low, high = np.quantile(ref, [0.025, 0.975])
    assert vs["ci_low"] == pytest.approx(low, abs=0.004) and vs["ci_high"] == pytest.approx(high, abs=0.004)
    assert vs["p_value"] < 0.001
    assert summary["strategies"]["task"]["vs_baseline"]["paired_seeds"] == [1, 2, 3]

    # The table's headline interval also covers the seed spread (three paired seeds): d[s, i] is 1 on
    # examples 160 + 4(s - 1) .. 179, else 0. ANOVA mean squares by hand: row means 0.10, 0.08, 0.06;
    # column means 1/3 (4 examples), 2/3 (4), 1 (12), 0 (180); sum of d² 48; grand mean 0.08.
    ms_seed = N * 0.02 ** 2
    ms_example = 3 * (4 / 9 + 16 / 9 + 12 - N * 0.08 ** 2) / (N - 1)
    ms_resid = (48 - 3 * N * 0.08 ** 2 - 2 * ms_seed - (N - 1) * ms_example) / (2 * (N - 1))
    total = ms_example + ms_seed - ms_resid
    se = math.sqrt(total / (3 * N))
    df = total ** 2 / (ms_example ** 2 / (N - 1) + ms_seed ** 2 / 2 + ms_resid ** 2 / (2 * (N - 1)))  # Satterthwaite
    pw = task["vs_baseline"]["power"]
    assert pw["seed_term"] and pw["paired_by"] == "seed" and pw["se"] == pytest.approx(se, rel=1e-9)
    assert pw["df"] == pytest.approx(df, rel=1e-9) and 2 < df < N - 1  # between seeds-only and test-only
    assert pw["se_test"] == pytest.approx(math.sqrt(ms_example / (3 * N)), rel=1e-9)
    half = student_t.ppf(0.975, df) * se
    assert pw["ci_low"] == pytest.approx(0.08 - half) and pw["ci_high"] == pytest.approx(0.08 + half)
    assert pw["p_value"] == pytest.approx(2 * student_t.sf(0.08 / se, df))
    assert pw["ci_high"] - pw["ci_low"] > vs["ci_high"] - vs["ci_low"]  # the seed spread widens it

    table = markdown(summary)
    assert "| `none` | 3 (1, 2, 3) | 82.00 ± 2.00 |" in table
    assert "| `task` | 3 (1, 2, 3) | 90.00 ± 0.00 |" in table
    assert (f"| +8.00 [{pw['ci_low'] * 100:+.2f}, {pw['ci_high'] * 100:+.2f}] | {pw['p_value']:.3f} | "
            f"{pw['mde'] * 100:.2f} |") in table
    assert "†" not in table and "covering both the sampling of the 200 test examples and the spread" in table
    assert "100 → 42 ± 1" in table


@pytest.mark.parametrize("cells", [10**9, N * 300], ids=["one-chunk", "chunked"])
def test_single_seed_interval_is_the_binomial_one(tmp_path, monkeypatch, cells):
    monkeypatch.setattr("pipeline.stats.BOOT_CELLS", cells)
    dirs = [write_run(tmp_path, "none-seed1", "none", 1, 160), write_run(tmp_path, "task-seed1", "task", 1, 180)]
    vs = summarise([load_run_dir(d) for d in dirs], n_boot=20_000)["strategies"]["task"]["vs_baseline"]
    # 20 of 200 examples improve, none get worse: the resampled difference is Binomial(200, 0.1) / 200
    assert vs["accuracy"]["diff"] == pytest.approx(0.10)
    assert vs["accuracy"]["ci_low"] == pytest.approx(binom.ppf(0.025, N, 0.1) / N, abs=0.0051)
    assert vs["accuracy"]["ci_high"] == pytest.approx(binom.ppf(0.975, N, 0.1) / N, abs=0.0051)


def test_identical_predictions_give_zero_difference():
    labels = np.array([0, 1] * 50)
    preds = np.array([labels.copy()])
    preds[0, :30] = 1 - preds[0, :30]
    out = paired_bootstrap(labels, preds, preds.copy(), k=2, n_boot=2000)
    for metric in ("accuracy", "macro_f1"):
        assert out[metric]["diff"] == 0.0 and out[metric]["ci_low"] == 0.0 and out[metric]["ci_high"] == 0.0
        assert out[metric]["p_value"] == 1.0


def test_macro_f1_difference_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 300)
    a = np.where(rng.random(300) < 0.8, labels, rng.integers(0, 3, 300))[None]
    b = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 3, 300))[None]
    out = paired_bootstrap(labels, a, b, k=3, n_boot=500)
    want = f1_score(labels, a[0], average="macro") - f1_score(labels, b[0], average="macro")
    assert out["macro_f1"]["diff"] == pytest.approx(want, abs=1e-12)
    assert out["macro_f1"]["ci_low"] < want < out["macro_f1"]["ci_high"]


def test_different_test_sets_are_refused(tmp_path):
    dirs = [write_run(tmp_path, "none-seed1", "none", 1, 160), write_run(tmp_path, "task-seed1", "task", 1, 180,
                                                                         task_seed=7)]
    with pytest.raises(ConfigError, match=r"task-seed1.*same test set.*task.seed"):
        summarise([load_run_dir(d) for d in dirs])


def test_cli_writes_table_json_csv_and_png(grid, tmp_path, capsys):
    root, dirs = grid
    assert main(["--runs", *map(str, dirs), "--out", str(tmp_path / "reports"), "--bootstrap", "2000"]) == 0
    out = tmp_path / "reports"
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert "| `task` |" in (out / "compare.md").read_text()
    csv = (out / "compare.csv").read_text().splitlines()
    assert csv[0].startswith("strategy,runs,accuracy") and csv[2].startswith("task,3,90.0")
    assert json.loads((out / "compare.json").read_text())["test_examples"] == N
    printed = capsys.readouterr().out
    assert "90.00 ± 0.00" in printed  # three seeds that agree: a measured spread of zero
    assert "100 → 42 ± 1" in printed  # perplexity spread over the three pretrained models
    assert "[compare] wrote" in printed and "compare.csv" in printed and "compare.json" in printed


def test_shell_paths_keeps_the_list_when_no_glob_matches_exactly_it(tmp_path):
    names = [f"fewlabel-d{d}-{s}-100-seed{n}.json" for d in (1, 2) for s in ("none", "in_domain") for n in (1, 10)]
    for name in names + ["fewlabel-d1-none-150-seed1.json", "fewlabel-d1-task-100-seed1.json"]:
        (tmp_path / name).write_text("{}")
    given = [str(tmp_path / n) for n in names]
    assert shell_paths(given) == given  # the glob fewlabel-*-*-100-*.json would add task's run
    with_task = given + [str(tmp_path / "fewlabel-d1-task-100-seed1.json")]
    assert shell_paths(with_task) == [str(tmp_path / "fewlabel-*-*-100-*.json")]  # not the 150-label run
    assert shell_paths(given[:3]) == given[:3]  # fewlabel-d1-*-100-*.json would add two more
    assert shell_paths(given[:2]) == given[:2]  # two paths print as they are
    elsewhere = given[:3] + ["other/fewlabel-d9-none-100-seed1.json"]
    assert shell_paths(elsewhere) == elsewhere  # more than one folder: as given


def test_a_single_run_has_no_spread(tmp_path):
    runs = [write_run(tmp_path, "none-seed1", "none", 1, 160, ppl=(100.0, 100.0)),
            write_run(tmp_path, "task-seed1", "task", 1, 170, ppl=(100.0, 60.0)),
            write_run(tmp_path, "task-seed2", "task", 2, 174, ppl=(100.0, 60.0))]
    summary = summarise([load_run_dir(d) for d in runs], n_boot=500)
    assert summary["strategies"]["none"]["accuracy_std"] is None
    table = markdown(summary)
    assert "| 80.00 ± – |" in table and "± 0.00" not in table.split("`none`")[1].split("\n")[0]
    # two fine-tuning seeds on one pretrained model: one perplexity, no spread
    assert summary["strategies"]["task"]["perplexity_after_std"] is None and "100 → 60 ± –" in table


def test_task_models_of_two_label_draws_count_twice_at_one_pretrain_seed(tmp_path):
    """`task` pretrains on the draw's labelled reviews: at one pretrain.seed each label draw
    (task.demo.train_seed) has a model of its own, and the perplexity spread is over both."""
    runs = [write_run(tmp_path, f"none-d{d}", "none", 1, 160, ppl=(100.0, 100.0), task__demo={"train_seed": d})
            for d in (1, 2)]
    runs += [write_run(tmp_path, f"task-d{d}-seed{s}", "task", s, 170, ppl=(100.0, 40.0 + 4 * d),
                       task__demo={"train_seed": d}) for d in (1, 2) for s in (1, 2)]
    task = summarise([load_run_dir(d) for d in runs], n_boot=200)["strategies"]["task"]
    assert task["pretrain_seeds"] == [42]
    assert task["perplexity_after"] == pytest.approx(46.0)  # (44 + 48) / 2: both draws' models
    assert task["perplexity_after_std"] == pytest.approx(np.std([44.0, 48.0], ddof=1))


def test_compare_by_a_param_pairs_each_value_with_the_baseline(tmp_path, capsys):
    # none trains no MLM: run once (its params say 1M tokens) and borrowed at every budget;
    # task: 170 right at 1000 tokens, 190 at 4000 (85 %, 95 %) vs none 160 / 164 (80 %, 82 %)
    runs = [write_run(tmp_path, f"none-seed{s}", "none", s, 160 + 4 * (s - 1), pretrain__max_tokens=1_000_000)
            for s in (1, 2)]
    runs += [write_run(tmp_path, f"task-{n}-seed{s}", "task", s, correct, pretrain__max_tokens=n)
             for n, correct in ((1000, 170), (4000, 190)) for s in (1, 2)]
    summary = summarise_by([load_run_dir(d) for d in runs], "pretrain.max_tokens", n_boot=2000)
    assert summary["values"] == [1000, 4000, 1_000_000]
    assert summary["baseline_borrowed_at"] == [1000, 4000]
    at = summary["groups"]
    assert at[1000]["strategies"]["task"]["accuracy"] == pytest.approx(0.85)
    assert at[1000]["strategies"]["task"]["vs_baseline"]["accuracy"]["diff"] == pytest.approx(0.85 - 0.81)
    assert at[4000]["strategies"]["task"]["vs_baseline"]["accuracy"]["diff"] == pytest.approx(0.95 - 0.81)
    assert "vs_baseline" not in at[1_000_000]["strategies"]["none"]

    out = tmp_path / "reports"
    assert main(["--runs", *map(str, runs), "--by", "pretrain.max_tokens", "--out", str(out), "--bootstrap", "500"]) == 0
    stem = "compare-by-pretrain.max_tokens"
    assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    csv = (out / f"{stem}.csv").read_text().splitlines()
    assert csv[0].startswith("pretrain.max_tokens,strategy,runs,accuracy")
    assert any(line.startswith("4000,task,2,95.0") for line in csv)
    # one table for both kinds: the --by value first, then the strategy table's columns (macro-F1 after accuracy)
    assert re.search(r"\| 4000 \| `task` \| 2 \(1, 2\) \| 95\.00 ± 0\.00 \| [\d.]+ ± [\d.]+ \| \+14\.00",
                     capsys.readouterr().out)
    assert not (out / "compare.md").exists()  # the strategy table is not overwritten


def test_compare_by_names_a_param_the_runs_lack(tmp_path):
    runs = [write_run(tmp_path, "none-seed1", "none", 1, 160)]
    with pytest.raises(ConfigError, match=r"none-seed1.*model\.max_lenght"):
        summarise_by([load_run_dir(d) for d in runs], "model.max_lenght")


def test_cli_names_a_missing_file(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    assert main(["--runs", str(tmp_path / "half"), "--out", str(tmp_path / "r")]) == 2
    assert "params.yaml" in capsys.readouterr().err


def _git(repo, *args, env=None):
    import os
    import subprocess
    full_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t", **(env or {})}
    return subprocess.run(["git", *args], cwd=repo, env=full_env, check=True, capture_output=True,
                          text=True).stdout.strip()


def _exp_repo(tmp_path, subdir=""):
    """A git + DVC repo with one baseline commit (the DVC project in `subdir` of the git repo, if given:
    `dvc init --subdir`); experiments are added by `_commit_exp`. Returns the DVC project's folder."""
    import subprocess
    import sys

    repo = tmp_path / "repo"
    project = repo / subdir if subdir else repo
    project.mkdir(parents=True)
    _git(repo, "init", "-q")
    # in a child process: DVC's in-process logger keeps the stream of the first test that used it
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q", *(["--subdir"] if subdir else [])], cwd=project,
                   check=True, capture_output=True)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "baseline", env={"GIT_COMMITTER_DATE": "2026-01-01T00:00:00"})
    return project


def _commit_exp(repo, run, name, date, uncached=(), outs=("metrics/eval.json", "metrics/pretrain.json",
                                                         "outputs/predictions.csv")):
    """Commit `run`'s params.yaml and a dvc.lock naming its outs (by md5, in the local DVC cache unless
    listed in `uncached`) as DVC experiment `name` on the baseline commit, the way `dvc exp run` leaves it."""
    import hashlib
    import shutil

    baseline = _git(repo, "rev-parse", "HEAD")
    lock_outs = []
    for path in outs:
        data = (run / path).read_bytes()
        md5 = hashlib.md5(data).hexdigest()
        if path not in uncached:
            cached = repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(data)
        lock_outs.append({"path": path, "hash": "md5", "md5": md5, "size": len(data)})
    shutil.copy(run / "params.yaml", repo / "params.yaml")
    (repo / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"evaluate": {
        "cmd": "python -m stages.evaluate", "outs": lock_outs}}}))
    _git(repo, "add", "params.yaml", "dvc.lock")
    _git(repo, "commit", "-qm", name, env={"GIT_COMMITTER_DATE": date})
    sha = _git(repo, "rev-parse", "HEAD")
    _git(repo, "update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}", sha)
    _git(repo, "reset", "-q", "--hard", baseline)
    return sha


def test_dvc_experiments_reads_each_experiment_at_its_commit(tmp_path, monkeypatch, capsys):
    """Experiments are read at their own commits: params from git, metrics and predictions by the md5 of
    their dvc.lock from the local DVC cache, a file the cache lacks through dvc.api.read (the remote);
    a name run on two baselines is read from its newest run; a run without metrics/eval.json is skipped
    when listing and refused by name; an unknown name is refused with the way to list them."""
    import dvc.api

    from pipeline.runs import dvc_experiments

    repo = _exp_repo(tmp_path)
    runs_dir = tmp_path / "runs"
    _commit_exp(repo, write_run(runs_dir, "none-seed1", "none", 1, 150), "none-seed1", "2026-01-02T00:00:00")
    _commit_exp(repo, write_run(runs_dir / "old", "task-seed1", "task", 1, 100), "task-seed1", "2026-01-02T00:00:00")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "second baseline", env={"GIT_COMMITTER_DATE": "2026-01-03T00:00:00"})
    task_sha = _commit_exp(repo, write_run(runs_dir / "new", "task-seed1", "task", 1, 180), "task-seed1",
                           "2026-01-04T00:00:00", uncached=("outputs/predictions.csv",))
    _commit_exp(repo, write_run(runs_dir, "cut-seed1", "task", 1, 120), "cut-seed1", "2026-01-05T00:00:00",
                outs=("metrics/pretrain.json",))
    remote_reads = []
    monkeypatch.setattr(dvc.api, "read", lambda path, repo, rev: remote_reads.append((path, rev)) or
                        (runs_dir / "new/task-seed1" / path).read_text())

    runs = {r.name: r for r in dvc_experiments(repo)}
    assert sorted(runs) == ["none-seed1", "task-seed1"]
    assert "`cut-seed1`: no metrics/eval.json" in capsys.readouterr().err
    assert runs["none-seed1"].accuracy == 150 / N and runs["none-seed1"].strategy == "none"
    assert runs["none-seed1"].metrics["pretrain"]["perplexity_after"] == 50.0
    assert runs["task-seed1"].accuracy == 180 / N and runs["task-seed1"].param("pretrain.source") == "task"
    assert int((runs["task-seed1"].predictions["label"] == runs["task-seed1"].predictions["pred"]).sum()) == 180
    assert remote_reads == [("outputs/predictions.csv", task_sha)]  # only what the local cache lacked

    assert [r.name for r in dvc_experiments(repo, ["task-seed1"])] == ["task-seed1"]
    with pytest.raises(ConfigError, match="`cut-seed1` has no metrics/eval.json"):
        dvc_experiments(repo, ["cut-seed1"])
    with pytest.raises(ConfigError, match="no finished experiment named nope-seed1.*dvc exp list -A"):
        dvc_experiments(repo, ["nope-seed1"])


def test_dvc_experiments_of_a_project_in_a_folder_of_its_git_repo(tmp_path):
    from pipeline.runs import dvc_experiments

    project = _exp_repo(tmp_path, subdir="study")
    _commit_exp(project, write_run(tmp_path / "runs", "task-seed2", "task", 2, 170), "task-seed2", "2026-01-02T00:00:00")
    (run,) = dvc_experiments(project)
    assert run.name == "task-seed2" and run.seed == 2 and run.accuracy == 170 / N and len(run.predictions) == N


def test_a_zero_shot_grid_replicates_over_pretrain_seed(tmp_path):
    # Zero-shot (finetune.epochs 0): one fine-tuning seed, two MLM seeds. `none` has no MLM, so its two runs
    # are the same classifier; in_domain's differ. compare must pair pretrain.seed with pretrain.seed and put
    # their spread in the interval, not average them into one replicate at seed 1.
    dirs = [write_run(tmp_path, f"none-p{p}", "none", 1, 100, pretrain_seed=p) for p in (1, 2)]
    dirs += [write_run(tmp_path, f"in_domain-p{p}", "in_domain", 1, 120 + 20 * (p - 1), pretrain_seed=p)
             for p in (1, 2)]
    summary = summarise([load_run_dir(d) for d in dirs], n_boot=2_000)
    assert summary["replicates"] == "pretrain.seed"
    e = summary["strategies"]["in_domain"]
    assert e["seeds"] == [1, 2] and e["vs_baseline"]["paired_seeds"] == [1, 2]
    pw = e["vs_baseline"]["power"]
    assert pw["paired_by"] == "seed" and pw["seed_term"] and pw["seeds"] == 2  # two replicates, paired
    assert pw["diff"] == pytest.approx(0.15)
    table = markdown(summary)
    assert "runs (pretrain.seed)" in table and "the paired replicates, `pretrain.seed`" in table
    # the usual grid (fine-tuning seeds vary) still pairs on the fine-tuning seed, whatever pretrain.seed is
    dirs += [write_run(tmp_path, f"in_domain-s2-p{p}", "in_domain", 2, 130, pretrain_seed=p) for p in (1, 2)]
    dirs += [write_run(tmp_path, "none-s2", "none", 2, 100)]
    summary = summarise([load_run_dir(d) for d in dirs], n_boot=2_000)
    assert summary["replicates"] == "seed"
    # a replicate (a fine-tuning seed) is then the mean of its in_domain runs over their two MLM seeds, and the
    # table says what that interval leaves out; none's runs at seed 1 differ in pretrain.seed too (no MLM)
    assert summary["strategies"]["in_domain"]["averaged_over"] == ["pretrain.seed"]
    assert "the mean of its runs over `pretrain.seed`: the interval counts the spread between replicates, not " \
           "the effects those runs share" in markdown(summary)
    assert "the mean of its runs over" not in table  # one run per replicate: nothing averaged


def test_compare_by_arm_compares_any_params_values_paired_by_seed(tmp_path, capsys):
    """--arm finetune.model --baseline flat: the prompt classifier against [CLS] fine-tuning, the runs of one
    strategy paired by fine-tuning seed as strategies are."""
    for s in (1, 2, 3):
        write_run(tmp_path, f"flat-seed{s}", "task", s, 150 + s, finetune__model="flat")
        write_run(tmp_path, f"prompt-seed{s}", "task", s, 170 + s, finetune__model="prompt")
    dirs = sorted(str(p) for p in tmp_path.iterdir())
    assert main(["--runs", *dirs, "--arm", "finetune.model", "--baseline", "flat", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "| `finetune.model` |" in out and "| `prompt` | 3 (1, 2, 3)" in out
    written = json.loads((tmp_path / "r" / "compare.json").read_text())
    vs = written["strategies"]["prompt"]["vs_baseline"]
    assert vs["paired_seeds"] == [1, 2, 3] and vs["accuracy"]["diff"] == pytest.approx(20 / N)
    # a baseline no run has: the values it could be
    assert main(["--runs", *dirs, "--arm", "finetune.model", "--out", str(tmp_path / "r")]) == 2
    assert "no run has `finetune.model` = `none`" in capsys.readouterr().err
