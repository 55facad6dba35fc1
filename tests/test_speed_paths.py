"""The fast paths compute the same thing as the standard ones."""

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import (AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification,
                          DataCollatorForLanguageModeling, DebertaV2Config, DebertaV2ForMaskedLM, RobertaConfig,
                          RobertaForMaskedLM)

from pipeline.config import from_dict
from pipeline.evaluate import predict
from pipeline.encoding import encode_split
from pipeline.mlm import MASKED_BUCKET, CountMasked, masked_only_forward, use_masked_only_head

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
    assert int(masked.sum()) % MASKED_BUCKET  # the static gather is padded to the bucket: padded rows are ignored
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


def test_masked_only_head_is_scoped(tiny_model):
    """The masked-only forward lives inside its block: the perplexity figure and training leave the model
    with its own forward (no side effect on whoever holds the model next)."""
    from datasets import Dataset

    from pipeline.config import from_dict
    from pipeline.mlm import masked_only_head, mlm_perplexity, pack

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = BertForMaskedLM.from_pretrained(tiny_model).eval()
    with masked_only_head(model) as on:
        assert on and model.forward.__func__ is masked_only_forward
    assert "forward" not in model.__dict__
    with masked_only_head(model, enabled=False) as on:
        assert not on
    blocks = pack(Dataset.from_dict({"text": ["great film boring plot " * 20] * 4}), tokenizer, 32)
    pretrain = from_dict({"pretrain": {"masked_only_head": True}}).pretrain
    mlm_perplexity(model, blocks, tokenizer, pretrain, "fp32", 0)
    assert "forward" not in model.__dict__


def test_length_grouped_predictions_equal_padded(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig.from_pretrained(tiny_model, num_labels=2)).eval()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(["great", "awful", "film", "plot", "the"], size=n)) for n in rng.integers(1, 60, 23)]
    params = from_dict({"model": {"max_length": 64}, "train": {"precision": "fp32"},
                        "finetune": {"eval_batch_size": 4}})
    encoded = encode_split(Dataset.from_dict({"text": texts, "label": [0] * len(texts)}),
                           tokenizer, params.model.max_length, params.finetune)
    batch = params.finetune.eval_batch_size
    grouped = predict(model, tokenizer, encoded, params.train, batch, "/tmp/dapt-test-grouped")
    padded = predict(model, tokenizer, encoded, params.train, batch, "/tmp/dapt-test-padded", pad_to=64)
    np.testing.assert_allclose(grouped, padded, atol=1e-5)
    assert (grouped.argmax(-1) == padded.argmax(-1)).all()


def test_tokenisation_is_cached_by_fingerprint(tiny_model, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    Dataset.from_dict({"text": ["great film"] * 50, "label": [1] * 50}).to_parquet(str(tmp_path / "d.parquet"))
    params = from_dict({"model": {"max_length": 32}})
    first = encode_split(Dataset.from_parquet(str(tmp_path / "d.parquet")),
                         tokenizer, params.model.max_length, params.finetune)
    second = encode_split(Dataset.from_parquet(str(tmp_path / "d.parquet")),
                          AutoTokenizer.from_pretrained(tiny_model), params.model.max_length, params.finetune)
    assert first.cache_files and first.cache_files == second.cache_files


def test_fast_dropout_mask_rate_and_scaling():
    from pipeline.fast_dropout import FastDropout, keep_mask

    torch.manual_seed(0)
    mask = keep_mask((2000, 2000), 0.1)
    assert mask.dtype == torch.bool and mask.shape == (2000, 2000)
    assert abs((~mask).float().mean().item() - 0.1) < 0.001  # 4M draws: std of the rate is 0.00015
    layer = FastDropout(0.25)
    x = torch.rand(1000, 1000) + 1.0
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75) and abs((~kept).float().mean().item() - 0.25) < 0.002
    assert torch.equal(layer.eval()(x), x)


@pytest.mark.parametrize("with_mask", [False, True])
def test_fast_dropout_attention_is_sdpa_with_a_mask(monkeypatch, with_mask):
    """With every value kept, the fast attention equals SDPA without dropout, scaled by 1/(1-p)."""
    import pipeline.fast_dropout as fd
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    mask = None
    if with_mask:
        mask = torch.ones(2, 1, 10, 10, dtype=torch.bool)
        mask[1, :, :, 7:] = False  # padding in the second sequence
    module = torch.nn.Module()
    module.is_causal = False
    want, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=8 ** -0.5)
    monkeypatch.setattr(fd, "keep_mask", lambda shape, p, device=None: torch.ones(shape, dtype=torch.bool))
    got, _ = fd.attention(module, q, k, v, mask, dropout=0.1, scaling=8 ** -0.5)
    assert torch.allclose(got, want / 0.9, atol=1e-5)


