"""The fast paths compute the same thing as the standard ones."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import (AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification,
                          DataCollatorForLanguageModeling, DebertaV2Config, DebertaV2ForMaskedLM, RobertaConfig,
                          RobertaForMaskedLM)

from pipeline.config import from_dict
from pipeline.evaluate import predict
from pipeline.finetune import encode_split
from pipeline.mlm import CountMasked, masked_only_forward, use_masked_only_head

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.mark.parametrize("make", [lambda: BertForMaskedLM(BertConfig(**TINY)),
                                  lambda: RobertaForMaskedLM(RobertaConfig(**TINY, pad_token_id=1)),
                                  lambda: DebertaV2ForMaskedLM(DebertaV2Config(**TINY, pad_token_id=0))],
                         ids=["bert", "roberta", "deberta-v2"])
def test_masked_only_loss_and_grads_equal_standard(make):
    torch.manual_seed(0)
    model = make().float()
    input_ids = torch.randint(5, 120, (4, 32))
    labels = torch.full_like(input_ids, -100)
    masked = torch.rand(input_ids.shape) < 0.15
    masked[0, 0] = True
    labels[masked] = input_ids[masked]
    reference = model(input_ids=input_ids, labels=labels).loss
    reference.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    fast = use_masked_only_head(model)
    assert fast.forward.__func__ is masked_only_forward
    for count in (None, int(masked.sum())):  # device-sized gather, and the static size the collator counts
        model.zero_grad()
        loss = fast(input_ids=input_ids, labels=labels, masked_count=count).loss
        assert loss.item() == pytest.approx(reference.item(), abs=1e-5)
        loss.backward()
        for name, grad in ref_grads.items():
            assert torch.allclose(model.get_parameter(name).grad, grad, atol=1e-5), name


def test_masked_only_with_collator_batch(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = BertForMaskedLM.from_pretrained(tiny_model).eval()
    collator = CountMasked(DataCollatorForLanguageModeling(tokenizer, seed=1))
    batch = collator([{"input_ids": tokenizer("great film " * 12)["input_ids"]} for _ in range(3)])
    assert batch["masked_count"] == int((batch["labels"] != -100).sum()) > 0
    count = batch.pop("masked_count")
    with torch.no_grad():
        reference = model(**batch).loss.item()
        assert use_masked_only_head(model)(**batch, masked_count=count).loss.item() == pytest.approx(reference, abs=1e-5)
        assert use_masked_only_head(model, enabled=False)(**batch).loss.item() == pytest.approx(reference, abs=1e-6)


def test_length_grouped_predictions_equal_padded(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig.from_pretrained(tiny_model, num_labels=2)).eval()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(["great", "awful", "film", "plot", "the"], size=n)) for n in rng.integers(1, 60, 23)]
    params = from_dict({"model": {"max_length": 64}, "train": {"precision": "fp32"},
                        "finetune": {"eval_batch_size": 4}})
    encoded = encode_split(Dataset.from_dict({"text": texts, "label": [0] * len(texts)}), tokenizer, params)
    grouped = predict(model, tokenizer, encoded, params, "/tmp/dapt-test-grouped")
    padded = predict(model, tokenizer, encoded, params, "/tmp/dapt-test-padded", pad_to=64)
    np.testing.assert_allclose(grouped, padded, atol=1e-5)
    assert (grouped.argmax(-1) == padded.argmax(-1)).all()


def test_tokenisation_is_cached_by_fingerprint(tiny_model, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    Dataset.from_dict({"text": ["great film"] * 50, "label": [1] * 50}).to_parquet(str(tmp_path / "d.parquet"))
    params = from_dict({"model": {"max_length": 32}})
    first = encode_split(Dataset.from_parquet(str(tmp_path / "d.parquet")), tokenizer, params)
    second = encode_split(Dataset.from_parquet(str(tmp_path / "d.parquet")),
                          AutoTokenizer.from_pretrained(tiny_model), params)
    assert first.cache_files and first.cache_files == second.cache_files
