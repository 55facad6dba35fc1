"""Resume after SIGKILL, determinism, and the non-finite-loss stop."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, BertForSequenceClassification

from fixtures import make_project, read_metrics as metrics, set_params
from pipeline.config import ConfigError, from_dict
from pipeline.encoding import encode_split
from pipeline.finetune import finetune
from pipeline.training import NonFiniteLossError


def stage(project, name, check=True):
    result = subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-4000:])
    return result




def kill_after_checkpoint(project, name, work_dir, sig=signal.SIGKILL):
    """Start a stage, send it `sig` as soon as its first checkpoint (train.checkpoint_steps) is on
    disk; returns the finished process (exit status and stderr)."""
    # SIGINT as from a terminal: a test run started in the background (`cmd &`) inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler; restore the default first
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{name}"], cwd=project, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "WANDB_MODE": "disabled"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 1800  # a guard against a hung stage, not a timing: a busy machine is slow
    while time.time() < deadline and proc.poll() is None:
        if list((project / work_dir).glob("checkpoint-*/trainer_state.json")):
            time.sleep(0.2)  # the Trainer writes trainer_state.json last; the checkpoint is complete
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"{name} finished before it could be killed"
    assert list((project / work_dir).glob("checkpoint-*/trainer_state.json")), f"{name} wrote no checkpoint in time"
    proc.send_signal(sig)
    _, stderr = proc.communicate()
    # the run must have been cut while training, with its checkpoint still there to resume from
    assert list((project / work_dir).glob("checkpoint-*/trainer_state.json")), "the checkpoint is gone after the kill"
    return subprocess.CompletedProcess(proc.args, proc.returncode, None, stderr)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("reliability"))
    set_params(project, **{"pretrain.max_tokens": 120_000, "train.checkpoint_steps": 20,
                           "pretrain.source": "task"})
    stage(project, "prepare")
    stage(project, "collect")
    return project


def test_ctrl_c_says_where_the_checkpoint_is_and_that_a_rerun_resumes(project):
    try:
        killed = kill_after_checkpoint(project, "pretrain", "models/.pretrain-work", signal.SIGINT)
    finally:  # the next tests start from no checkpoint
        shutil.rmtree(project / "models/.pretrain-work", ignore_errors=True)
    stderr = killed.stderr
    last = stderr.strip().splitlines()[-1]
    # the whole story when it fails (a clean-clone CI run once ended on a progress bar, not this line)
    story = f"exit status {killed.returncode}; stderr ends:\n{stderr[-3000:]}"
    assert last.startswith("[pretrain] interrupted; the last checkpoint is models/.pretrain-work/checkpoint-"), story
    assert killed.returncode == 130, story  # the stage's exit status for an interrupt (128 + SIGINT)
    assert last.endswith("rerun the stage (dvc repro) and it resumes from there.")
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


def weights(directory):
    from safetensors.torch import load_file
    return load_file(str(directory / "model.safetensors"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ after the resume, e.g. {different[:3]}"


def test_pretrain_resumes_exactly_after_sigkill(project):
    stage(project, "pretrain")
    reference, reference_weights = metrics(project, "pretrain"), weights(project / "models/pretrained")
    reference_curve = (project / "plots/pretrain_loss.csv").read_text()
    assert reference["resumed_from_step"] == 0
    kill_after_checkpoint(project, "pretrain", "models/.pretrain-work")
    assert not (project / "models/pretrained/.tmp").exists()
    rerun = stage(project, "pretrain")
    resumed = metrics(project, "pretrain")
    assert resumed["resumed_from_step"] >= 20 and resumed["steps"] == reference["steps"]
    assert "[pretrain] resuming from " in rerun.stdout and f"(step {resumed['resumed_from_step']})" in rerun.stdout
    # the same batches and masks as the uninterrupted run: the same weights, bit for bit, and loss curve
    assert_same_weights(weights(project / "models/pretrained"), reference_weights)
    assert resumed["perplexity_after"] == reference["perplexity_after"]
    assert (project / "plots/pretrain_loss.csv").read_text() == reference_curve
    assert not (project / "models/.pretrain-work").exists()  # cleaned up once complete


def test_finetune_resumes_exactly_after_sigkill_with_length_grouped_batches(project):
    set_params(project, **{"finetune.epochs": 4, "train.checkpoint_steps": 0})
    assert read_params(project)["finetune"]["group_by_length"] is True  # the default
    stage(project, "finetune")
    reference, reference_weights = metrics(project, "finetune"), weights(project / "models/classifier")
    reference_curve = (project / "plots/finetune_curve.csv").read_text()
    # killed in the middle of the second epoch: its batch order is drawn after a whole epoch of
    # dropout has moved the global RNG, which a resumed run has not replayed
    per_epoch = reference["steps"] // 4
    every = per_epoch + per_epoch // 2 + 1  # every checkpoint lies inside an epoch, from the second on
    set_params(project, **{"train.checkpoint_steps": every})
    kill_after_checkpoint(project, "finetune", "models/.finetune-work")
    rerun = stage(project, "finetune")
    resumed = metrics(project, "finetune")
    step = resumed["resumed_from_step"]  # the first checkpoint, or a later one on a fast machine
    assert step % every == 0 and step > per_epoch and step % per_epoch and resumed["steps"] == reference["steps"]
    assert "[finetune] resuming from " in rerun.stdout
    assert_same_weights(weights(project / "models/classifier"), reference_weights)
    assert resumed["dev_accuracy"] == reference["dev_accuracy"] and resumed["train_loss"] == reference["train_loss"]
    assert (project / "plots/finetune_curve.csv").read_text() == reference_curve


def read_params(project):
    import yaml
    return yaml.safe_load((project / "params.yaml").read_text())


def test_same_seed_same_metrics(project):
    set_params(project, **{"train.checkpoint_steps": 0, "pretrain.max_tokens": 16_000, "finetune.epochs": 2})
    stage(project, "collect")  # the corpus is drawn to the budget: collect again for the new one (pipeline.lineage)
    runs = []
    for _ in range(2):
        shutil.rmtree(project / "models", ignore_errors=True)
        stage(project, "pretrain")
        stage(project, "finetune")
        stage(project, "evaluate")
        runs.append({n: metrics(project, n) for n in ("pretrain", "finetune", "eval")})
    for name, keys in (("pretrain", ("perplexity_after", "train_loss")),
                       ("finetune", ("dev_accuracy", "train_loss")), ("eval", ("accuracy", "macro_f1"))):
        for key in keys:
            assert runs[0][name][key] == runs[1][name][key], (name, key)


def test_nan_loss_stops_with_step_lr_and_last_loss(tiny_model, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    params = from_dict({"model": {"max_length": 32}, "train": {"precision": "fp32", "checkpoint_steps": 0},
                        "finetune": {"lr": 1e30, "epochs": 3, "batch_size": 4, "warmup": 0.0,
                                     "layer_decay": 1.0}})
    data = encode_split(Dataset.from_dict({"text": ["great film", "awful plot"] * 8, "label": [1, 0] * 8}),
                        tokenizer, params.model.max_length, params.finetune)
    model = BertForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf) at step \d+ \(lr [0-9.e+]+\); the last finite loss was [0-9.]+"):
        finetune(model, tokenizer, data, data, params.finetune, params.train, params.seed, tmp_path / "work")


def test_a_nan_loss_stops_before_a_checkpoint_or_evaluation_takes_its_weights(tiny_model, tmp_path):
    """The loss is read on the host only at logs, checkpoints and epoch ends (no sync every step): the stop
    still comes before any checkpoint is written, or any dev evaluation run, after the first bad step."""
    import re

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    params = from_dict({"model": {"max_length": 32}, "train": {"precision": "fp32", "checkpoint_steps": 3},
                        "finetune": {"lr": 1e30, "epochs": 2, "batch_size": 4, "warmup": 0.0, "layer_decay": 1.0}})
    # 100 steps an epoch, 200 in all: a log every 4 steps, so a bad step 2 is found at the checkpoint of step 3
    data = encode_split(Dataset.from_dict({"text": ["great film", "awful plot"] * 200, "label": [1, 0] * 200}),
                        tokenizer, params.model.max_length, params.finetune)
    model = BertForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    with pytest.raises(NonFiniteLossError) as stop:
        finetune(model, tokenizer, data, data, params.finetune, params.train, params.seed, tmp_path / "work")
    bad = int(re.search(r"at step (\d+)", str(stop.value)).group(1))
    saved = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "work").glob("checkpoint-*"))
    assert all(step < bad for step in saved), (bad, saved)
    assert bad > 100 or not (tmp_path / "work" / "best").exists()  # no dev evaluation after the bad step


@pytest.mark.parametrize("patience, epochs_run", [(2, 3.0), (0, 5.0)])
def test_patience_stops_when_dev_accuracy_stalls(tiny_model, tmp_path, patience, epochs_run):
    # lr so small that dev accuracy never changes: the first epoch stays the best, so training stops
    # `patience` epochs after it; with patience 0 every one of finetune.epochs runs
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    params = from_dict({"model": {"max_length": 32}, "train": {"precision": "fp32", "checkpoint_steps": 0},
                        "finetune": {"lr": 1e-12, "epochs": 5, "batch_size": 8, "patience": patience}})
    data = encode_split(Dataset.from_dict({"text": ["great film", "awful plot"] * 8, "label": [1, 0] * 8}),
                        tokenizer, params.model.max_length, params.finetune)
    model = BertForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    _, stats, curve = finetune(model, tokenizer, data, data, params.finetune, params.train, params.seed,
                               tmp_path / "work")
    assert stats["epochs_run"] == epochs_run and len(curve) == int(epochs_run)
    assert stats["stopped_early"] is (patience > 0) and stats["best_epoch"] == 1.0


def test_keep_last_keeps_the_last_epoch_and_selects_nothing_on_dev(tiny_model, tmp_path):
    # finetune.keep last: a fixed number of steps; the weights are the last epoch's whatever dev says, and a
    # patience that would select on dev is refused
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    recipe = {"lr": 1e-3, "epochs": 3, "batch_size": 8, "patience": 0}
    data = None
    finals = {}
    for keep in ("best", "last"):
        params = from_dict({"model": {"max_length": 32}, "train": {"precision": "fp32", "checkpoint_steps": 0},
                            "finetune": {**recipe, "keep": keep}})
        data = data or encode_split(Dataset.from_dict({"text": ["great film", "awful plot"] * 8, "label": [1, 0] * 8}),
                                    tokenizer, params.model.max_length, params.finetune)
        model = BertForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
        trainer, stats, curve = finetune(model, tokenizer, data, data, params.finetune, params.train, params.seed,
                                         tmp_path / keep)
        finals[keep] = (stats, curve, trainer.evaluate(data)["eval_loss"])
    stats, curve, loss = finals["last"]
    assert stats["kept"] == "last" and stats["best_epoch"] == stats["epochs_run"] == 3.0
    assert stats["dev_accuracy"] == curve[-1]["dev_accuracy"]
    assert loss == pytest.approx(curve[-1]["dev_loss"], rel=1e-5)  # the model holds the last epoch's weights
    assert finals["best"][0]["kept"] == "best"
    with pytest.raises(ConfigError, match=r"`finetune.patience` is 2; it must be 0 when finetune.keep is last"):
        from_dict({"finetune": {"keep": "last", "patience": 2}})


def test_a_checkpoint_killed_while_saving_is_skipped(tmp_path):
    """The Trainer writes trainer_state.json last: a newer folder without it (or with it cut short)
    is a save the kill interrupted, and the resume takes the newest complete one."""
    from pipeline.checkpoints import last_complete_checkpoint

    for step in (8, 16, 24):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"global_step": 8}')
    (tmp_path / "checkpoint-16" / "trainer_state.json").write_text('{"global_step": 16}')
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-16")  # 24: no state yet
    (tmp_path / "checkpoint-24" / "trainer_state.json").write_text('{"global_st')  # cut short
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-16")
    (tmp_path / "checkpoint-24" / "trainer_state.json").write_text('{"global_step": 24}')
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-24")
    assert last_complete_checkpoint(tmp_path / "none") is None


def test_the_interrupt_message_names_the_checkpoint_a_rerun_resumes_from(tmp_path, monkeypatch):
    """Ctrl-C during a save: the message names the complete checkpoint the resume takes, not the
    folder the interrupted save left behind."""
    from pipeline.stage import interrupted_message

    monkeypatch.chdir(tmp_path)
    work = "models/.pretrain-work"
    for step in (8, 16):
        (tmp_path / work / f"checkpoint-{step}").mkdir(parents=True)
    (tmp_path / work / "checkpoint-8" / "trainer_state.json").write_text('{"global_step": 8}')
    message = interrupted_message("pretrain", ("models/.pretrain-head-work", work))
    assert "checkpoint-8" in message and "checkpoint-16" not in message
    assert "before its first checkpoint" in interrupted_message("pretrain", ("elsewhere",))
    assert "nothing was written" in interrupted_message("prepare")


def file_hashes(folder):
    import hashlib

    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_an_output_folder_that_is_a_file_stops_the_stage_before_its_data_is_replaced(tmp_path):
    project = make_project(tmp_path)
    stage(project, "prepare")
    before = file_hashes(project / "data/task")
    shutil.rmtree(project / "metrics")
    (project / "metrics").write_text("not a folder\n")
    set_params(project, **{"task.seed": 7})  # a rerun that would write other data
    result = stage(project, "prepare", check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "`metrics` is a file, but this stage writes `metrics/prepare.json`" in result.stderr
    assert "Traceback" not in result.stderr
    assert file_hashes(project / "data/task") == before  # data and metrics still agree


def test_a_stale_temporary_output_of_either_kind_is_cleared(tmp_path):
    project = make_project(tmp_path)
    (project / "data").mkdir(parents=True, exist_ok=True)
    (project / "data/.task.tmp").write_text("left by a killed run\n")  # a file where a folder goes
    (project / "metrics").mkdir(exist_ok=True)
    (project / "metrics/.prepare.json.tmp").mkdir()  # a folder where a file goes
    stage(project, "prepare")
    assert (project / "data/task/train.parquet").is_file() and (project / "metrics/prepare.json").is_file()
    assert not (project / "data/.task.tmp").exists() and not (project / "metrics/.prepare.json.tmp").exists()


def no_space(path="data/task/train.parquet"):
    import errno

    return OSError(errno.ENOSPC, "No space left on device", path)


def test_a_full_disk_while_datasets_caches_an_input_is_not_blamed_on_the_input(task_dir, monkeypatch):
    import pipeline.files as files
    from pipeline.config import ConfigError

    def load_dataset(*args, **kwargs):
        try:
            raise no_space("/cache/datasets/json/train.arrow")
        except OSError as exc:
            raise RuntimeError("An error occurred while generating the dataset") from exc
    monkeypatch.setattr("datasets.load_dataset", load_dataset)  # pipeline.files imports it where it loads
    with pytest.raises(ConfigError) as info:
        files.load_local_file(task_dir / "train.jsonl")
    message = str(info.value)
    assert "train.jsonl: no space left on the device while datasets converted it" in message
    assert "HF_DATASETS_CACHE" in message and "UTF-8" not in message


def test_a_full_disk_during_a_stage_exits_2_with_where_and_what_to_do(tmp_path, monkeypatch, capsys):
    from pipeline.stage import run_stage

    project = make_project(tmp_path)
    monkeypatch.chdir(project)

    def work(params):
        raise RuntimeError("writing the shard failed") from no_space()
    with pytest.raises(SystemExit) as exit_:
        run_stage("prepare", work, "metrics/prepare.json", track=False, outputs=("data/task",))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "[prepare] error: no space left on the device writing `data/task/train.parquet`" in err
    assert "GiB free" in err and "the filesystem mounted at" in err and "rerun starts clean" in err


@pytest.mark.parametrize("fails", [False, True])
def test_a_stage_puts_its_data_and_its_metrics_in_place_together_or_not_at_all(tmp_path, monkeypatch, fails):
    from pipeline.config import ConfigError
    from pipeline.io import atomic_dir, read_json, write_json
    from pipeline.stage import run_stage

    project = make_project(tmp_path)
    monkeypatch.chdir(project)
    with atomic_dir("data/task") as tmp:
        (tmp / "rows.txt").write_text("old\n")
    write_json("metrics/prepare.json", {"rows": "old"})

    def work(params):
        with atomic_dir("data/task") as tmp:
            (tmp / "rows.txt").write_text("new\n")
        assert (project / "data/task/rows.txt").read_text() == "old\n"  # not in place before the metrics are
        if fails:
            raise ConfigError("something found after the data was written")
        return {"train_docs": 1, "dev_docs": 1, "test_docs": 1, "classes": 2, "rows": "new"}
    if fails:
        with pytest.raises(SystemExit):
            run_stage("prepare", work, "metrics/prepare.json", track=False, outputs=("data/task",))
    else:
        run_stage("prepare", work, "metrics/prepare.json", track=False, outputs=("data/task",))
    state = "old" if fails else "new"
    assert (project / "data/task/rows.txt").read_text() == f"{state}\n"
    assert read_json(project / "metrics/prepare.json")["rows"] == state
    assert not list((project / "data").glob(".task*")) and not list((project / "metrics").glob(".*"))
