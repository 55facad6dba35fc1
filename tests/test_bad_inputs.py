"""Every bad input stops before expensive work with a message naming the file or key and the fix."""

import pytest
import yaml
from transformers import AutoTokenizer

from fixtures import write_jsonl
from pipeline.config import ConfigError, from_dict, load_params
from pipeline.corpus import build_corpus
from pipeline.data import prepare_task


def task_params(task_dir, **task):
    return from_dict({"task": {"dataset": str(task_dir), "demo": {"enabled": False}, **task}})


def test_empty_dataset_file(task_dir, tmp_path):
    (task_dir / "train.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"train.jsonl: the file is empty"):
        prepare_task(task_params(task_dir), tmp_path / "out")


def test_all_texts_empty(task_dir, tmp_path):
    write_jsonl(task_dir / "train.jsonl", [{"text": " ", "label": i % 2} for i in range(20)])
    with pytest.raises(ConfigError, match=r"train.jsonl: every text in `text` is empty; check `task.text_field`"):
        prepare_task(task_params(task_dir), tmp_path / "out")


def test_single_class(task_dir, tmp_path):
    write_jsonl(task_dir / "train.jsonl", [{"text": f"film {i}", "label": 1} for i in range(20)])
    with pytest.raises(ConfigError, match=r"train.jsonl: `label` has a single class"):
        prepare_task(task_params(task_dir), tmp_path / "out")


def test_undecodable_bytes(task_dir, tmp_path):
    (task_dir / "train.jsonl").write_bytes(b'{"text": "caf\xe9 \xff\xfe", "label": 0}\n{"text": "ok", "label": 1}\n')
    with pytest.raises(ConfigError, match=r"train.jsonl: not valid UTF-8 near line 1.*re-encode"):
        prepare_task(task_params(task_dir), tmp_path / "out")


def test_wrong_type_and_unknown_key_in_params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"finetune": {"epochs": 2.5}}))
    with pytest.raises(ConfigError, match=r"params.yaml: `finetune.epochs` must be int, got 2.5"):
        load_params(path)
    path.write_text(yaml.safe_dump({"pretrian": {"source": "task"}}))
    with pytest.raises(ConfigError, match=r"params.yaml: unknown key `pretrian`. Did you mean `pretrain`"):
        load_params(path)
    with pytest.raises(ConfigError, match=r"not found"):
        load_params(tmp_path / "missing.yaml")


def test_corpus_empty_after_cleaning(task_dir, tmp_path, tiny_model):
    params = from_dict({"task": {"dataset": str(task_dir), "demo": {"enabled": False}},
                        "collect": {"corpora_dir": str(tmp_path / "corpora"), "min_chars": 50},
                        "pretrain": {"source": "in_domain"}})
    prepare_task(params, tmp_path / "task")
    write_jsonl(tmp_path / "short.jsonl", [{"text": "tiny"}, {"text": "<br />"}, {"text": ""}])
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "in_domain.yaml").write_text(
        yaml.safe_dump({"sources": [{"path": str(tmp_path / "short.jsonl")}]}))
    with pytest.raises(ConfigError, match=r"in_domain.yaml: the corpus is empty after cleaning.*collect.min_chars"):
        build_corpus(params, AutoTokenizer.from_pretrained(tiny_model), tmp_path / "task", tmp_path / "corpus")
    assert not (tmp_path / "corpus").exists()
