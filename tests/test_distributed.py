"""DDP on CPU (gloo): the whole pipeline through `dvc repro` with launch.nproc_per_node 2, and
the 2-process run with batch b against the 1-process run with batch 2b."""

import os
import subprocess
import sys

import pytest

from fixtures import make_project, read_metrics as metrics, set_params
from pipeline.config import ConfigError, from_dict
from pipeline.distributed import accumulation_steps, torchrun_command






def run(cmd, project):
    result = subprocess.run(cmd, cwd=project, capture_output=True, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_torchrun_command_and_accumulation(monkeypatch):
    launch = from_dict({}).launch
    assert torchrun_command(launch, "stages.pretrain") is None
    launch = from_dict({"launch": {"nproc_per_node": 4, "nnodes": 2, "rdzv_endpoint": "node0:29400"}}).launch
    assert torchrun_command(launch, "stages.pretrain") == [
        "torchrun", "--nproc_per_node=4", "--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=node0:29400",
        "--rdzv_id=dapt", "-m", "stages.pretrain"]
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert accumulation_steps(8, 256, "pretrain") == 8  # 8 x 4 processes x 8 = 256
    assert accumulation_steps(8, 0, "pretrain") == 1
    with pytest.raises(ConfigError, match=r"`pretrain.target_batch` is 100, not a multiple of .* = 32"):
        accumulation_steps(8, 100, "pretrain")


@pytest.fixture(scope="module")
def ddp_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("ddp"), dropout=0.0)
    set_params(project, **{"launch.nproc_per_node": 2, "pretrain.batch_size": 8, "finetune.batch_size": 8,
                           "finetune.group_by_length": False, "finetune.epochs": 2, "pretrain.max_tokens": 16_000,
                           "train.checkpoint_steps": 0})
    result = subprocess.run(["dvc", "repro"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project, result.stdout + result.stderr


def test_two_process_pipeline_through_dvc(ddp_project):
    project, log = ddp_project
    assert "torchrun --nproc_per_node=2" in log and "-m stages.pretrain" in log
    pre, fine = metrics(project, "pretrain"), metrics(project, "finetune")
    assert pre["world_size"] == 2 and pre["effective_batch"] == 16 and pre["per_device_batch"] == 8
    assert fine["world_size"] == 2 and fine["effective_batch"] == 16
    assert metrics(project, "eval")["examples"] == 80
    # one set of outputs, complete, and no temporary leftovers from a second writer
    for out in ("models/pretrained", "models/classifier"):
        assert (project / out / "model.safetensors").exists()
    assert not [p.name for p in (project / "models").iterdir() if p.name.endswith((".tmp", ".old", "-work"))]


def test_two_processes_match_one_process_with_double_batch(ddp_project):
    project, _ = ddp_project
    two_pre, two = metrics(project, "pretrain"), metrics(project, "finetune")
    set_params(project, **{"launch.nproc_per_node": 1, "finetune.batch_size": 16, "pretrain.batch_size": 16})
    # fine-tuning first, from the same pretrained weights the 2-process run used
    run([sys.executable, "-m", "stages.launch", "stages.finetune"], project)
    one = metrics(project, "finetune")
    run([sys.executable, "-m", "stages.launch", "stages.pretrain"], project)
    one_pre = metrics(project, "pretrain")
    # MLM: same base weights and examples per step; the masks are drawn per process, so the
    # losses agree closely but not exactly
    assert one_pre["steps"] == two_pre["steps"] and one_pre["tokens_trained"] == two_pre["tokens_trained"]
    assert two_pre["train_loss"] == pytest.approx(one_pre["train_loss"], rel=0.02)
    assert one["world_size"] == 1 and one["effective_batch"] == two["effective_batch"] == 16
    assert one["steps"] == two["steps"]
    # same weights, same examples per step, no dropout: only float summation order differs
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-3)
    assert two["dev_accuracy"] == pytest.approx(one["dev_accuracy"], abs=0.03)


def test_a_prompt_classifier_trains_under_ddp_as_in_one_process(ddp_project):
    # finetune.model prompt reads the MLM head at the mask: under DDP the head runs inside the wrapped forward, so
    # two processes of batch 8 train what one process of batch 16 trains (no dropout: summation order only)
    project, _ = ddp_project
    out = {}
    for nproc, batch in ((2, 8), (1, 16)):
        set_params(project, **{"finetune.model": "prompt", "launch.nproc_per_node": nproc,
                               "finetune.batch_size": batch})
        run([sys.executable, "-m", "stages.launch", "stages.finetune"], project)
        out[nproc] = metrics(project, "finetune")
        run([sys.executable, "-m", "stages.evaluate"], project)
        assert metrics(project, "eval")["examples"] == 80
    two, one = out[2], out[1]
    assert two["world_size"] == 2 and one["world_size"] == 1 and two["steps"] == one["steps"] > 0
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-3)
    assert two["dev_accuracy"] == pytest.approx(one["dev_accuracy"], abs=0.03)
    set_params(project, **{"finetune.model": "flat"})
