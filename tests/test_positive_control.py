"""The positive control's base encoder (experiments/positive_control): `dvc repro` in its folder
builds a from-scratch BERT with a real MLM head on the cross-domain text and reports its held-out
perplexity on that domain and on review text. Here on fixture text and a fixture vocabulary."""

import json
import math
import shutil
import subprocess

import yaml
from transformers import AutoModelForMaskedLM

from fixtures import ROOT, make_corpora, make_task, make_tokenizer

XP = "experiments/positive_control"


def run(cwd, *cmd):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def test_dvc_repro_builds_the_base_with_a_real_head_and_measures_the_domain_gap(tmp_path):
    fixtures = tmp_path / "fixtures"
    task_dir = make_task(fixtures / "task")
    make_corpora(fixtures / "text", task_dir)
    make_tokenizer(fixtures / "tokenizer")
    news_dir = fixtures / "news"  # the cross-domain files only: what the base's spec reads
    news_dir.mkdir()
    for name in ("news_a.jsonl", "news_b.jsonl"):
        shutil.move(fixtures / "text" / name, news_dir / name)
    project = tmp_path / "project"
    for name in ("pipeline", "experiments"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns(
            "__pycache__", "data", "model", "metrics", "plots", "reports", ".grid", ".base-work", "dvc.lock"))
    spec = {"sources": [{"name": n, "path": str(news_dir / f"{n}.jsonl"), "text_field": "body", "weight": 1.0,
                         "licence": "synthetic"} for n in ("news_a", "news_b")]}
    (project / "corpora").mkdir()
    (project / "corpora" / "news.yaml").write_text(yaml.safe_dump(spec))
    xp = project / XP
    params = yaml.safe_load((xp / "params.yaml").read_text())
    params["base"].update({"tokenizer": str(fixtures / "tokenizer"), "layers": 2, "hidden": 32, "heads": 2,
                           "intermediate": 64, "max_position": 64})
    params["corpus"].update({"spec": "corpora/news.yaml", "source_files": str(news_dir), "min_chars": 12,
                             "imdb_text": str(task_dir / "train.jsonl"), "imdb_docs": 100,
                             "heldout_fraction": 0.1})
    params["pretrain"].update({"max_tokens": 60_000, "block_size": 32, "batch_size": 16, "lr": 3e-3,
                               "eval_max_tokens": 4096})
    params["train"].update({"precision": "fp32", "checkpoint_steps": 0})
    (xp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (("git", "init", "-q"), ("dvc", "init", "-q"), ("dvc", "config", "core.analytics", "false")):
        run(project, *cmd)

    run(xp, "dvc", "repro")

    corpus = json.loads((xp / "metrics" / "corpus.json").read_text())
    assert corpus["train_documents"] + corpus["heldout_news_documents"] == corpus["documents"] > 0
    assert corpus["heldout_imdb_documents"] == 100
    base = json.loads((xp / "metrics" / "base.json").read_text())
    assert base["tokens_trained"] >= 60_000 and base["steps"] > 0
    # a news-trained model predicts held-out news far better than review text: the gap is measured
    assert math.isfinite(base["perplexity_news"]) and math.isfinite(base["perplexity_imdb"])
    assert base["perplexity_news"] < 0.5 * base["perplexity_imdb"], base
    assert base["domain_gap"] > 2
    # the saved base is a complete MLM: the Auto class finds every weight (no fresh head) ...
    model, info = AutoModelForMaskedLM.from_pretrained(xp / "model", output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (2, 32)
    # ... and DVC tracks it: a second repro has nothing to do
    assert "Stage 'base' didn't change" in run(xp, "dvc", "repro").stdout


def test_probe_embeds_by_cls_or_by_the_mean_over_real_tokens(tiny_model):
    """The linear probe's two readings of a frozen encoder: the [CLS] state, or the mean over real tokens;
    padding a text in a batch with a longer one changes neither."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from experiments.positive_control.probe import embed

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModel.from_pretrained(tiny_model, dtype=torch.float32).eval()
    short, long = "a good film", "a long and rather dull film with a good cast and a bad plot"
    for pool in ("cls", "mean"):
        alone = embed(model, tokenizer, [short], 32, pool=pool)
        padded = embed(model, tokenizer, [short, long], 32, pool=pool)
        assert abs(alone[0] - padded[0]).max() < 1e-2, pool  # (embed may run in bf16 autocast)
    with torch.no_grad():
        hidden = model(**tokenizer([short], return_tensors="pt")).last_hidden_state[0]
    cls, mean = (embed(model, tokenizer, [short], 32, pool=pool)[0] for pool in ("cls", "mean"))
    assert abs(cls - hidden[0].numpy()).max() < 1e-2 and abs(mean - hidden.mean(0).numpy()).max() < 1e-2
    assert abs(cls - mean).max() > 0.1  # the two readings are different vectors
