"""transformers 5.25 turns its Hub kernels on when `from_pretrained(use_kernels=...)` is left unset; on CUDA a
model's `eval()` / `train()` then fetches kernels from the Hub (offline: an error; online: code of whatever
version the Hub holds). Every model load here must pass `train.hub_kernels`, off by default."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from transformers.modeling_utils import PreTrainedModel

from fixtures import ROOT, make_project


@pytest.fixture
def kernel_requests(monkeypatch):
    """The `use_kernels` every model load resolves to (what `from_pretrained` hands `set_use_kernels`,
    after its own default and the environment), recorded without fetching anything."""
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)  # the library's own default, not an override
    seen = []

    def record(self, use_kernels, *args, **kwargs):
        seen.append((type(self).__name__, bool(use_kernels)))

    monkeypatch.setattr(PreTrainedModel, "set_use_kernels", record)
    return seen


def test_every_stage_loads_its_models_without_hub_kernels(tmp_path, monkeypatch, kernel_requests):
    project = make_project(tmp_path, **{"train.checkpoint_steps": 0, "finetune.epochs": 1})
    for name in ("prepare", "collect"):
        done = subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.chdir(project)
    from pipeline.config import load_params
    from stages import evaluate, finetune, pretrain

    params = load_params("params.yaml")
    assert params.train.hub_kernels is False  # the default
    metrics = {"pretrain": pretrain.run(params), "finetune": finetune.run(params), "evaluate": evaluate.run(params)}
    loaded = [name for name, _ in kernel_requests]
    assert "BertForMaskedLM" in loaded and loaded.count("BertForSequenceClassification") == 2, loaded
    assert [on for _, on in kernel_requests] == [False] * len(kernel_requests), kernel_requests
    assert all(m["hub_kernels"] is False for m in metrics.values())  # the choice is recorded beside the results


def test_the_param_turns_them_on(tiny_model, kernel_requests):
    from pipeline.classifier import load_classifier
    from pipeline.model import load_mlm

    load_mlm(str(tiny_model), False, hub_kernels=True)
    load_classifier(str(tiny_model), False, hub_kernels=True)
    load_mlm(str(tiny_model), False)
    assert [on for _, on in kernel_requests] == [True, True, False]


# A model class's from_pretrained: AutoModel*, *For*, *Model (tokenizers and configs take no use_kernels)
MODEL_LOAD = re.compile(r"\b(Auto\w*Model\w*|\w+For\w+|\w+Model)\.from_pretrained\(")


def call_text(source: str, start: int) -> str:
    depth = 0
    for i in range(start, len(source)):
        depth += {"(": 1, ")": -1}.get(source[i], 0)
        if depth == 0 and source[i] == ")":
            return source[start:i + 1]
    return source[start:]


def test_no_model_load_in_the_code_leaves_use_kernels_unset():
    """Loads outside pipeline.model (benchmarks, experiments) name `use_kernels` themselves."""
    unset = []
    for folder in ("pipeline", "stages", "bench", "experiments"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            for match in MODEL_LOAD.finditer(source):
                call = call_text(source, match.end() - 1)
                if "use_kernels" not in call and "model_kwargs" not in call:
                    unset.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert not unset, unset
