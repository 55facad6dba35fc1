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
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_all_texts_empty(task_dir, tmp_path):
    write_jsonl(task_dir / "train.jsonl", [{"text": " ", "label": i % 2} for i in range(20)])
    with pytest.raises(ConfigError, match=r"train.jsonl: every text in `text` is empty; check `task.text_field`"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_single_class(task_dir, tmp_path):
    write_jsonl(task_dir / "train.jsonl", [{"text": f"film {i}", "label": 1} for i in range(20)])
    with pytest.raises(ConfigError, match=r"train.jsonl: `label` has a single class"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_undecodable_bytes(task_dir, tmp_path):
    (task_dir / "train.jsonl").write_bytes(b'{"text": "caf\xe9 \xff\xfe", "label": 0}\n{"text": "ok", "label": 1}\n')
    with pytest.raises(ConfigError, match=r"train.jsonl: not valid UTF-8 near line 1.*re-encode"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


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
    prepare_task(params.task, tmp_path / "task")
    write_jsonl(tmp_path / "short.jsonl", [{"text": "tiny"}, {"text": "<br />"}, {"text": ""}])
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "in_domain.yaml").write_text(
        yaml.safe_dump({"sources": [{"path": str(tmp_path / "short.jsonl")}]}))
    with pytest.raises(ConfigError, match=r"in_domain.yaml: the corpus is empty after cleaning.*collect.min_chars"):
        build_corpus(params.task, params.collect, params.dedup, params.pretrain, AutoTokenizer.from_pretrained(tiny_model), tmp_path / "task", tmp_path / "corpus")
    assert not (tmp_path / "corpus").exists()


def test_truncated_gzip_names_the_file(task_dir, tmp_path):
    import gzip

    rows = "".join(f'{{"text": "film number {i} was fine", "label": {i % 2}}}\n' for i in range(3000))
    data = gzip.compress(rows.encode())
    (task_dir / "train.jsonl").unlink()
    (task_dir / "train.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"train.jsonl.gz: the gzip data is truncated or corrupt after line \d+"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_broken_json_line_is_named(task_dir, tmp_path):
    lines = [f'{{"text": "film {i}", "label": {i % 2}}}' for i in range(10)]
    lines[6] = '{"text": "film 6", "label": 0'
    (task_dir / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"train.jsonl: cannot be read as json \(line 7: "):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_blank_texts_are_counted(task_dir, tmp_path, capsys):
    rows = [{"text": f"a fine film {i}", "label": i % 2} for i in range(40)]
    rows[3]["text"], rows[5]["text"], rows[8]["text"] = "   ", None, ""
    write_jsonl(task_dir / "train.jsonl", rows)
    stats = prepare_task(task_params(task_dir).task, tmp_path / "out")
    assert stats["dropped_blank_text"] == {"train": 3, "test": 0}
    assert stats["train_docs"] + stats["dev_docs"] == 37
    assert "dropped 3 record(s) with a blank or missing `text`" in capsys.readouterr().out


def test_class_with_one_example_is_refused_clearly(task_dir, tmp_path):
    rows = [{"text": f"film {i}", "label": i % 2} for i in range(30)] + [{"text": "odd one", "label": 2}]
    write_jsonl(task_dir / "train.jsonl", rows)
    with pytest.raises(ConfigError, match=r"train.jsonl: class\(es\) \['2'\] have a single example.*dev split"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


@pytest.mark.parametrize("keep, lacks", [
    ((), ["config.json", "tokenizer files", "model.safetensors"]),
    (("config.json",), ["tokenizer files", "model.safetensors"]),
    (("config.json", "model.safetensors"), ["tokenizer files"]),
    (("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"), ["model.safetensors"]),
])
def test_incomplete_model_directory_is_refused_before_work(tiny_model, tmp_path, keep, lacks):
    import shutil

    from pipeline.model import load_config, load_tokenizer

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in keep:
        if (tiny_model / name).exists():
            shutil.copy(tiny_model / name, model_dir / name)
    # load_config, every stage's first load, checks all three; load_tokenizer only what it reads
    for loader, checked in ((load_config, {"config.json", "tokenizer files", "model.safetensors"}),
                            (load_tokenizer, {"tokenizer files"})):
        expected = [item for item in lacks if item in checked]
        if not expected:
            loader(str(model_dir), False)  # what it needs is there
            continue
        with pytest.raises(ConfigError, match=r"model.name: .* lacks") as info:
            loader(str(model_dir), False)
        named = str(info.value).split("lacks")[1].split(". A model")[0]
        assert all(item in named for item in expected), named
        assert not any(item in named for item in checked - set(expected)), named


def test_small_corpus_warns_and_reports_the_real_blocks(tiny_model, tmp_path, capsys):
    from datasets import Dataset
    from transformers import AutoModelForMaskedLM

    from pipeline.mlm import continue_pretraining

    params = from_dict({"train": {"precision": "fp32", "checkpoint_steps": 0},
                        "pretrain": {"block_size": 16, "batch_size": 8, "max_tokens": 16 * 8 * 5}})
    one_block = Dataset.from_dict({"text": ["great film boring plot superb acting dull ending " * 2]})  # 1 block
    stats = continue_pretraining(AutoModelForMaskedLM.from_pretrained(tiny_model),
                                 AutoTokenizer.from_pretrained(tiny_model), one_block, params.pretrain, params.train,
                                 tmp_path / "work")
    assert stats["steps"] == 5 and stats["corpus_blocks"] == 1 and stats["corpus_epochs"] == 40
    assert "[pretrain] warning: the corpus holds 16 tokens (1 blocks of 16), 2% of pretrain.max_tokens 640: 5 " \
           "steps pass over it 40.0 times, each time with fresh masks." in capsys.readouterr().out


def test_a_model_inside_an_installed_package_is_found_and_a_missing_one_named(tmp_path, monkeypatch):
    from pipeline.sources import local_or_hub

    (tmp_path / "site" / "fake_encoder_pkg" / "model").mkdir(parents=True)
    (tmp_path / "site" / "fake_encoder_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    found = local_or_hub("model.name", "pkg:fake_encoder_pkg/model")
    assert found == tmp_path / "site" / "fake_encoder_pkg" / "model"
    with pytest.raises(ConfigError, match=r"`model.name` is `pkg:no_such_pkg_here/model`: the package `no_such_pkg_here` "
                                          r"is not installed.*pip install -e '.\[demo\]'"):
        local_or_hub("model.name", "pkg:no_such_pkg_here/model")


# Task rows (issue 29): every label and text value is checked before any work; a missing label is
# dropped and counted, never a class of its own; nothing is stringified.

def reviews(n=20, **overrides):
    rows = [{"text": f"film number {i} was {'great' if i % 2 else 'awful'}", "label": i % 2} for i in range(n)]
    for i, row in overrides.items():
        rows[int(i.lstrip("r"))].update(row)
    return rows


@pytest.mark.parametrize("bad", [{"a": 1}, [0, 1]], ids=["dict", "list"])
def test_a_label_that_is_not_a_value_names_the_record(task_dir, tmp_path, bad):
    write_jsonl(task_dir / "train.jsonl", [{"text": f"film {i}", "label": bad} for i in range(20)])
    with pytest.raises(ConfigError, match=rf"train.jsonl: record 1: `label` holds a {type(bad).__name__} .*a label "
                                          r"is one string, integer or boolean"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_two_spellings_of_one_class_are_refused_naming_both(task_dir, tmp_path):
    write_jsonl(task_dir / "train.jsonl", [{"text": f"film {i}", "label": ["pos", "neg", "Pos "][i % 3]}
                                           for i in range(30)])
    with pytest.raises(ConfigError, match=r"train.jsonl: `label` spells one class in 2 ways \('Pos ', 'pos'\)"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_labels_of_another_type_in_test_are_named(task_dir, tmp_path):
    write_jsonl(task_dir / "test.jsonl", [{"text": f"film {i}", "label": str(i % 2)} for i in range(10)])
    with pytest.raises(ConfigError, match=r"test.jsonl: label\(s\) '0', '1' in `label` never occur.* written as str \('[01]'\) where "
                                          r"train's are int \([01]\): write the labels of every split with one type"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_missing_labels_are_dropped_and_counted(task_dir, tmp_path, capsys):
    rows = reviews(40, r3={"label": None}, r5={"label": float("nan")}, r7={"label": " "})
    write_jsonl(task_dir / "train.jsonl", [r if not isinstance(r["label"], float) else {**r, "label": None}
                                           for r in rows[:5]] + rows[5:])
    (task_dir / "train.jsonl").write_text((task_dir / "train.jsonl").read_text().replace(
        '"label": " "', '"label": NaN', 1))  # json's NaN literal, as pandas writes it
    stats = prepare_task(task_params(task_dir).task, tmp_path / "out")
    assert stats["dropped_missing_label"]["train"] == 3 and stats["records_read"]["train"] == 40
    assert stats["classes"] == 2  # never a class of its own
    kept = stats["train_docs"] + stats["dev_docs"]
    assert kept + stats["dropped_missing_label"]["train"] + stats["dropped_blank_text"]["train"] == 40
    assert "dropped 3 record(s) with a missing (null, NaN or blank) `label`" in capsys.readouterr().out


def test_texts_of_only_zero_width_characters_are_blank(task_dir, tmp_path):
    write_jsonl(task_dir / "train.jsonl", reviews(30, r0={"text": "\u200b\u200b"}, r1={"text": " \ufeff\u200d "}))
    stats = prepare_task(task_params(task_dir).task, tmp_path / "out")
    assert stats["dropped_blank_text"]["train"] == 2


@pytest.mark.parametrize("kind", ["list", "bytes"])
def test_a_text_column_that_is_not_strings_is_refused(task_dir, tmp_path, kind):
    from datasets import Dataset

    texts = [["a film", "it was great"] if kind == "list" else b"a film" for _ in range(20)]
    (task_dir / "train.jsonl").unlink()
    Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(20)]}).to_parquet(str(task_dir / "train.parquet"))
    with pytest.raises(ConfigError, match=rf"train.parquet: record 1: `text` holds a {kind} .*not a string"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_a_csv_header_naming_a_column_twice_is_refused(task_dir, tmp_path):
    (task_dir / "train.jsonl").unlink()
    (task_dir / "train.csv").write_text("text,label,source,label\n" + "".join(f"film {i},{i % 2},x,{1 - i % 2}\n"
                                                                              for i in range(20)))
    with pytest.raises(ConfigError, match=r"train.csv: the header names the column `label` twice \(columns 2 and 4\)"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


def test_a_jsonl_line_that_is_not_an_object_is_named(task_dir, tmp_path):
    lines = (task_dir / "train.jsonl").read_text().splitlines()
    (task_dir / "train.jsonl").write_text("\n".join(lines[:4] + ['["film", 1]'] + lines[4:]) + "\n")
    with pytest.raises(ConfigError, match=r"train.jsonl: cannot be read as json \(line 5: a JSON list, where each line "
                                          r"must be one object"):
        prepare_task(task_params(task_dir).task, tmp_path / "out")


# Corpus definitions (issue 29): each source's values typed and bounded (pydantic, like params.yaml).

@pytest.mark.parametrize("field, value, said", [
    ("weight", float("nan"), r"`weight` is nan: input should be a finite number"),
    ("weight", float("inf"), r"`weight` is inf: input should be a finite number"),
    ("weight", 0, r"`weight` is 0: input should be greater than 0"),
    ("min_chars", "abc", r"`min_chars` is 'abc': input should be a valid integer"),
    ("text_field", 7, r"`text_field` is 7"),
    ("text_field", ["body", 3], r"`text_field` is"),
    ("text_field", [], r"`text_field` is an empty list"),
    ("wieght", 1, r"unknown key `wieght`; known: .*weight"),
], ids=["nan", "inf", "zero", "min_chars", "number", "list-with-number", "empty-list", "typo"])
def test_a_bad_source_value_names_the_source_and_key(tmp_path, field, value, said):
    from pipeline.corpus_spec import load_spec

    (tmp_path / "in_domain.yaml").write_text(yaml.safe_dump(
        {"sources": [{"path": "a.jsonl"}, {"path": "b.jsonl", field: value}]}))
    with pytest.raises(ConfigError, match=r"in_domain.yaml: sources\[1\]: " + said):
        load_spec(tmp_path, "in_domain")


def test_a_source_folder_with_a_symlink_loop_is_named(tmp_path):
    from pipeline.corpus_spec import local_source_files

    folder = tmp_path / "reviews"
    write_jsonl(folder / "part1.jsonl", [{"text": "a film"}])
    (folder / "part2.jsonl").symlink_to(folder / "part2.jsonl")  # a link to itself
    with pytest.raises(ConfigError, match=r"sources\[0\]: `.*reviews` cannot be read: .*part2.jsonl.*fix the link"):
        local_source_files(str(folder), "in_domain.yaml: sources[0]")
    (folder / "part2.jsonl").unlink()
    assert local_source_files(str(folder), "in_domain.yaml: sources[0]") == [folder / "part1.jsonl"]


def test_an_mlm_budget_under_one_step_is_refused():
    """pretrain.max_tokens 40 trained one step at the warm-up's lr 0 and reported 512 tokens (issue 29)."""
    from pipeline.config import check_budget

    p = from_dict({"pretrain": {"max_tokens": 40, "block_size": 16, "batch_size": 32}}).pretrain
    with pytest.raises(ConfigError, match=r"`pretrain.max_tokens` is 40; it must be at least one optimizer step, "
                                          r"pretrain.block_size x the effective batch \(512 tokens\)"):
        check_budget(p)
    p = from_dict({"pretrain": {"max_tokens": 4096, "block_size": 16, "batch_size": 32}}).pretrain
    check_budget(p)  # 8 steps: fine
    with pytest.raises(ConfigError, match=r"\(1,024 tokens\)"):
        check_budget(p.model_copy(update={"max_tokens": 1000}), devices=2)  # two processes: a larger step
    with pytest.raises(ConfigError, match=r"`pretrain.head_warmup_tokens` is 100.*\(or 0: no warm-up\)"):
        check_budget(p.model_copy(update={"head_warmup_tokens": 100}))
    launch = from_dict({"launch": {"nproc_per_node": 2, "nnodes": 2}}).launch  # collect: the processes to come
    with pytest.raises(ConfigError, match=r"\(2,048 tokens\)"):
        check_budget(p.model_copy(update={"max_tokens": 2000}), launch=launch)


def test_collect_blames_a_tiny_budget_not_the_corpus(task_dir, tmp_path, monkeypatch, capsys):
    """pretrain.max_tokens 5 was reported by collect as an empty corpus, blaming collect.min_chars (issue 29)."""
    from fixtures import make_project, set_params

    project = make_project(tmp_path)
    set_params(project, **{"pretrain.max_tokens": 5, "pretrain.source": "task"})
    monkeypatch.chdir(project)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    import runpy
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("stages.collect", run_name="__main__")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "`pretrain.max_tokens` is 5; it must be at least one optimizer step" in err
    assert "min_chars" not in err


def test_a_key_given_twice_in_a_yaml_file_is_refused(tmp_path):
    """PyYAML keeps the last of two equal keys: a second `finetune:` block replaced the first silently."""
    path = tmp_path / "params.yaml"
    path.write_text("finetune:\n  lr: 1.0e-5\nseed: 1\nfinetune:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=r"params.yaml: not valid YAML: .*the key `finetune` is given twice "
                                          r"\(lines 1 and 4\); keep one"):
        load_params(path)
    (tmp_path / "in_domain.yaml").write_text("sources:\n  - path: a.jsonl\n    weight: 1\n    weight: 2\n")
    from pipeline.corpus_spec import load_spec

    with pytest.raises(ConfigError, match=r"in_domain.yaml: not valid YAML: .*`weight` is given twice"):
        load_spec(tmp_path, "in_domain")


def test_a_launch_config_error_exits_2(tmp_path):
    """Like every stage's config error (it was 1 through the launcher)."""
    import subprocess
    import sys

    from fixtures import ROOT

    (tmp_path / "params.yaml").write_text("model:\n  max_length: 1\n")
    result = subprocess.run([sys.executable, "-m", "stages.launch", "stages.finetune"], cwd=tmp_path,
                            capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "`model.max_length` is 1; it must be at least 8" in result.stderr and "Traceback" not in result.stderr


def _copy_model(tiny_model, tmp_path):
    import shutil

    return shutil.copytree(tiny_model, tmp_path / "model")


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tiny_model, tmp_path):
    from pipeline.model import load_tokenizer

    model_dir = _copy_model(tiny_model, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = len(tokenizer)
    tokenizer.add_tokens(["zzfoo", "zzbar", "zzbaz"])
    tokenizer.save_pretrained(model_dir)
    with pytest.raises(ConfigError, match=rf"tokenizer has {rows + 3} tokens but the model's embeddings hold {rows} "
                                          r"\(config.json vocab_size\).*resize_token_embeddings"):
        load_tokenizer(str(model_dir), False)


def test_a_config_of_another_width_than_the_weights_names_the_shapes(tiny_model, tmp_path):
    import json

    from pipeline.config import Finetune
    from pipeline.classifier import load_classifier
    from pipeline.model import load_mlm

    model_dir = _copy_model(tiny_model, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "hidden_size": 16}))
    for load in (lambda: load_mlm(str(model_dir), False),
                 lambda: load_classifier(str(model_dir), False, Finetune(), ["neg", "pos"])):
        with pytest.raises(ConfigError, match=r"config.json does not fit the weights .*\[\d+, 32\] in the weights vs "
                                              r"\[\d+, 16\] from config.json.*hidden_size"):
            load()


def test_a_bert_config_over_roberta_weights_is_refused_not_trained_at_random(tiny_model, tmp_path):
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    from pipeline.config import Finetune
    from pipeline.classifier import load_classifier
    from pipeline.model import load_mlm

    model_dir = _copy_model(tiny_model, tmp_path)
    bert_config = (model_dir / "config.json").read_text()
    torch.manual_seed(0)
    shape = dict(vocab_size=len(AutoTokenizer.from_pretrained(model_dir)), hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=130)
    RobertaForMaskedLM(RobertaConfig(**shape)).save_pretrained(model_dir)
    (model_dir / "config.json").write_text(bert_config)
    for load in (lambda: load_mlm(str(model_dir), False),
                 lambda: load_classifier(str(model_dir), False, Finetune(), ["neg", "pos"]),
                 lambda: load_classifier(str(model_dir), False, Finetune(model="hierarchical"), ["neg", "pos"])):
        with pytest.raises(ConfigError, match=r"encoder tensor\(s\) of the model config.json describes .* are not "
                                              r"in its weights.*config.json saved with these weights"):
            load()


def test_every_file_is_counted_as_its_format_defines_records(task_dir, tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.files import count_records

    rows = [{"text": f"film number {i}", "label": i % 2} for i in range(6)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:3]) + "\n\n  \n" +
                                      "\n".join(json.dumps(r) for r in rows[3:]) + "\n")
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "a.csv").write_text('text,label\n"two\nlines",1\n\nplain,0\n')
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    assert count_records(tmp_path / "a.jsonl", "json") == {"records": 6, "blank_lines": 2}
    assert count_records(tmp_path / "a.json", "json") == {"records": 6, "blank_lines": 0}
    assert count_records(tmp_path / "a.csv", "csv") == {"records": 2, "blank_lines": 1}
    assert count_records(tmp_path / "a.parquet", "parquet") == {"records": 6, "blank_lines": 0}


def test_prepare_reports_each_file_counted_and_read_and_refuses_a_loss(task_dir, tmp_path, monkeypatch):
    import pipeline.files as files

    with (task_dir / "train.jsonl").open("a") as fh:
        fh.write("\n\n")  # blank lines: counted apart, not records
    stats = prepare_task(task_params(task_dir).task, tmp_path / "out")
    train = stats["files"][str(task_dir / "train.jsonl")]
    assert train["records"] == train["read"] == stats["records_read"]["train"] and train["blank_lines"] == 2
    assert stats["files"][str(task_dir / "test.jsonl")]["read"] == stats["records_read"]["test"]
    real = files.count_records
    monkeypatch.setattr(files, "count_records", lambda path, builder, lines=None: {
        **real(path, builder, lines), "records": real(path, builder, lines)["records"] + 1})
    with pytest.raises(ConfigError, match=r"train.jsonl: the file holds 241 records as its format counts them, but "
                                          r"240 were read: records would be lost without a count"):
        prepare_task(task_params(task_dir).task, tmp_path / "out2")
