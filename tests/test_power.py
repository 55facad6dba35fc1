"""pipeline/variance.py: the seeds x test examples variance model, checked against simulated grids whose
true variance components are known; the planner's command (pipeline/power.py); and what compare shows with it."""

import glob
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.optimize import brentq
from test_compare import write_run

from pipeline import power, variance
from pipeline.compare import main as compare_main
from pipeline.report import markdown, power_warnings
from pipeline.runs import Run, load_run_dir
from pipeline.stats import headline, macro_f1_values, paired_bootstrap, summarise

# A generative model of a grid. Example types: (baseline's probability of being right: the latent
# difficulty, the strategy's own shift on that example: the example term, share of the test set).
TYPES = [(0.90, 0.0, 0.60), (0.65, -0.15, 0.125), (0.65, 0.15, 0.125), (0.35, -0.15, 0.075), (0.35, 0.15, 0.075)]
P_BASE, SHIFT, SHARE = map(np.array, zip(*TYPES))
SEED_STD = 0.01  # each run's global accuracy shift (1 point): the seed term


def true_components(delta: float) -> dict:
    """Exact components when strategy A is right with probability p_B + shift + delta (+ its seed shift)."""
    p_a = P_BASE + SHIFT + delta
    resid = SHARE @ (p_a * (1 - p_a) + P_BASE * (1 - P_BASE)) - 2 * SEED_STD ** 2  # E[(p+g)(1-p-g)] = p(1-p) - σ²
    return {"var_example": float(SHARE @ SHIFT ** 2 - (SHARE @ SHIFT) ** 2), "var_seed": 2 * SEED_STD ** 2,
            "var_resid": float(resid)}


