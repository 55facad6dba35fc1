"""Reliability round four (issue 42): bad task files, corpus folders and faults that lost or leaked data with
exit 0, hung, or ended in a traceback or an unclear message. Each ends here in a clear error (the file and
the field, key or line named, the fix said) or a counted drop."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures import make_project, set_params, write_jsonl
from pipeline.config import ConfigError, from_dict, load_params, load_yaml
from pipeline.corpus_spec import check_sources, load_source, local_source_files
from pipeline.data import prepare_task


def task_params(task_dir, **task):
    return from_dict({"task": {"dataset": str(task_dir), "demo": {"enabled": False}, **task}})


def csv_task(task_dir, body: str, split: str = "train") -> None:
    (task_dir / f"{split}.jsonl").unlink()
    (task_dir / f"{split}.csv").write_text(body, encoding="utf-8")


def good_csv_rows(n=30):
    return "".join(f"film number {i} was {'great' if i % 2 else 'awful'},{i % 2}\n" for i in range(n))


# --- silent before (exit 0, wrong data) ------------------------------------------------------------------------

def test_a_csv_row_with_an_unquoted_comma_is_refused_naming_its_line(task_dir, tmp_path):
    csv_task(task_dir, "text,label\n" + good_csv_rows(5) + "great cast, weak plot,1\n" + good_csv_rows(20))
    with pytest.raises(ConfigError, match=r"train.csv: line 7 has 3 fields, but the header names 2 \('text', "
                                          r"'label'\): a text with an unquoted comma\?.*Quote every field"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_the_first_row_alone_with_an_unquoted_comma_is_named_not_a_single_class(task_dir, tmp_path):
    csv_task(task_dir, "text,label\ngreat cast, weak plot,1\n" + good_csv_rows(20))
    with pytest.raises(ConfigError, match=r"train.csv: line 2 has 3 fields"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_a_stray_quote_that_swallows_records_is_named(task_dir, tmp_path):
    csv_task(task_dir, "text,label\n" + good_csv_rows(4) + '"a stray quote,1\n' + good_csv_rows(10)
             + 'ends "here,0\n' + good_csv_rows(10))
    with pytest.raises(ConfigError, match=r"train.csv: the quote opened on line 6 closes only on line 17.*look "
                                          r"like records of their own"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_a_quoted_text_over_several_lines_is_still_one_record(task_dir, tmp_path):
    csv_task(task_dir, "text,label\n" + '"first line\nsecond line, with a comma",1\n' + good_csv_rows(29))
    stats = prepare_task(task_params(task_dir).task, tmp_path / "out")
    assert stats["records_read"]["train"] == 30


def test_a_one_column_corpus_csv_with_an_unquoted_comma_is_refused(tmp_path):
    (tmp_path / "docs.csv").write_text("text\na review, with a comma\nanother review\n")
    src = {"path": str(tmp_path / "docs.csv"), "text_field": "text", "name": "docs", "where": "in_domain.yaml: sources[0]"}
    with pytest.raises(ConfigError, match=r"docs.csv: line 2 has 2 fields, but the header names 1"):
        load_source(src, tmp_path)


def test_a_number_label_written_two_ways_is_one_class_spelled_twice(task_dir, tmp_path):
    write_jsonl(task_dir / "train.jsonl", [{"text": f"film {i}", "label": ["1", "0", "1.0", "0.0"][i % 4]}
                                           for i in range(40)])
    with pytest.raises(ConfigError, match=r"spells one class in 2 ways \('0', '0.0'\)|spells one class in 2 ways "
                                          r"\('1', '1.0'\)"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


@pytest.mark.parametrize("invisible", ["\u200e\u200f", "\u2800\u2800\u2800", "\u3164 \u3164", "\u115f\u1160",
                                       "\ufe0f\u034f", "\u2028\u00a0"],
                         ids=["direction-marks", "braille-blank", "hangul-filler", "hangul-jamo-fillers",
                              "selectors", "separators"])
def test_texts_with_no_visible_character_are_dropped_and_counted(task_dir, tmp_path, invisible):
    rows = [{"text": f"film number {i} was {'great' if i % 2 else 'awful'}", "label": i % 2} for i in range(30)]
    rows[3]["text"] = invisible
    write_jsonl(task_dir / "train.jsonl", rows)
    stats = prepare_task(task_params(task_dir).task, tmp_path / "out")
    assert stats["dropped_blank_text"]["train"] == 1


@pytest.mark.parametrize("how", ["path", "link", "copy", "dotdot"])
def test_the_tasks_own_train_file_as_a_corpus_source_is_refused(task_dir, tmp_path, how):
    train = task_dir / "train.jsonl"
    if how == "link":
        (tmp_path / "reviews.jsonl").symlink_to(train)
        path = tmp_path / "reviews.jsonl"
    elif how == "copy":
        (tmp_path / "more").mkdir()
        (tmp_path / "more" / "reviews.jsonl").write_bytes(train.read_bytes())
        path = tmp_path / "more"
    elif how == "dotdot":
        path = task_dir / ".." / task_dir.name / "train.jsonl"
    else:
        path = train
    spec = {"path": "corpora/in_domain.yaml",
            "sources": [{"path": str(path), "name": "reviews", "where": "corpora/in_domain.yaml: sources[0]"}]}
    with pytest.raises(ConfigError, match=r"which is the task's `train` file .* by (path|content): the task's own "
                                          r"text enters an MLM corpus only as `task:train` in task.yaml"):
        check_sources(spec, task_params(task_dir).task, "in_domain")


def test_the_tasks_hub_train_split_outside_task_yaml_is_refused(monkeypatch):
    import pipeline.corpus_spec

    monkeypatch.setattr(pipeline.corpus_spec, "is_local_path", lambda path: False)
    task = from_dict({"task": {"dataset": "stanfordnlp/imdb"}}).task
    spec = {"path": "corpora/in_domain.yaml", "sources": [{"path": "stanfordnlp/imdb", "split": "train",
                                                           "name": "imdb", "where": "in_domain.yaml: sources[0]"}]}
    with pytest.raises(ConfigError, match=r"is the task's train split"):
        check_sources(spec, task, "in_domain")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A fixture project after prepare and collect (in_domain), for the stale-upstream checks."""
    project = make_project(tmp_path_factory.mktemp("four"), **{"pretrain.source": "in_domain",
                                                               "train.checkpoint_steps": 0, "finetune.epochs": 1})
    for name in ("prepare", "collect"):
        done = stage(project, name)
        assert done.returncode == 0, done.stderr[-3000:]
    return project


