"""The whole pipeline on a non-WordPiece encoder: a tiny DeBERTa-v2 whose SentencePiece tokenizer
is trained in the test, fine-tuned as a hierarchical chunk model with attention pooling."""

import json
import os
import subprocess

from fixtures import make_project, read_metrics


def test_sentencepiece_deberta_hierarchical_pipeline(tmp_path):
    project = make_project(tmp_path, encoder="deberta", **{
        "pretrain.source": "task", "model.max_length": 32, "finetune.model": "hierarchical",
        "finetune.pooling": "attention", "finetune.max_chunks": 3, "finetune.chunk_overlap": 4,
        "finetune.epochs": 6})
    result = subprocess.run(["dvc", "repro"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    pretrain, evaluation = read_metrics(project, "pretrain"), read_metrics(project, "eval")
    assert pretrain["tokens_trained"] > 0
    assert pretrain["perplexity_after"] < pretrain["perplexity_before"]
    assert evaluation["accuracy"] >= 0.75, evaluation  # sentiment words decide the fixture's labels
    config = json.loads((project / "models/classifier/config.json").read_text())
    assert config["model_type"] == "dapt_hierarchical" and config["pooling"] == "attention"
    assert config["encoder"]["model_type"] == "deberta-v2"
    assert (project / "models/classifier/model.safetensors").exists()
    tokenizer = json.loads((project / "models/classifier/tokenizer_config.json").read_text())
    assert tokenizer["tokenizer_class"].startswith("DebertaV2Tokenizer")
    # texts longer than one chunk exist, so the chunk path was exercised
    assert any(
        int(row.split(",")[4]) > 32 for row in (project / "outputs/predictions.csv").read_text().splitlines()[1:])