def draw_grid(rng, n: int, seeds: int, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Correctness (seeds x examples) of strategy A and baseline B on one freshly drawn test set."""
    kind = rng.choice(len(SHARE), p=SHARE, size=n)
    p_b, p_a = P_BASE[kind], P_BASE[kind] + SHIFT[kind] + delta
    shift_a, shift_b = rng.normal(0, SEED_STD, (seeds, 1)), rng.normal(0, SEED_STD, (seeds, 1))
    return (rng.random((seeds, n)) < np.clip(p_a + shift_a, 0, 1),
            rng.random((seeds, n)) < np.clip(p_b + shift_b, 0, 1))


def as_runs(correct_a: np.ndarray, correct_b: np.ndarray, rng) -> list[Run]:
    """compare's Run objects for the two strategies: `task` (A) and `none` (B), seeds 1..S."""
    n = correct_a.shape[1]
    ids = [f"{i:06d}" for i in range(n)]
    labels = np.where(rng.random(n) < 0.5, "pos", "neg")
    flipped = np.where(labels == "pos", "neg", "pos")
    return [Run(f"{strategy}-seed{s + 1}", strategy, s + 1, 42,
                {"eval": {"accuracy": float(row.mean()), "macro_f1": 0.0}},
                pd.DataFrame({"id": ids, "label": labels, "pred": np.where(row, labels, flipped)}))
            for strategy, rows in (("task", correct_a), ("none", correct_b)) for s, row in enumerate(rows)]


def observed_power(n: int, seeds: int, delta: float, replicates: int, seed: int, through_compare: bool) -> float:
    """Share of simulated grids whose Δ accuracy interval, as compare computes it, excludes zero."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(replicates):
        a, b = draw_grid(rng, n, seeds, delta)
        if through_compare:
            pw = summarise(as_runs(a, b, rng), n_boot=2)["strategies"]["task"]["vs_baseline"]["power"]
        else:  # the two calls summarise makes (test_summarise_reports_the_power_interval)
            pw = variance.interval(variance.paired_diff(a, list(range(seeds)), b, list(range(seeds)))[0])
        rejected += pw["ci_low"] > 0 or pw["ci_high"] < 0
    return rejected / replicates


def predicted(n: int, seeds: int, delta: float, formula: str = "correct") -> float:
    comps = true_components(delta)
    if formula == "no_seed_term":
        comps = {**comps, "var_seed": 0.0}
    df = None if formula == "normal" else variance.planned_df(n, seeds, comps)
    return variance.power_at(delta, variance.planned_se(n, seeds, comps), 0.95, df)


# (test examples, seeds per strategy, planted power); the first goes through compare's summarise
CASES = [(1000, 3, 0.6), (1000, 3, 0.3), (1000, 3, 0.9), (4000, 5, 0.3), (4000, 5, 0.6), (4000, 5, 0.9)]
REPLICATES = 400


@pytest.fixture(scope="module")
def simulated():
    """Per case: the planted δ (predicted power as named) and the observed share of rejections."""
    rows = []
    for k, (n, seeds, target) in enumerate(CASES):
        delta = brentq(lambda d: predicted(n, seeds, d) - target, 1e-4, 0.3)
        rows.append((n, seeds, delta, observed_power(n, seeds, delta, REPLICATES if k else 200, 100 + k, k == 0)))
    return rows


def mismatch(rows, formula: str) -> float:
    return max(abs(obs - predicted(n, seeds, delta, formula)) for n, seeds, delta, obs in rows)


def test_simulated_grids_reject_as_often_as_the_power_formula_predicts(simulated):
    assert mismatch(simulated, "correct") <= 0.10, simulated


def test_the_check_fails_a_formula_without_the_seed_term(simulated):
    assert mismatch(simulated, "no_seed_term") > 0.10  # the bootstrap's view: test sampling only
    assert mismatch(simulated, "normal") > 0.10  # z instead of t: too few seeds to know the seed spread


def test_no_difference_is_rejected_at_the_nominal_rate():
    """At 3 seeds the SE rests on few degrees of freedom: the t interval keeps its 5% false positives,
    a normal interval with the same SE does not."""
    rng, t_rejects, z_rejects = np.random.default_rng(11), 0, 0
    for _ in range(400):
        a, b = draw_grid(rng, 1000, 3, 0.0)
        pw = variance.interval(a.astype(float) - b)
        t_rejects += pw["ci_low"] > 0 or pw["ci_high"] < 0
        z_rejects += abs(pw["diff"]) / pw["se"] > 1.959964
    assert t_rejects / 400 <= 0.09 and z_rejects / 400 >= 0.10, (t_rejects, z_rejects)


def test_anova_se_is_the_spread_of_the_estimate():
    """Large Monte Carlo of the generative model: the SD of Δ̂ over grids, the SE formula with the true
    components, and the SE estimated from each grid agree; the components are estimated without bias."""
    rng, n, seeds, delta = np.random.default_rng(7), 400, 4, 0.02
    found = [variance.paired_components(np.subtract(*draw_grid(rng, n, seeds, delta), dtype=float))
             for _ in range(3000)]
    spread = np.std([f["diff"] for f in found], ddof=1)
    truth = true_components(delta)
    assert variance.planned_se(n, seeds, truth) == pytest.approx(spread, rel=0.05)
    assert np.mean([f["se"] ** 2 for f in found]) == pytest.approx(spread ** 2, rel=0.10)  # SE² is unbiased
    assert np.mean([f["diff"] for f in found]) == pytest.approx(delta, abs=0.002)
    for key in ("var_resid", "var_example"):  # (σ²_seed is clipped at 0 whenever its noisy estimate is negative)
        assert np.mean([f[key] for f in found]) == pytest.approx(truth[key], rel=0.10), key
    test_only = variance.planned_se(n, seeds, {**truth, "var_seed": 0.0})  # test sampling alone misses the seeds
    assert np.mean([f["se_test"] ** 2 for f in found]) == pytest.approx(test_only ** 2, rel=0.05)
    assert test_only < 0.9 * spread


def test_one_seed_has_no_seed_term():
    d = np.zeros((1, 1000))
    d[0, :100], d[0, 100:130] = 1, -1  # 10% better, 3% worse
    comp = variance.paired_components(d)
    var = (0.13 - 0.07 ** 2) * 1000 / 999  # sample variance of the -1/0/1 differences
    assert not comp["seed_term"] and comp["seed_std"] is None and comp["df"] == 999
    assert comp["se"] == pytest.approx(math.sqrt(var / 1000)) and comp["se_test"] == comp["se"]
    assert comp["disagreement"] == pytest.approx(0.13)


@pytest.mark.parametrize("df", [None, 2.5, 30.0])
def test_mde_and_power_agree(df):
    se = 0.004
    assert variance.power_at(variance.mde(se, df=df), se, df=df) == pytest.approx(0.8, abs=1e-6)
    assert variance.power_at(0.0, se, df=df) == pytest.approx(0.05, abs=1e-9)
    assert variance.mde(se, 0.95, 0.9, df) > variance.mde(se, df=df) > variance.mde(se, 0.9, 0.8, df)
    assert variance.mde(se) == pytest.approx((1.959964 + 0.841621) * se, rel=1e-6)  # the normal formula
    assert variance.mde(se, df=1e7) == pytest.approx(variance.mde(se), rel=1e-4)


def test_planning_solves_the_formula():
    comps = variance.components_from_rates()
    assert comps == {"var_example": variance.DEFAULT_DISAGREEMENT, "var_seed": 2 * variance.DEFAULT_SEED_STD ** 2,
                     "var_resid": 0.0}
    n = variance.needed_test_size(0.03, 5, comps)
    assert variance.planned_mde(n, 5, comps) <= 0.03 < variance.planned_mde(n - 1, 5, comps)
    seeds = variance.needed_seeds(0.02, 20_000, comps)
    assert variance.planned_mde(20_000, seeds, comps) <= 0.02 < variance.planned_mde(20_000, seeds - 1, comps)
    assert variance.needed_test_size(0.01, 3, comps) is None  # the seed term alone is too large at 3 seeds
    assert variance.needed_seeds(0.01, 1000, comps) is None  # the example term alone is too large on 1000 examples


def test_summarise_reports_the_power_interval():
    """What compare computes is interval(paired_diff(...)) on the seeds both strategies have."""
    rng = np.random.default_rng(3)
    a, b = draw_grid(rng, 500, 3, 0.03)
    runs = as_runs(a, b, rng)
    vs = summarise(runs, n_boot=200)["strategies"]["task"]["vs_baseline"]
    want = variance.interval(a.astype(float) - b)
    assert {k: vs["power"][k] for k in want} == want and vs["power"]["paired_by"] == "seed"
    # no seed in common: runs paired in seed order, and said so
    for run in runs[3:]:
        run.seed += 10
    summary = summarise(runs, n_boot=200)
    assert summary["strategies"]["task"]["vs_baseline"]["power"]["paired_by"] == "order"
    assert any("no fine-tuning seed in common" in line for line in power_warnings(summary))


def test_cli_prints_the_mde_of_a_planned_grid():
    out = subprocess.run([sys.executable, "-m", "pipeline.power", "--test", "5000", "--seeds", "3"],
                         capture_output=True, text=True, check=True).stdout
    want = variance.planned_mde(5000, 3, variance.components_from_rates())
    assert "5,000 test examples x 3 seeds per strategy" in out and f"MDE {want * 100:.2f} points" in out
    assert "the defaults" in out


def test_cli_plans_for_a_target(capsys):
    assert power.main(["--test", "20000", "--seeds", "20", "--target-mde", "0.01"]) == 0
    out = capsys.readouterr().out
    comps = variance.components_from_rates()
    assert f"at 20 seeds: {variance.needed_test_size(0.01, 20, comps):,} test examples" in out
    assert f"on 20,000 test examples: {variance.needed_seeds(0.01, 20_000, comps)} seeds per strategy" in out
    assert power.main(["--test", "1000", "--seeds", "3", "--target-mde", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "at 3 seeds: no test size reaches it" in out and "add seeds" in out
    assert "on 1,000 test examples: no seed count reaches it: the example term" in out and "e.g. " in out


@pytest.mark.parametrize("argv, flag", [
    (["--test", "0", "--seeds", "3"], "--test"),
    (["--test", "5000", "--seeds", "three"], "--seeds"),
    (["--test", "5000", "--seeds", "3", "--target-mde", "1"], "--target-mde"),
    (["--test", "5000", "--seeds", "3", "--seed-std", "0.8"], "--seed-std"),
    (["--test", "5000", "--seeds", "3", "--disagreement", "0.1", "--from-runs", "x"], "--disagreement")])
def test_cli_bad_input_names_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        power.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("[power] error:") and flag in err and "Traceback" not in err


def test_cli_bad_run_folder_exits_2_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline.power", "--test", "5000", "--seeds", "3",
                             "--from-runs", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("[power] error:")
    assert "params.yaml" in result.stderr and "Traceback" not in result.stderr


def small_grid(root):
    """test_compare's grid: none right on 160, 164, 168 of 200 (seeds 1-3), task on 180."""
    return ([write_run(root, f"none-seed{s}", "none", s, 160 + 4 * (s - 1)) for s in (1, 2, 3)]
            + [write_run(root, f"task-seed{s}", "task", s, 180) for s in (1, 2, 3)])


def test_cli_from_runs_uses_measured_components(tmp_path, capsys):
    dirs = small_grid(tmp_path)
    assert power.main(["--test", "5000", "--seeds", "5", "--from-runs", *map(str, dirs)]) == 0
    out = capsys.readouterr().out
    comps = summarise([load_run_dir(d) for d in dirs], n_boot=2)["strategies"]["task"]["vs_baseline"]["power"][
        "components"]
    assert "measured on 1 comparison(s) with `none` (task; up to 3 paired seeds, 200 test examples)" in out
    assert f"σ²_example {comps['var_example']:.4g}, σ²_seed {comps['var_seed']:.4g}" in out
    assert f"MDE {variance.planned_mde(5000, 5, comps) * 100:.2f} points" in out
    with pytest.raises(SystemExit):  # the runs measured the seed spread: a stated one is refused
        power.main(["--test", "5000", "--seeds", "5", "--seed-std", "0.01", "--from-runs", *map(str, dirs)])
    assert "--seed-std" in capsys.readouterr().err


def test_cli_from_exps_reads_the_dvc_experiments(tmp_path, monkeypatch, capsys):
    runs = [load_run_dir(d) for d in small_grid(tmp_path)]
    asked = []
    monkeypatch.setattr("pipeline.power.dvc_experiments", lambda repo, names: asked.append((repo, names)) or runs)
    assert power.main(["--test", "5000", "--seeds", "5", "--from-exps", "--repo", "elsewhere"]) == 0
    assert asked == [("elsewhere", [])] and "measured on 1 comparison(s)" in capsys.readouterr().out


def write_grid(root, correct: dict) -> list:
    """Run folders from {(strategy, seed): correctness vector} on one test set (labels all `pos`)."""
    dirs = []
    for (strategy, seed), right in correct.items():
        run = root / f"{strategy}-seed{seed}"
        (run / "metrics").mkdir(parents=True)
        (run / "outputs").mkdir()
        rows = ["id,label,pred"] + [f"{i},pos,{'pos' if r else 'neg'}" for i, r in enumerate(right)]
        (run / "outputs/predictions.csv").write_text("\n".join(rows) + "\n")
        (run / "metrics/eval.json").write_text(json.dumps({"accuracy": float(np.mean(right)), "macro_f1": 0.5}))
        (run / "metrics/pretrain.json").write_text(json.dumps({"perplexity_before": 9.0, "perplexity_after": 8.0}))
        (run / "params.yaml").write_text(yaml.safe_dump({"seed": seed, "pretrain": {"source": strategy}}))
        dirs.append(str(run))
    return dirs


def test_compare_shows_the_mde_and_warns_on_a_small_grid(tmp_path, capsys):
    dirs = small_grid(tmp_path)
    assert compare_main(["--runs", *map(str, dirs), "--out", str(tmp_path / "r"), "--bootstrap", "200"]) == 0
    captured = capsys.readouterr()
    assert "| MDE (80% power) |" in captured.out
    mde = summarise([load_run_dir(d) for d in dirs], n_boot=2)["strategies"]["task"]["vs_baseline"]["power"]["mde"]
    assert (f"[compare] warning: task vs none: this grid can only detect differences of {mde * 100:.1f} points or "
            f"more (80% power)") in captured.err
    plan = captured.err.split("python -m pipeline.power ")[1].split()
    assert plan[:7] == ["--test", "200", "--seeds", "3", "--target-mde", "0.01", "--from-runs"]
    assert len(plan) == 8 and sorted(glob.glob(plan[7])) == sorted(map(str, dirs))  # the grid's runs, as one glob
    assert power.main([*plan[:7], *glob.glob(plan[7])]) == 0  # the plan runs as a shell expands it
    assert (tmp_path / "r/compare.csv").read_text().splitlines()[0].split(",")[5:9] == [
        "delta_accuracy", "ci_low", "ci_high", "mde"]


def test_compare_does_not_warn_on_a_large_grid(tmp_path, capsys):
    rng, n = np.random.default_rng(5), 20_000
    base = rng.random(n) < 0.85
    correct = {("none", s): base ^ (rng.random(n) < 0.01) for s in (1, 2, 3)}  # 1% churn between seeds
    correct |= {("task", s): (base | (rng.random(n) < 0.02)) ^ (rng.random(n) < 0.01) for s in (1, 2, 3)}
    dirs = write_grid(tmp_path, correct)
    assert compare_main(["--runs", *dirs, "--out", str(tmp_path / "r"), "--bootstrap", "200"]) == 0
    captured = capsys.readouterr()
    summary = json.loads((tmp_path / "r/compare.json").read_text())
    pw = summary["strategies"]["task"]["vs_baseline"]["power"]
    assert pw["seed_term"] and pw["mde"] < 0.01 and "[compare] warning" not in captured.err
    assert f"| {pw['mde'] * 100:.2f} |" in markdown(summary)


def test_macro_f1_values_average_to_each_runs_macro_f1():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 400)
    preds = np.stack([np.where(rng.random(400) < p, labels, rng.integers(0, 3, 400)) for p in (0.9, 0.5)]
                     + [np.where(labels == 2, 0, labels)])  # the last run never predicts class 2
    values = macro_f1_values(labels, preds, 3)
    assert values.shape == (3, 400)
    for row, pred in zip(values, preds):
        assert row.mean() == pytest.approx(f1_score(labels, pred, average="macro", labels=range(3),
                                                    zero_division=0), abs=1e-12)