def stage(project, name):
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("change, name, fix", [
    ({"task.seed": 7}, "collect", "re-run `prepare`"),
    ({"task.seed": 7}, "finetune", "re-run `prepare`"),
    ({"task.dev_size": 0.3}, "evaluate", "re-run `prepare`"),
    ({"pretrain.seed": 3}, "pretrain", "re-run `collect`"),
    ({"collect.min_chars": 40}, "pretrain", "re-run `collect`"),
])
def test_a_stage_run_on_data_made_from_other_params_names_the_stage_to_rerun(prepared, change, name, fix):
    original = (prepared / "params.yaml").read_text()
    try:
        set_params(prepared, **change)
        done = stage(prepared, name)
    finally:
        (prepared / "params.yaml").write_text(original)
    assert done.returncode == 2, done.stderr[-2000:]
    key = next(iter(change))
    assert "was made from other params than params.yaml's now" in done.stderr and key.split(".")[-1] in done.stderr
    assert fix in done.stderr and "Traceback" not in done.stderr


def test_the_recorded_params_leave_out_how_collect_runs(prepared):
    """collect.num_proc and the executor do not change the corpus: changing them is no reason to re-collect."""
    from pipeline.lineage import check_lineage

    original = (prepared / "params.yaml").read_text()
    cwd = os.getcwd()
    try:
        set_params(prepared, **{"collect.num_proc": 2})
        os.chdir(prepared)
        check_lineage(load_params("params.yaml"), "corpus")  # no error
    finally:
        os.chdir(cwd)
        (prepared / "params.yaml").write_text(original)