def test_fast_dropout_is_undone_after_training(tmp_path):
    from pipeline.fast_dropout import NAME, FastDropout, fast_dropout

    model = BertForMaskedLM(BertConfig(**{**TINY, "hidden_dropout_prob": 0.1,
                                          "attention_probs_dropout_prob": 0.1})).train()
    with fast_dropout(model):
        assert model.config._attn_implementation == NAME
        assert isinstance(model.bert.encoder.layer[0].output.dropout, FastDropout)
        loss = model(input_ids=torch.randint(5, 120, (2, 16)), labels=torch.randint(5, 120, (2, 16))).loss
        loss.backward()
        assert model.bert.embeddings.word_embeddings.weight.grad is not None
    assert model.config._attn_implementation == "sdpa"
    assert type(model.bert.encoder.layer[0].output.dropout) is torch.nn.Dropout
    model.save_pretrained(tmp_path)
    assert NAME not in (tmp_path / "config.json").read_text()


def test_fast_dropout_model_masks_padding_like_sdpa(tiny_model, monkeypatch):
    """A padded batch in training mode with the masks forced to keep everything must give the
    evaluation-mode (SDPA) logits: the padding mask reaches the fast attention."""
    import pipeline.fast_dropout as fd

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    batch = tokenizer(["great film", "awful boring dull film it was the worst of the plot and the cast"],
                      padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        want = model.eval()(**batch).logits
        monkeypatch.setattr(fd, "drop", lambda x, p: x)
        with fd.fast_dropout(model.train()):
            got = model(**batch).logits
    assert torch.allclose(got, want, atol=1e-5)


FAULTS_SCRIPT = """
import resource, sys, torch
sys.path.insert(0, "bench")
from common import release_free_memory
from pipeline.allocator import keep_freed_memory
keep_freed_memory(sys.argv[1] == "on")  # what run_stage does with train.keep_freed_memory
def step():  # a 96 MB tensor per 'step', above glibc's largest mmap threshold (32 MB); its page faults
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(24 * 2**20)
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults = [step() for _ in range(10)]
if "release" in sys.argv[2:]:  # then hand the free pages back, and one more step
    release_free_memory()
    faults.append(step())
print(*faults)
"""


def count_faults(*args: str) -> list[int]:
    """FAULTS_SCRIPT in its own process (the allocator setting is process-wide): faults per step."""
    out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, *args], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return [int(v) for v in out.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_reuses_large_blocks_without_page_faults():
    """train.keep_freed_memory (pipeline/allocator.py): a large tensor freed by one step is reused by the
    next steps without the kernel mapping its pages again; turned off, every step faults its pages in anew.
    Each run in its own process: the setting is process-wide."""
    pages = 96 * 2**20 // resource.getpagesize()
    counts = {flag: count_faults(flag) for flag in ("on", "off")}
    assert all(n > 0.5 * pages for n in counts["off"])  # glibc's default: mmap'd anew, every page faulted again
    assert counts["on"][0] > 0.5 * pages  # the first allocation faults in either case
    # kept: the steps settle on reused heap. A small allocation can land in a freed block and split it,
    # so the heap may grow again in the first few steps (once or twice in 60 runs of this script, always
    # before the 5th step); the last five steps fault nothing.
    assert sum(counts["on"][5:]) < 0.05 * pages


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_free_memory_hands_kept_pages_back():
    """The benches time run_mlm's baseline in the same process as the pipeline's rows, which keep
    freed memory; bench/common.py's `release_free_memory` (malloc_trim) before the baseline's rounds hands those pages
    back, so the baseline faults its large tensors in as it would in a process of its own."""
    pages = 96 * 2**20 // resource.getpagesize()
    *_, kept, released = count_faults("on", "release")
    assert kept < 0.05 * pages  # kept: the 10th step reused the heap without faults (the test above)
    assert released > 0.5 * pages  # handed back: faulted in again