def test_macro_f1_interval_has_the_seed_term():
    """Macro-F1 through its linearisation gets the seeds x examples interval: with one seed its SE is the
    bootstrap's, and on simulated grids with no true difference but a seed spread it rejects at about the
    nominal rate, where the interval from test sampling alone (the paired bootstrap's view) does not."""
    rng = np.random.default_rng(5)
    labels = (rng.random(2000) < 0.5).astype(int)
    a, b = draw_grid(rng, 2000, 1, 0.02)
    pa, pb = np.where(a, labels, 1 - labels), np.where(b, labels, 1 - labels)
    boot = paired_bootstrap(labels, pa, pb, k=2, n_boot=4000)["macro_f1"]
    iv = variance.interval(macro_f1_values(labels, pa, 2) - macro_f1_values(labels, pb, 2))
    assert iv["ci_high"] - iv["ci_low"] == pytest.approx(boot["ci_high"] - boot["ci_low"], rel=0.1)
    with_seeds = test_only = 0
    for _ in range(300):
        a, b = draw_grid(rng, 4000, 3, 0.0)
        labels = (rng.random(4000) < 0.5).astype(int)
        d = (macro_f1_values(labels, np.where(a, labels, 1 - labels), 2)
             - macro_f1_values(labels, np.where(b, labels, 1 - labels), 2))
        iv, comp = variance.interval(d), variance.paired_components(d)
        with_seeds += iv["ci_low"] > 0 or iv["ci_high"] < 0
        test_only += abs(comp["diff"]) / comp["se_test"] > 1.959964
    assert with_seeds / 300 <= 0.09 and test_only / 300 >= 0.2, (with_seeds, test_only)