# --- a hang before ---------------------------------------------------------------------------------------------

def test_a_named_pipe_in_a_source_folder_is_refused_without_hanging(tmp_path):
    folder = tmp_path / "reviews"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"text": "a review of a film"}])
    os.mkfifo(folder / "b.jsonl")
    with pytest.raises(ConfigError, match=r"b.jsonl` is a named pipe \(FIFO\), not a regular file"):
        local_source_files(str(folder), "in_domain.yaml: sources[0]")


def test_the_inputs_stage_does_not_hang_on_a_named_pipe(prepared):
    corpora = prepared / "corpora"
    spec = yaml.safe_load((corpora / "in_domain.yaml").read_text())
    folder = Path(spec["sources"][0]["path"]).parent / "piped"
    folder.mkdir(exist_ok=True)
    if not (folder / "x.jsonl").exists():
        os.mkfifo(folder / "x.jsonl")
    original = (corpora / "in_domain.yaml").read_text()
    try:
        spec["sources"].append({"name": "piped", "path": str(folder), "weight": 1.0})
        (corpora / "in_domain.yaml").write_text(yaml.safe_dump(spec))
        done = stage(prepared, "inputs")  # timeout=600 in `stage`: a hang fails the test
    finally:
        (corpora / "in_domain.yaml").write_text(original)
    assert done.returncode == 2 and "named pipe" in done.stderr, done.stderr[-2000:]


# --- tracebacks before -----------------------------------------------------------------------------------------

