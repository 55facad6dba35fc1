"""pipeline.holm: Holm's correction over primaries read from compare's reports."""

import json

import pytest

from pipeline.compare import main as compare
from pipeline.config import ConfigError
from pipeline.holm import holm, main, parse_spec
from test_compare import N, write_run


def test_holm_adjusts_step_down_in_input_order():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> made non-decreasing: 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02]  # one comparison: no correction


def test_spec_errors_name_the_form():
    assert parse_spec("P1=r.json:32:prompt") == ("P1", parse_spec("P1=r.json:x")[1], "32", "prompt")
    for bad in ("r.json:32:prompt", "P1=r.json", "P1=r.json::prompt", "P1=a:b:c:d"):
        with pytest.raises(ConfigError, match="NAME=REPORT"):
            parse_spec(bad)


@pytest.fixture
def reports(tmp_path):
    """Two compare reports by label count: prompt vs flat (prompt +10 points at 32, 0 at 100) and, among
    prompt runs, task vs none (+2 points at 32)."""
    runs = tmp_path / "runs"
    for s in (1, 2, 3):
        for labels, flat, prompt in ((32, 150, 170), (100, 160, 160)):
            write_run(runs, f"flat-{labels}-seed{s}", "none", s, flat + s, finetune__model="flat",
                      task__demo_train=labels)
            write_run(runs, f"prompt-{labels}-seed{s}", "none", s, prompt + s, finetune__model="prompt",
                      task__demo_train=labels)
            write_run(runs, f"prompt-task-{labels}-seed{s}", "task", s, prompt + 4 + s, finetune__model="prompt",
                      task__demo_train=labels)
    flat_vs = [str(p) for p in runs.iterdir() if "task" not in p.name]
    mlm = [str(p) for p in runs.iterdir() if p.name.startswith("prompt")]
    by = ["--by", "task.demo_train"]
    assert compare(["--runs", *flat_vs, "--arm", "finetune.model", "--baseline", "flat", *by,
                    "--out", str(tmp_path / "arm")]) == 0
    assert compare(["--runs", *mlm, *by, "--out", str(tmp_path / "mlm")]) == 0
    return tmp_path / "arm" / "compare-by-task.demo_train.json", tmp_path / "mlm" / "compare-by-task.demo_train.json"


def test_holm_reads_each_primary_from_its_report_and_decides(reports, tmp_path, capsys):
    arm, mlm = reports
    out = tmp_path / "holm.json"
    assert main([f"P1={arm}:32:prompt", f"P2={mlm}:32:task", f"P3={arm}:100:prompt", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["comparisons"]
    read = [json.loads(p.read_text())["groups"][g]["strategies"][s]["vs_baseline"]["power"]
            for p, g, s in ((arm, "32", "prompt"), (mlm, "32", "task"), (arm, "100", "prompt"))]
    assert [r["diff"] for r in rows] == pytest.approx([20 / N, 4 / N, 0])
    assert [r["p_value"] for r in rows] == [p["p_value"] for p in read]
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([p["p_value"] for p in read]))
    for r in rows:  # confirmed: adjusted p below alpha and the interval clear of zero
        assert r["confirmed"] == (r["p_holm"] < 0.05 and (r["ci_low"] > 0 or r["ci_high"] < 0))
    assert rows[0]["confirmed"] and not rows[2]["confirmed"]
    assert [r["direction"] for r in rows] == ["+", "+", "0"]
    printed = capsys.readouterr().out
    assert "| P1: prompt − flat @ 32 | +10.00" in printed and printed.count("| yes (+) |") == 2


def test_holm_errors_name_the_report_and_what_it_has(reports, capsys):
    arm, mlm = reports
    cases = {f"P1={arm}:prompt": "made with --by", f"P1={arm}:64:prompt": "no group `64`",
             f"P1={arm}:32:cls": "no strategy `cls`", f"P1={arm}:32:flat": "is the baseline",
             f"P1={arm}.missing:32:prompt": "no such compare report"}
    for spec, message in cases.items():
        assert main([spec]) == 2
        assert message in capsys.readouterr().err
    assert main([f"P1={arm}:32:prompt", f"P1={mlm}:32:task"]) == 2
    assert "names repeat" in capsys.readouterr().err
