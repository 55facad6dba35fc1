"""Fine-tuning optimiser groups, prediction order, metrics, MLM budget and perplexity, tracking."""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import (AutoTokenizer, BertConfig, BertForSequenceClassification, RobertaConfig,
                          RobertaForSequenceClassification)

from pipeline import tracking
from pipeline.config import from_dict
from pipeline.evaluate import metrics_from_predictions, predict
from pipeline.encoding import encode_split
from pipeline.finetune import layerwise_param_groups
from pipeline.mlm import budget_steps, heldout_blocks, mlm_perplexity, pack
from pipeline.model import load_mlm

TINY = dict(vocab_size=100, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=64)


@pytest.mark.parametrize("model", [BertForSequenceClassification(BertConfig(**TINY)),
                                   RobertaForSequenceClassification(RobertaConfig(**TINY, pad_token_id=1))],
                         ids=["bert", "roberta"])
def test_layerwise_decay_groups(model):
    lr, decay, layers = 2e-5, 0.95, 3
    groups = layerwise_param_groups(model, lr, decay, weight_decay=0.01)
    by_name = {}
    for group in groups:
        for p in group["params"]:
            by_name[id(p)] = group
    named = dict(model.named_parameters())
    prefix = "bert" if "bert.embeddings.word_embeddings.weight" in named else "roberta"
    expect = {
        f"{prefix}.embeddings.word_embeddings.weight": (lr * decay ** (layers + 1), 0.01),
        f"{prefix}.encoder.layer.0.attention.self.query.weight": (lr * decay ** layers, 0.01),
        f"{prefix}.encoder.layer.2.output.dense.weight": (lr * decay, 0.01),
        f"{prefix}.encoder.layer.2.output.dense.bias": (lr * decay, 0.0),
        f"{prefix}.encoder.layer.1.output.LayerNorm.weight": (lr * decay ** 2, 0.0),
        "classifier.out_proj.weight" if prefix == "roberta" else "classifier.weight": (lr, 0.01),
    }
    for name, (want_lr, want_wd) in expect.items():
        group = by_name[id(named[name])]
        assert group["lr"] == pytest.approx(want_lr), name
        assert group["weight_decay"] == want_wd, name
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_predict_returns_rows_in_dataset_order(tiny_model):
    """Batches are formed over length-sorted rows; the result must come back in dataset order."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig.from_pretrained(tiny_model, num_labels=2)).eval()
    texts = ["great film " * n for n in (9, 1, 5, 12, 3, 7, 2)]
    params = from_dict({"model": {"max_length": 64}, "train": {"precision": "fp32"},
                        "finetune": {"eval_batch_size": 3}})
    encoded = encode_split(Dataset.from_dict({"text": texts, "label": [0] * 7}),
                           tokenizer, params.model.max_length, params.finetune)
    probs = predict(model, tokenizer, encoded, params.train, params.finetune.eval_batch_size, "/tmp/dapt-test-predict")
    with torch.no_grad():
        for i, text in enumerate(texts):  # one at a time: no padding, no reordering
            logits = model(**tokenizer(text, return_tensors="pt")).logits
            assert probs[i] == pytest.approx(torch.softmax(logits, -1)[0].numpy(), abs=1e-5), i


def test_metrics_from_known_predictions():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    preds = np.array([0, 0, 1, 1, 1, 1, 0, 1])
    m = metrics_from_predictions(labels, preds, ["neg", "pos"], lengths=np.array([10, 200, 300, 600] * 2))
    assert m["accuracy"] == pytest.approx(6 / 8) and m["error_rate"] == pytest.approx(2 / 8)
    assert m["confusion_matrix"] == [[2, 1], [1, 4]]
    assert m["per_class"]["pos"]["recall"] == pytest.approx(4 / 5)
    f1_neg, f1_pos = 2 / 3, 0.8
    assert m["macro_f1"] == pytest.approx((f1_neg + f1_pos) / 2)
    assert m["length_buckets"]["<=128"] == {"examples": 2, "accuracy": 1.0}
    assert m["length_buckets"][">512"] == {"examples": 2, "accuracy": 1.0}
    assert m["length_buckets"]["257-512"]["accuracy"] == 0.0
    assert "roc_auc" not in m  # no probabilities given


def test_the_ranking_auc_does_not_depend_on_the_threshold():
    labels = np.array([0, 0, 0, 1, 1, 1])
    p1 = np.array([0.01, 0.02, 0.04, 0.03, 0.05, 0.06])  # argmax calls every text negative
    probs = np.stack([1 - p1, p1], axis=1)
    m = metrics_from_predictions(labels, probs.argmax(-1), ["neg", "pos"], probs=probs)
    # of the 9 (positive, negative) pairs the positive ranks higher in 8: 0.03 < 0.04
    assert m["accuracy"] == 0.5 and m["roc_auc"] == pytest.approx(8 / 9)
    three = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])  # perfect ranking, three classes
    assert metrics_from_predictions(np.arange(3), three.argmax(-1), list("abc"), probs=three)["roc_auc"] == 1.0
    assert metrics_from_predictions(np.zeros(3, int), three.argmax(-1), list("abc"), probs=three)["roc_auc"] is None


def test_budget_steps_give_equal_tokens():
    assert budget_steps(10_000, 128, 32) == math.ceil(10_000 / 4096)
    for eff in (8, 16, 32):
        assert budget_steps(65_536, 128, eff) * eff * 128 == 65_536


def test_pack_makes_full_blocks(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    texts = Dataset.from_dict({"text": ["great film " * n for n in range(1, 30)]})
    blocks = pack(texts, tokenizer, 16)
    total = sum(len(x) for x in tokenizer(list(texts["text"]))["input_ids"])
    assert len(blocks) == total // 16
    assert all(len(b) == 16 for b in blocks["input_ids"])


def test_heldout_perplexity_is_deterministic(tiny_model):
    params = from_dict({"pretrain": {"block_size": 16, "eval_max_tokens": 256}})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = load_mlm(str(tiny_model), False)
    blocks = heldout_blocks(Dataset.from_dict({"text": ["great film boring plot " * 20] * 5}), tokenizer,
                            params.pretrain, shuffle_seed=42)
    assert len(blocks) == 256 // 16
    a, b = (mlm_perplexity(model, blocks, tokenizer, params.pretrain, "fp32", mask_seed=42) for _ in range(2))
    assert a == b and a["masked_tokens"] > 0
    assert 1.0 < a["perplexity"] < 10 * len(tokenizer)  # untrained: about the vocabulary size


def test_stage_run_groups_by_strategy(monkeypatch, capsys):
    calls = {}

    class FakeRun:
        summary = {}
        settings = type("S", (), {"mode": "offline", "sync_dir": "wandb/offline-run-x"})()
        url = None

        def finish(self, exit_code=0):
            calls["exit_code"] = exit_code

    class FakeWandb:
        @staticmethod
        def init(**kwargs):
            calls.update(kwargs)
            return FakeRun()

        class Settings(dict):
            def __init__(self, **kwargs):
                super().__init__(kwargs)

    monkeypatch.delenv("WANDB_MODE", raising=False)  # unset: offline, passed to wandb.init
    monkeypatch.setitem(__import__("sys").modules, "wandb", FakeWandb)
    params = from_dict({"pretrain": {"source": "in_domain"}, "seed": 3})
    with tracking.stage_run(params, "pretrain") as run:
        tracking.log_summary(run, {"a": {"b": 1}})
    assert calls["group"] == "in_domain" and calls["job_type"] == "pretrain" and calls["mode"] == "offline"
    assert calls["config"]["pretrain"]["source"] == "in_domain" and calls["config"]["seed"] == 3
    assert run.summary == {"a/b": 1} and calls["exit_code"] == 0
    assert calls["settings"] == {"silent": True}  # W&B's own banners off; one line instead:
    assert capsys.readouterr().out == ("[pretrain] W&B run saved offline in wandb/offline-run-x "
                                       "(upload: wandb sync wandb/offline-run-x)\n")
    assert "WANDB_MODE" not in __import__("os").environ  # passed to wandb.init, the environment untouched
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with tracking.stage_run(params, "pretrain") as run:
        assert run is None


@pytest.mark.parametrize("kind", ["flat", "hierarchical"])
def test_bf16_checkpoint_loads_with_float32_master_weights(tmp_path, tiny_model, kind):
    """A checkpoint stored in bf16 (common on the Hub) must not be trained in bf16 weights."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from pipeline.classifier import load_classifier

    AutoModelForMaskedLM.from_pretrained(tiny_model).to(torch.bfloat16).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path)
    params = from_dict({"finetune": {"model": kind}})
    model = load_classifier(str(tmp_path), False, params.finetune, ["neg", "pos"])
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.dtype for p in load_mlm(str(tmp_path), False).parameters()} == {torch.float32}