def test_compare_shows_the_macro_f1_interval_over_seeds():
    rng = np.random.default_rng(6)
    a, b = draw_grid(rng, 800, 3, 0.03)
    runs = as_runs(a, b, rng)
    vs = summarise(runs, n_boot=200)["strategies"]["task"]["vs_baseline"]
    labels = np.array([0 if x == "neg" else 1 for x in runs[0].predictions["label"]])
    f1 = macro_f1_values(labels, np.array([[0 if x == "neg" else 1 for x in r.predictions["pred"]] for r in runs]), 2)
    want = variance.interval(f1[:3] - f1[3:])
    assert {k: vs["power_macro_f1"][k] for k in ("diff", "ci_low", "ci_high")} == \
        {k: want[k] for k in ("diff", "ci_low", "ci_high")}
    assert headline(vs, "macro_f1") is vs["power_macro_f1"]
    table = markdown(summarise(runs, n_boot=200))
    assert f"| {want['diff'] * 100:+.2f} [{want['ci_low'] * 100:+.2f}, {want['ci_high'] * 100:+.2f}] |" in table


def labelled_grid(root, n_labels: int, spread: float, seeds=(1, 2, 3), n=2000, rng_seed=0) -> list:
    """`none` and `task` run folders at `n_labels` labels (task.demo.train): seed s shifts a run's accuracy by
    (s - 2)·spread, so the seed spread differs with the label count as it does on IMDB (3.15 points at 100
    labels, 0.8 at 1,000)."""
    rng = np.random.default_rng(rng_seed)
    correct = {(strategy, s): rng.random(n) < p + (s - 2) * spread * (1 if strategy == "none" else -0.5)
               for strategy, p in (("none", 0.70), ("task", 0.73)) for s in seeds}
    dirs = write_grid(root / f"labels{n_labels}", correct)
    for d in dirs:
        params = yaml.safe_load(Path(d, "params.yaml").read_text())
        params["task"] = {"demo": {"train": n_labels}}
        Path(d, "params.yaml").write_text(yaml.safe_dump(params))
    return dirs


