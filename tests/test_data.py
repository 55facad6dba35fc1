import json
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures import make_task, write_jsonl
from pipeline.config import ConfigError, from_dict
from pipeline.artifacts import load_prepared
from pipeline.data import prepare_task


def params_for(task_dir, **task):
    base = {"dataset": str(task_dir), "dev_size": 0.25, "demo": {"enabled": False}}
    base.update(task)
    return from_dict({"task": base})


def test_prepare_writes_stratified_splits(task_dir, tmp_path):
    stats = prepare_task(params_for(task_dir).task, tmp_path / "out")
    train, dev, test = (load_prepared(s, tmp_path / "out") for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (180, 60, 80)
    assert stats["dev_label_counts"] == {"0": 30, "1": 30}
    assert set(train["text"]).isdisjoint(dev["text"])
    assert json.loads((tmp_path / "out" / "labels.json").read_text())["names"] == ["0", "1"]


def test_demo_subset_is_stratified_and_seeded(task_dir, tmp_path):
    params = params_for(task_dir, demo={"enabled": True, "train": 40, "dev": 20, "test": 30})
    prepare_task(params.task, tmp_path / "a")
    prepare_task(params.task, tmp_path / "b")
    for split, n in (("train", 40), ("dev", 20), ("test", 30)):
        a, b = load_prepared(split, tmp_path / "a"), load_prepared(split, tmp_path / "b")
        assert len(a) == n and a["id"] == b["id"]
        assert abs(np.mean(a["label"]) - 0.5) <= 1 / n


def test_the_labelled_draw_varies_alone_with_train_seed(task_dir, tmp_path):
    """task.demo.train_seed draws other labelled examples while dev and test, drawn with task.seed, stay the same
    (compare needs one test set); null keeps task.seed's draw."""
    demo = {"enabled": True, "train": 40, "dev": 20, "test": 30}
    prepare_task(params_for(task_dir, demo=demo).task, tmp_path / "default")
    prepare_task(params_for(task_dir, demo={**demo, "train_seed": 42}).task, tmp_path / "same")  # task.seed is 42
    prepare_task(params_for(task_dir, demo={**demo, "train_seed": 7}).task, tmp_path / "other")
    ids = {run: {s: load_prepared(s, tmp_path / run)["id"] for s in ("train", "dev", "test")}
           for run in ("default", "same", "other")}
    assert ids["same"] == ids["default"]
    assert ids["other"]["dev"] == ids["default"]["dev"] and ids["other"]["test"] == ids["default"]["test"]
    assert ids["other"]["train"] != ids["default"]["train"] and len(ids["other"]["train"]) == 40


def test_missing_field_names_field_and_columns(task_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"no field `review` \(set by `task.text_field`\).*text, label"):
        prepare_task(params_for(task_dir, text_field="review").task, tmp_path / "out")
    with pytest.raises(ConfigError, match=r"no field `sentiment` \(set by `task.label_field`\)"):
        prepare_task(params_for(task_dir, label_field="sentiment").task, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_label_only_in_test_is_refused(task_dir, tmp_path):
    write_jsonl(task_dir / "test.jsonl", [{"text": "a fine film", "label": 7}, {"text": "bad", "label": 0}])
    with pytest.raises(ConfigError, match=r"test.jsonl: label\(s\) 7 in `label` never occur in the train split"):
        prepare_task(params_for(task_dir).task, tmp_path / "out")


def test_missing_split_file_is_named(task_dir, tmp_path):
    (task_dir / "test.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"no `test` file in .*task; expected one of test.jsonl.gz"):
        prepare_task(params_for(task_dir).task, tmp_path / "out")


def test_hub_id_without_network_fails_fast_with_the_way_out(no_hub, tmp_path):
    start = time.time()
    with pytest.raises(ConfigError) as exc:
        prepare_task(from_dict({"task": {"dataset": "stanfordnlp/imdb"}}).task, tmp_path / "out")
    assert time.time() - start < 30
    message = str(exc.value)
    assert "stanfordnlp/imdb" in message and "task.dataset" in message and "model.name" in message


def add_train_copies_of_test(task_dir):
    """Test reviews copied into train: as is, upper-cased with markup, one word changed (three of each)."""
    rows = [json.loads(line) for line in (task_dir / "train.jsonl").read_text().splitlines()]
    tests = [json.loads(line) for line in (task_dir / "test.jsonl").read_text().splitlines()]
    long_tests = sorted(tests, key=lambda r: -len(r["text"].split()))[:9]
    exact = [r["text"] for r in long_tests[:3]] + [f"<b>{r['text'].upper()}</b>" for r in long_tests[3:6]]
    near = []
    for r in long_tests[6:]:
        words = r["text"].split()
        words[len(words) // 2] = "zebra"
        near.append(" ".join(words))
    write_jsonl(task_dir / "train.jsonl", rows + [{"text": t, "label": r["label"]}
                                                  for t, r in zip(exact + near, long_tests)])
    return exact, near


def test_train_copies_of_test_text_are_reported_and_dropped_on_request(task_dir, tmp_path):
    exact, near = add_train_copies_of_test(task_dir)
    stats = prepare_task(params_for(task_dir, dev_size=0.2).task, tmp_path / "report")
    train = set(load_prepared("train", tmp_path / "report")["text"])
    in_train = {"exact": sum(t in train for t in exact), "near": sum(t in train for t in near)}
    assert in_train["exact"] >= 1 and in_train["near"] >= 1  # the rest went to dev (the split is seeded)
    assert stats["train_overlap"] == {**in_train, "action": "report", "train_docs_checked": len(train),
                                      "near_threshold": 0.8}
    # the near test is collect's: the `dedup` section's threshold, permutations and shingles (one setting for both)
    strict = from_dict({"dedup": {"near_dup_threshold": 0.95, "shingle_words": 10}}).dedup  # J about 0.78
    stats = prepare_task(params_for(task_dir, dev_size=0.2).task, tmp_path / "strict", strict)
    assert stats["train_overlap"]["exact"] == in_train["exact"] and stats["train_overlap"]["near"] == 0
    stats = prepare_task(params_for(task_dir, dev_size=0.2, train_overlap="drop").task, tmp_path / "drop")
    dropped = set(load_prepared("train", tmp_path / "drop")["text"])
    assert stats["train_overlap"]["exact"] == in_train["exact"] and stats["train_overlap"]["near"] == in_train["near"]
    assert stats["train_docs"] == len(train) - sum(in_train.values()) == len(dropped)
    assert not set(exact + near) & dropped
    with pytest.raises(ConfigError, match=r"`task.train_overlap` is 'keep'; it must be one of report, drop"):
        params_for(task_dir, train_overlap="keep")


def test_label_names_rename_classes_everywhere_and_are_checked(task_dir, tmp_path):
    for given in (["negative", "positive"], {0: "negative", 1: "positive"}, {"1": "positive", "0": "negative"}):
        stats = prepare_task(params_for(task_dir, label_names=given).task, tmp_path / "out")
        labels = json.loads((tmp_path / "out" / "labels.json").read_text())
        assert labels["names"] == ["negative", "positive"] and labels["values"] == ["0", "1"]
        assert stats["test_label_counts"] == {"negative": 40, "positive": 40}
    for given, message in (
            (["only"], r"lists 1 name\(s\) \['only'\], but .*train.jsonl has 2 class\(es\) \['0', '1'\]"),
            ({0: "neg", 2: "pos"}, r"does not match the labels of .*: no name for \['1'\]; no such label \['2'\]"),
            (["same", "same"], r"gives two classes the same name")):
        with pytest.raises(ConfigError, match=message):
            prepare_task(params_for(task_dir, label_names=given).task, tmp_path / "bad")
    with pytest.raises(ConfigError, match=r"`task.label_names` must be list or dict or null"):
        params_for(task_dir, label_names="negative,positive")


def test_a_local_dev_file_is_the_dev_split(task_dir, tmp_path, capsys):
    rows = [json.loads(line) for line in (task_dir / "train.jsonl").read_text().splitlines()]
    write_jsonl(task_dir / "dev.jsonl", rows[:30])
    write_jsonl(task_dir / "train.jsonl", rows[30:])
    stats = prepare_task(params_for(task_dir).task, tmp_path / "out")
    dev = load_prepared("dev", tmp_path / "out")
    assert dev["text"] == [r["text"] for r in rows[:30]] and stats["train_docs"] == len(rows) - 30
    assert "dev.jsonl: used as the dev split (task.dev_size is not used)" in capsys.readouterr().out


def test_a_task_inside_a_package_is_one_local_folder_everywhere(tmp_path, monkeypatch):
    """`pkg:NAME/dir` names the same folder for prepare, the inputs record and the corpus check."""
    from pipeline.corpus_spec import check_sources
    from pipeline.inputs import task_record

    package = tmp_path / "site" / "fake_task_pkg"
    make_task(package / "task")
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    task = from_dict({"task": {"dataset": "pkg:fake_task_pkg/task"}}).task
    record = task_record(task)
    assert record["local"] == str(package / "task")
    assert {Path(f["path"]).name for f in record["files"]} == {"train.jsonl", "test.jsonl"}
    test_file = str(package / "task" / "test.jsonl")
    spec = {"path": "in_domain.yaml", "sources": [{"name": "copy", "path": test_file, "where": "in_domain.yaml"}]}
    with pytest.raises(ConfigError, match="the task's test split"):
        check_sources(spec, task, "in_domain")
