"""Hierarchical chunk model: chunking on ids, padding of chunks, pooling, save/load, optimiser groups."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

from pipeline.finetune import layerwise_param_groups
from pipeline.hierarchical import ChunkCollator, HierarchicalClassifier, HierarchicalConfig
from pipeline.text import chunk_ids

CLS, SEP = 101, 102
IDS = [CLS, *range(1, 11), SEP]  # ten body tokens


def test_chunks_are_exact_and_keep_special_tokens():
    assert chunk_ids(IDS, 6, max_chunks=5) == [[CLS, 1, 2, 3, 4, SEP], [CLS, 5, 6, 7, 8, SEP], [CLS, 9, 10, SEP]]
    assert chunk_ids(IDS, 6, max_chunks=5, overlap=1) == [[CLS, 1, 2, 3, 4, SEP], [CLS, 4, 5, 6, 7, SEP],
                                                          [CLS, 7, 8, 9, 10, SEP]]
    assert chunk_ids(IDS, 6, max_chunks=2) == [[CLS, 1, 2, 3, 4, SEP], [CLS, 5, 6, 7, 8, SEP]]
    assert chunk_ids(IDS, 12, max_chunks=3) == [IDS]  # fits in one chunk
    assert chunk_ids(IDS, 7, max_chunks=5) == [[CLS, 1, 2, 3, 4, 5, SEP], [CLS, 6, 7, 8, 9, 10, SEP]]
    assert chunk_ids([CLS, SEP], 6, max_chunks=3) == [[CLS, SEP]]
    assert chunk_ids([0, *range(1, 11), 2], 6, max_chunks=1, layout=(1, 1))[0] == [0, 1, 2, 3, 4, 2]
    with pytest.raises(ValueError, match="overlap"):
        chunk_ids(IDS, 6, max_chunks=3, overlap=4)


def test_collator_pads_chunks_and_tokens():
    batch = ChunkCollator(pad_token_id=0)([{"input_ids": [[CLS, 5, SEP]], "label": 1},
                                           {"input_ids": [[CLS, 1, 2, 3, 4, SEP], [CLS, 9, SEP]], "label": 0}])
    assert batch["input_ids"].shape == (2, 2, 8)  # two chunks, six tokens rounded up to 8
    assert batch["input_ids"][0, 0].tolist() == [CLS, 5, SEP, 0, 0, 0, 0, 0]
    assert batch["attention_mask"][0].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [0] * 8]  # padding chunk: all zero
    assert batch["attention_mask"][1, 1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert batch["labels"].tolist() == [1, 0]


def tiny_model(pooling: str, seed: int = 0) -> HierarchicalClassifier:
    torch.manual_seed(seed)
    encoder = BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
    return HierarchicalClassifier(HierarchicalConfig(encoder=encoder, pooling=pooling, max_chunks=3, num_labels=3))


def texts(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    one = [[CLS, *torch.randint(5, 100, (5,), generator=g).tolist(), SEP]]
    three = [[CLS, *torch.randint(5, 100, (n,), generator=g).tolist(), SEP] for n in (10, 10, 3)]
    return one, three


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_forward_backward_and_padding_chunks_change_nothing(pooling):
    model = tiny_model(pooling).eval()
    collate = ChunkCollator(pad_token_id=0)
    one, three = texts()
    alone = model(**collate([{"input_ids": one}])).logits
    both = model(**collate([{"input_ids": one}, {"input_ids": three}])).logits
    assert torch.allclose(alone[0], both[0], atol=1e-5)  # two padding chunks and padded tokens are ignored

    model.train()
    out = model(**collate([{"input_ids": one, "label": 0}, {"input_ids": three, "label": 2}]))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_pooling_matches_chunks_encoded_one_by_one(pooling):
    model = tiny_model(pooling).eval()
    _, three = texts(1)
    states = torch.stack([model.encoder(input_ids=torch.tensor([c])).last_hidden_state[0, 0] for c in three])
    pooled = states.mean(0) if pooling == "mean" else states.amax(0)
    want = model.classifier(pooled)
    got = model(**ChunkCollator(pad_token_id=0)([{"input_ids": three}])).logits[0]
    assert torch.allclose(got, want, atol=1e-5)


def test_attention_weights_sum_to_one_over_real_chunks_only():
    model = tiny_model("attention").eval()
    reps = torch.randn(2, 3, 16)
    real = torch.tensor([[True, False, False], [True, True, True]])
    pooled = model._pool(reps, real)
    assert torch.allclose(pooled[0], reps[0, 0], atol=1e-6)  # a single real chunk gets all the weight


def test_saved_and_loaded_as_safetensors_through_auto_class(tmp_path):
    model = tiny_model("attention").eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, use_safetensors=True).eval()
    assert isinstance(loaded, HierarchicalClassifier) and loaded.config.pooling == "attention"
    batch = ChunkCollator(pad_token_id=0)([{"input_ids": t} for t in texts(2)])
    assert torch.equal(model(**batch).logits, loaded(**batch).logits)


def test_from_encoder_keeps_pretrained_weights(tmp_path):
    torch.manual_seed(3)
    encoder = BertModel(BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=32))
    encoder.save_pretrained(tmp_path)
    model = HierarchicalClassifier.from_encoder(BertModel.from_pretrained(tmp_path), "max", max_chunks=2,
                                                num_labels=2, id2label={0: "neg", 1: "pos"})
    assert torch.equal(model.encoder.encoder.layer[1].output.dense.weight, encoder.encoder.layer[1].output.dense.weight)
    assert model.encoder.pooler is None and model.config.id2label[1] == "pos"


def test_layerwise_decay_groups_for_hierarchical_model():
    model, lr, decay = tiny_model("attention"), 2e-5, 0.95
    groups = layerwise_param_groups(model, lr, decay, weight_decay=0.01)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["encoder.embeddings.word_embeddings.weight"])] == pytest.approx(lr * decay ** 3)
    assert lr_of[id(named["encoder.encoder.layer.0.attention.self.query.weight"])] == pytest.approx(lr * decay ** 2)
    assert lr_of[id(named["encoder.encoder.layer.1.output.dense.weight"])] == pytest.approx(lr * decay)
    assert lr_of[id(named["chunk_attention.0.weight"])] == pytest.approx(lr)
    assert lr_of[id(named["classifier.weight"])] == pytest.approx(lr)


@pytest.mark.parametrize("max_length,overlap,max_chunks", [(8, 0, 3), (8, 2, 10), (12, 5, 2), (16, 0, 100), (6, 3, 4)])
def test_tokenizer_overflow_chunks_equal_chunk_ids(tmp_path, max_length, overlap, max_chunks):
    """The fast tokenizer's own overflow + stride gives exactly `chunk_ids` on the full ids, and the
    full length before any chunk is dropped."""
    import random

    from fixtures import NEGATIVE, POSITIVE, REVIEW, make_tokenizer
    from pipeline.text import special_layout, tokenize_for_chunks

    tokenizer = make_tokenizer(tmp_path / "tok")
    assert tokenizer.is_fast
    rng = random.Random(max_length * 100 + overlap)
    words = POSITIVE + NEGATIVE + REVIEW + ["unseenword", "x!", "it's", "<br />"]
    texts = ["", "great"] + [" ".join(rng.choices(words, k=rng.randint(1, 60))) for _ in range(60)]
    layout = special_layout(tokenizer)
    got = tokenize_for_chunks({"text": texts}, tokenizer, max_length, max_chunks, overlap, layout)
    full = tokenizer(texts)["input_ids"]
    want = [chunk_ids(ids, max_length, max_chunks, overlap, layout) for ids in full]
    assert got["input_ids"] == want
    assert got["full_length"] == [len(ids) for ids in full]
    assert got["chunks"] == [len(c) for c in want]
    assert any(n > 1 for n in got["chunks"])  # the texts do overflow