def test_cli_plans_from_the_runs_at_the_asked_label_count(tmp_path, capsys):
    dirs = labelled_grid(tmp_path, 100, 0.03) + labelled_grid(tmp_path, 1000, 0.005, rng_seed=1)
    mdes = {}
    for n_labels in (100, 1000):
        assert power.main(["--test", "5000", "--seeds", "3", "--labels", str(n_labels), "--from-runs", *dirs]) == 0
        out = capsys.readouterr().out
        at = [load_run_dir(d) for d in dirs if f"labels{n_labels}/" in d]
        comps = summarise(at, n_boot=2)["strategies"]["task"]["vs_baseline"]["power"]["components"]
        assert f"measured on 1 comparison(s) with `none` (task; {n_labels:,} labels, up to 3 paired seeds" in out
        assert f"σ²_example {comps['var_example']:.4g}, σ²_seed {comps['var_seed']:.4g}" in out
        assert "fallback" not in out
        mdes[n_labels] = variance.planned_mde(5000, 3, comps)
        assert f"MDE {mdes[n_labels] * 100:.2f} points" in out
    assert mdes[100] > 2 * mdes[1000]  # the larger seed spread at 100 labels


@pytest.mark.parametrize("extra, words", [
    ([], ["different label counts", "100, 1000", "--labels N"]),
    (["--labels", "300"], ["no run at 300 labels", "100, 1000", "--from-exps"])])
