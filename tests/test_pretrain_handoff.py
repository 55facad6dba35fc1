"""The classifier starts from what `pretrain` wrote, never from the base model (`model.name`).

`pretrain` runs for real (source `task`, a few steps) on a fixture project, so models/pretrained
differs from the base model; then the real `finetune` stage runs in this process with a
TrainerCallback added to every Trainer, which copies the weights the Trainer holds at step 0:
when training begins and again just before the first optimizer step. Every encoder tensor of
those copies must equal models/pretrained/model.safetensors exactly, for the flat and the
hierarchical classifier alike.
"""

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import Trainer, TrainerCallback

from fixtures import ROOT, make_project, read_metrics, set_params

# Where each model keeps the encoder. models/pretrained is a BertForMaskedLM: encoder under `bert.`,
# MLM head under `cls.` (dropped by fine-tuning). The flat classifier (BertForSequenceClassification)
# keeps `bert.`; HierarchicalClassifier calls it `encoder.`. A pooler is new in either classifier
# (the MLM has none; the hierarchical model drops it), like the classification head.
SAVED_PREFIX = "bert."
CLASSIFIER = {"flat": ("bert.", "BertForSequenceClassification"),
              "hierarchical": ("encoder.", "HierarchicalClassifier")}
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")


def encoder_tensors(state: dict, prefix: str) -> dict:
    """The encoder's tensors, named without the model's prefix (`embeddings...`, `encoder.layer.0...`)."""
    tensors = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in tensors.items() if not k.startswith("pooler.")}


def stage(project, name):
    result = subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    if result.returncode != 0:
        raise AssertionError(f"stage {name} failed:\n{result.stderr[-4000:]}")


class StepZero(TrainerCallback):
    """Copies what the Trainer holds before it has changed anything: at `on_train_begin` and at the
    first `on_pre_optimizer_step` (gradients computed, not yet applied), with the names of the
    parameters that the optimizer is about to update."""

    def __init__(self):
        self.at_begin = self.before_first_step = None

    @staticmethod
    def _copy(state, model):
        return {"step": state.global_step, "class": type(model).__name__,
                "weights": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.at_begin = self._copy(state, model)

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.before_first_step is None:
            self.before_first_step = self._copy(state, model)
            updated = {id(p) for group in optimizer.param_groups for p in group["params"]}
            self.before_first_step["optimized"] = {n for n, p in model.named_parameters() if id(p) in updated}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fixture project after prepare, collect and a short `task` pretraining (as DVC runs them)."""
    project = make_project(tmp_path_factory.mktemp("handoff"))
    set_params(project, **{"pretrain.source": "task", "pretrain.max_tokens": 4000, "train.checkpoint_steps": 0,
                           "finetune.epochs": 1})
    for name in ("prepare", "collect", "pretrain"):
        stage(project, name)
    assert read_metrics(project, "pretrain")["steps"] > 0
    return project


def finetune_capturing_step_zero(project, monkeypatch) -> StepZero:
    """Run the real `finetune` stage (its `__main__`, as `python -m stages.finetune` does) in `project`,
    with a StepZero callback added to every Trainer it builds."""
    spy = StepZero()
    init = Trainer.__init__

    def init_with_spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(spy)

    monkeypatch.setattr(Trainer, "__init__", init_with_spy)
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    runpy.run_module("stages.finetune", run_name="__main__")
    return spy


@pytest.mark.parametrize("kind", ["flat", "hierarchical"])
def test_finetune_starts_from_models_pretrained(project, kind, monkeypatch):
    set_params(project, **{"finetune.model": kind})
    base_dir = Path(yaml.safe_load((project / "params.yaml").read_text())["model"]["name"])
    pretrained = encoder_tensors(load_file(project / "models/pretrained/model.safetensors"), SAVED_PREFIX)
    base = encoder_tensors(load_file(base_dir / "model.safetensors"), SAVED_PREFIX)
    num_layers = json.loads((project / "models/pretrained/config.json").read_text())["num_hidden_layers"]

    # what is compared: the embeddings and every layer of the encoder
    layers = {int(m.group(1)) for k in pretrained if (m := _LAYER.match(k))}
    assert layers == set(range(num_layers)) and num_layers > 0, sorted(pretrained)
    assert "embeddings.word_embeddings.weight" in pretrained, sorted(pretrained)
    # so that "equals the base model" cannot pass: pretraining moved every part of the encoder
    assert pretrained.keys() == base.keys()
    for part in ["embeddings.", *(f"encoder.layer.{i}." for i in range(num_layers))]:
        assert any(not torch.equal(v, base[k]) for k, v in pretrained.items() if k.startswith(part)), \
            f"pretraining left `{part}` as in the base model: this test could not tell them apart"

    spy = finetune_capturing_step_zero(project, monkeypatch)
    assert read_metrics(project, "finetune")["resumed_from_step"] == 0

    prefix, model_class = CLASSIFIER[kind]
    assert spy.at_begin is not None and spy.before_first_step is not None, "the finetune Trainer never trained"
    for when, snapshot in (("train begin", spy.at_begin), ("before the first optimizer step", spy.before_first_step)):
        assert snapshot["step"] == 0, when
        assert snapshot["class"] == model_class, (when, snapshot["class"])
        encoder = encoder_tensors(snapshot["weights"], prefix)
        # every encoder tensor of the classifier is one of the pretrained ones, and vice versa
        assert encoder.keys() == pretrained.keys(), (when, sorted(encoder.keys() ^ pretrained.keys()))
        differ = [k for k, v in pretrained.items() if not torch.equal(encoder[k], v)]
        from_base = [k for k in differ if torch.equal(encoder[k], base[k])]
        assert not differ, (f"{kind} classifier at step 0 ({when}) does not hold models/pretrained's encoder: "
                            f"{len(differ)} of {len(pretrained)} tensors differ, {len(from_base)} of them equal "
                            f"the base model `{base_dir}`: {differ[:5]}")
    # and those are the tensors being trained (not a copy beside the model)
    assert {prefix + k for k in pretrained} <= spy.before_first_step["optimized"]