def _deberta():
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification
    return DebertaV2ForSequenceClassification(DebertaV2Config(**TINY, relative_attention=True, position_buckets=8,
                                                              pos_att_type=["p2c", "c2p"]))


def _modernbert():
    from transformers import ModernBertConfig, ModernBertForSequenceClassification
    return ModernBertForSequenceClassification(ModernBertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, global_attn_every_n_layers=1, pad_token_id=0))


@pytest.mark.parametrize("make", [_deberta, _modernbert], ids=["deberta-v2", "modernbert"])
def test_layerwise_decay_follows_layer_names_of_other_encoders(make):
    import re

    model, lr, decay, layers = make(), 2e-5, 0.95, 3
    lr_of = {id(p): g["lr"] for g in layerwise_param_groups(model, lr, decay, 0.01) for p in g["params"]}
    seen = set()
    for name, param in model.named_parameters():
        layer = re.search(r"\.layers?\.(\d+)\.", name)
        if layer:
            want = lr * decay ** (layers - int(layer.group(1)))
        elif "embeddings." in name and "rel_embeddings" not in name:
            want = lr * decay ** (layers + 1)
        else:
            continue
        assert lr_of[id(param)] == pytest.approx(want), name
        seen.add(layer.group(1) if layer else "embeddings")
    assert seen == {"0", "1", "2", "embeddings"}
    head = [p for n, p in model.named_parameters() if n.startswith("classifier")]
    assert head and all(lr_of[id(p)] == pytest.approx(lr) for p in head)


def test_the_trainer_reports_to_wandb_only_inside_an_open_run(monkeypatch):
    """Outside a stage (no run open) the Trainer must not report to W&B: its callback would open an online
    run of its own and stop where no API key is configured."""
    fake = type("FakeWandb", (), {"run": None})
    monkeypatch.delenv("WANDB_MODE", raising=False)  # unset: offline, W&B on
    monkeypatch.setitem(__import__("sys").modules, "wandb", fake)
    assert tracking.report_to() == []
    fake.run = object()  # what stage_run's wandb.init leaves open
    assert tracking.report_to() == ["wandb"]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.report_to() == []