def test_cli_refuses_runs_at_other_label_counts(tmp_path, capsys, extra, words):
    dirs = labelled_grid(tmp_path, 100, 0.03) + labelled_grid(tmp_path, 1000, 0.005, rng_seed=1)
    assert power.main(["--test", "5000", "--seeds", "3", *extra, "--from-runs", *dirs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("[power] error:") and all(w in err for w in words), err


def test_cli_says_when_it_falls_back_to_defaults_measured_elsewhere(capsys):
    assert power.main(["--test", "5000", "--seeds", "3", "--labels", "100"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "fallback" in x]
    assert "(100 labels, 5,000 test examples)" in line
    assert "seed std 0.80 points at 1,000 labels on 1,000 test reviews" in line
    assert "disagreement 0.09 at 1,000 labels on 5,000 test reviews" in line
    assert "3.15 points at 100 labels" in line and "--from-exps NAME ... (or --from-runs DIR ...) --labels 100" in line
    # a stated seed spread: only the disagreement is a default from elsewhere
    assert power.main(["--test", "5000", "--seeds", "3", "--seed-std", "0.03"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "fallback" in x]
    assert "disagreement 0.09 at 1,000 labels" in line and "seed std 0.80" not in line and "--labels N" in line
    # both stated: nothing measured elsewhere, no fallback line
    assert power.main(["--test", "5000", "--seeds", "3", "--seed-std", "0.03", "--disagreement", "0.1"]) == 0
    assert "fallback" not in capsys.readouterr().out


def test_cli_one_seed_runs_fall_back_for_the_seed_spread(tmp_path, capsys):
    dirs = labelled_grid(tmp_path, 100, 0.03, seeds=(1,))
    assert power.main(["--test", "5000", "--seeds", "3", "--labels", "100", "--from-runs", *dirs]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "fallback" in x]
    assert line.startswith("[power] fallback: the runs measured one seed") and "seed std 0.80 points" in line
    assert "disagreement" not in line and "runs with several seeds at it" in line
