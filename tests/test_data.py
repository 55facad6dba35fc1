import json
import time

import numpy as np
import pytest

from fixtures import write_jsonl
from pipeline.config import ConfigError, from_dict
from pipeline.data import load_prepared, prepare_task


def params_for(task_dir, **task):
    base = {"dataset": str(task_dir), "dev_size": 0.25, "demo": {"enabled": False}}
    base.update(task)
    return from_dict({"task": base})


def test_prepare_writes_stratified_splits(task_dir, tmp_path):
    stats = prepare_task(params_for(task_dir), tmp_path / "out")
    train, dev, test = (load_prepared(s, tmp_path / "out") for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (180, 60, 80)
    assert stats["dev_label_counts"] == {"0": 30, "1": 30}
    assert set(train["text"]).isdisjoint(dev["text"])
    assert json.loads((tmp_path / "out" / "labels.json").read_text())["names"] == ["0", "1"]


def test_demo_subset_is_stratified_and_seeded(task_dir, tmp_path):
    params = params_for(task_dir, demo={"enabled": True, "train": 40, "dev": 20, "test": 30})
    prepare_task(params, tmp_path / "a")
    prepare_task(params, tmp_path / "b")
    for split, n in (("train", 40), ("dev", 20), ("test", 30)):
        a, b = load_prepared(split, tmp_path / "a"), load_prepared(split, tmp_path / "b")
        assert len(a) == n and a["id"] == b["id"]
        assert abs(np.mean(a["label"]) - 0.5) <= 1 / n


def test_missing_field_names_field_and_columns(task_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"no field `review` \(set by `task.text_field`\).*text, label"):
        prepare_task(params_for(task_dir, text_field="review"), tmp_path / "out")
    with pytest.raises(ConfigError, match=r"no field `sentiment` \(set by `task.label_field`\)"):
        prepare_task(params_for(task_dir, label_field="sentiment"), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_label_only_in_test_is_refused(task_dir, tmp_path):
    write_jsonl(task_dir / "test.jsonl", [{"text": "a fine film", "label": 7}, {"text": "bad", "label": 0}])
    with pytest.raises(ConfigError, match=r"test.jsonl: label\(s\) \['7'\].*never occur in the train split"):
        prepare_task(params_for(task_dir), tmp_path / "out")


def test_missing_split_file_is_named(task_dir, tmp_path):
    (task_dir / "test.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"no `test` file in .*task; expected one of test.jsonl.gz"):
        prepare_task(params_for(task_dir), tmp_path / "out")


def test_hub_id_without_network_fails_fast_with_the_way_out(no_hub, tmp_path):
    start = time.time()
    with pytest.raises(ConfigError) as exc:
        prepare_task(from_dict({}), tmp_path / "out")
    assert time.time() - start < 30
    message = str(exc.value)
    assert "stanfordnlp/imdb" in message and "task.dataset" in message and "model.name" in message
