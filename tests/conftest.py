import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from fixtures import make_task, make_tiny_bert  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("model"))


@pytest.fixture
def task_dir(tmp_path) -> Path:
    return make_task(tmp_path / "task")


@pytest.fixture
def no_hub(monkeypatch):
    """Pretend the Hub is unreachable, whatever this machine's network."""
    import pipeline.sources

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pipeline.sources, "hub_reachable", lambda timeout=5.0: False)