def test_a_source_folder_mixing_csv_and_jsonl_reads_as_one(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.csv").write_text("text\nthe first review\nthe second review\n")
    write_jsonl(folder / "b.jsonl", [{"text": "a third review"}])
    ds = load_source({"path": str(folder), "text_field": "text", "name": "mixed", "where": "w"}, tmp_path)
    assert sorted(ds["text"]) == ["a third review", "the first review", "the second review"]


@pytest.mark.parametrize("value", [7, ["two", "sentences"]], ids=["int", "list"])
def test_a_corpus_text_field_that_is_not_text_is_refused(tmp_path, value):
    write_jsonl(tmp_path / "docs.jsonl", [{"body": value}] * 3)
    src = {"path": str(tmp_path / "docs.jsonl"), "text_field": "body", "name": "docs", "where": "in_domain.yaml"}
    with pytest.raises(ConfigError, match=r"docs.jsonl: the field `body` holds \w+ values, not text; set `text_field`"):
        load_source(src, tmp_path)


def test_a_folder_named_like_a_data_file_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    write_jsonl(tmp_path / "src" / "a.jsonl", [{"text": "a review"}])
    (tmp_path / "src" / "more.jsonl").mkdir()
    with pytest.raises(ConfigError, match=r"more.jsonl` is a folder, not a regular file"):
        local_source_files(str(tmp_path / "src"), "w")


def test_an_unwritable_output_ends_with_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    """As root a read-only folder is still writable, so the write's PermissionError is raised by hand."""
    from pipeline.stage import run_stage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 1\n")

    def work(params):
        raise PermissionError(errno.EACCES, "Permission denied", "metrics/prepare.json")

    with pytest.raises(SystemExit) as stop:
        run_stage("prepare", work, "metrics/prepare.json", track=False)
    assert stop.value.code == 2
    assert "`metrics/prepare.json` is not writable (permission denied)" in capsys.readouterr().err


def test_a_second_collect_in_the_same_project_stops_at_once(tmp_path):
    from pipeline.io import only_one

    lock = tmp_path / "data" / ".corpus.lock"
    with only_one(lock, "`collect`"):
        code = ("import sys; from pipeline.io import only_one; from pipeline.config import ConfigError\n"
                f"try:\n    with only_one({str(lock)!r}, '`collect`'): pass\n"
                "except ConfigError as e:\n    print(e); sys.exit(2)\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 2 and "`collect` is already running in this project (pid" in done.stdout
    with only_one(lock, "`collect`"):  # released: free again
        pass


def test_a_model_with_its_own_code_is_refused_without_a_traceback(tiny_model, tmp_path):
    import shutil

    from pipeline.model import load_config

    model = tmp_path / "custom"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="mybert", auto_map={"AutoConfig": "conf.MyConfig"})
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"ships its own model code \(config.json's `auto_map`\), which runs only "
                                          r"with model.trust_remote_code: true; nothing of it was run"):
        load_config(str(model), False)


# --- unclear before --------------------------------------------------------------------------------------------

def test_cr_only_line_ends_are_named(task_dir, tmp_path):
    csv_task(task_dir, ("text,label\n" + good_csv_rows(30)).replace("\n", "\r"))
    with pytest.raises(ConfigError, match=r"train.csv: its lines end with a carriage return alone"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_a_parquet_naming_a_column_twice_is_named(task_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (task_dir / "train.jsonl").unlink()
    pq.write_table(pa.table([pa.array(["a film"] * 20), pa.array([0, 1] * 10), pa.array(["x"] * 20)],
                            names=["text", "label", "text"]), task_dir / "train.parquet")
    with pytest.raises(ConfigError, match=r"train.parquet: the schema names the column `text` more than once"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_a_test_csv_with_a_header_and_no_rows_is_named(task_dir, tmp_path):
    csv_task(task_dir, "text,label\n", split="test")
    with pytest.raises(ConfigError, match=r"test.csv: a header and no records"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_the_full_disk_message_names_the_file_and_the_filesystem():
    from pipeline.stage import disk_full_message

    message = disk_full_message("collect", OSError(errno.ENOSPC, "No space left on device", "data/corpus.work/x"))
    assert "writing `data/corpus.work/x`: the filesystem mounted at /" in message and "GiB free" in message


def test_an_interrupted_collect_removes_its_work_folder(task_dir, tmp_path, tiny_model, monkeypatch):
    import pipeline.corpus
    from pipeline.corpus import build_corpus
    from transformers import AutoTokenizer

    params = from_dict({"task": {"dataset": str(task_dir), "demo": {"enabled": False}},
                        "collect": {"corpora_dir": str(tmp_path / "corpora")}, "pretrain": {"source": "in_domain"}})
    prepare_task(params.task, tmp_path / "task")
    (tmp_path / "corpora").mkdir()
    write_jsonl(tmp_path / "docs.jsonl", [{"text": f"an in-domain review number {i} of a film"} for i in range(20)])
    (tmp_path / "corpora" / "in_domain.yaml").write_text(yaml.safe_dump(
        {"sources": [{"path": str(tmp_path / "docs.jsonl"), "name": "docs"}]}))

    def interrupted(spec, c, d, heldout, tokenizer, task_dir, work):
        work.mkdir(parents=True)
        (work / "part.jsonl").write_text("x" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.corpus, "build_pool", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(params.task, params.collect, params.dedup, params.pretrain,
                     AutoTokenizer.from_pretrained(tiny_model), tmp_path / "task", tmp_path / "corpus")
    assert not (tmp_path / "corpus.work").exists() and not (tmp_path / "corpus").exists()


def test_nested_yaml_aliases_are_refused_at_once_with_a_short_message(tmp_path):
    bomb = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    (tmp_path / "in_domain.yaml").write_text(bomb)
    with pytest.raises(ConfigError, match=r"expands to [\d,]+ values through its aliases") as err:
        load_yaml(tmp_path / "in_domain.yaml")
    assert len(str(err.value)) < 600


def test_a_huge_value_is_quoted_as_an_excerpt(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: '" + "x" * 200_000 + "'\n")
    with pytest.raises(ConfigError, match=r"`seed` must be int, got 'x+\.\.\. \(200,002 characters\)") as err:
        load_params(tmp_path / "params.yaml")
    assert len(str(err.value)) < 400
