"""Run records (pipeline.records): a finished run kept as one small JSON file reads back as the same run, for
every reader that takes run folders; a damaged or half-copied record is refused with the file and the field."""

import json

import pytest
from test_compare import N, _commit_exp, _exp_repo, write_run

from pipeline.config import ConfigError
from pipeline.records import export, load_record, main
from pipeline.runs import load_run_dir
from pipeline.stats import summarise


def _same_run(a, b):
    assert (a.name, a.strategy, a.seed, a.pretrain_seed) == (b.name, b.strategy, b.seed, b.pretrain_seed)
    assert a.params == b.params and a.metrics == b.metrics and a.mlm_model == b.mlm_model
    pa, pb = (r.predictions.sort_values("id").reset_index(drop=True) for r in (a, b))
    assert pa.equals(pb)


def test_a_record_reads_back_as_the_run_and_compares_the_same(tmp_path):
    folders = [write_run(tmp_path / "runs", f"none-seed{s}", "none", s, 150 + s) for s in (1, 2)]
    folders += [write_run(tmp_path / "runs", f"task-seed{s}", "task", s, 170 - 3 * s, ppl=(100.0, 40.0 + s),
                          pretrain_seed=s) for s in (1, 2)]
    runs = [load_run_dir(d) for d in folders]
    out = tmp_path / "records"
    assert export(runs, out) == {"written": [r.name for r in runs], "unchanged": []}
    # one test set file shared by the four records; a record is small (one character per test example)
    assert len(list(out.glob("test-*.csv"))) == 1
    assert all((out / f"{r.name}.json").stat().st_size < 2_000 + N for r in runs)
    back = [load_run_dir(out / f"{r.name}.json") for r in runs]
    for a, b in zip(runs, back):
        _same_run(a, b)
    assert json.dumps(summarise(back, n_boot=500, seed=3), sort_keys=True, default=str) == \
        json.dumps(summarise(runs, n_boot=500, seed=3), sort_keys=True, default=str)
    # exported again: nothing rewritten; a run of the same name with other results is refused, not overwritten
    assert export(runs, out) == {"written": [], "unchanged": [r.name for r in runs]}
    other = load_run_dir(write_run(tmp_path / "again", "none-seed1", "none", 1, 100))
    with pytest.raises(ConfigError, match=r"none-seed1\.json: a record of `none-seed1` exists.*delete the file"):
        export([other], out)
    assert load_record(out / "none-seed1.json").accuracy == runs[0].accuracy


@pytest.mark.parametrize("damage, message", [
    (lambda rec, out: (out / rec["test_set"]).unlink(), r"test set `test-\w+\.csv` \(field `test_set`\) is not beside"),
    (lambda rec, out: rec.update(pred=rec["pred"][:-1]), r"field `pred` holds 199 predictions for the 200 examples"),
    (lambda rec, out: rec.update(pred="7" + rec["pred"][1:]), r"or a class outside `classes`"),
    (lambda rec, out: rec.update(format="something else"), r"field `format` is not"),
    (lambda rec, out: rec.pop("metrics"), r"fields \['metrics'\] are missing"),
])
def test_a_damaged_record_is_refused_naming_the_file_and_field(tmp_path, damage, message):
    out = tmp_path / "records"
    export([load_run_dir(write_run(tmp_path / "runs", "none-seed1", "none", 1, 150))], out)
    path = out / "none-seed1.json"
    record = json.loads(path.read_text())
    damage(record, out)
    path.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=rf"none-seed1\.json: .*{message}"):
        load_run_dir(path)
    path.write_text('{"format": ')  # a half-copied file
    with pytest.raises(ConfigError, match=r"none-seed1\.json: not a run record"):
        load_run_dir(path)


def test_the_cli_exports_a_dvc_projects_finished_experiments_with_their_commits(tmp_path, capsys):
    repo = _exp_repo(tmp_path)
    runs_dir = tmp_path / "runs"
    shas = {name: _commit_exp(repo, write_run(runs_dir, name, strategy, 1, correct), name, "2026-01-02T00:00:00")
            for name, strategy, correct in (("g-none-seed1", "none", 150), ("g-task-seed1", "task", 160),
                                            ("other-none-seed1", "none", 140))}
    out = tmp_path / "records"
    assert main(["--repo", str(repo), "--prefix", "g-", "--out", str(out)]) == 0
    assert "2 written, 0 unchanged" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.json")) == ["g-none-seed1.json", "g-task-seed1.json"]
    rec = load_record(out / "g-task-seed1.json")
    assert rec.commit == shas["g-task-seed1"] and rec.accuracy == 160 / N and rec.strategy == "task"
    _same_run(rec, load_run_dir(runs_dir / "g-task-seed1"))
    assert main(["--repo", str(repo), "--exps", "g-none-seed1", "--out", str(out)]) == 0
    assert "0 written, 1 unchanged" in capsys.readouterr().out
    assert main(["--repo", str(repo), "--exps", "nope", "--out", str(out)]) == 2
    assert "no finished experiment named nope" in capsys.readouterr().err
