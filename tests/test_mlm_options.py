"""MLM options. Encoders without an MLM head: the head is detected from transformers' loading report, trained
alone with the encoder frozen, and the pretrain stage reports what the warm-up did. Whole-word masking."""

import subprocess
import sys

import torch
import yaml
from datasets import Dataset
from transformers import AutoModel, AutoTokenizer

from fixtures import make_project, read_metrics, set_params
from pipeline.config import from_dict
from pipeline.mlm import warm_up_head
from pipeline.model import load_mlm


def headless_copy(model_dir, directory):
    """The fixture model saved as a bare encoder (BertModel): what sentence-transformers ship."""
    AutoModel.from_pretrained(model_dir).save_pretrained(directory)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(directory)
    return directory


def params_for(**pretrain):
    return from_dict({"train": {"precision": "fp32", "checkpoint_steps": 0},
                      "pretrain": {"block_size": 16, "batch_size": 4, "max_tokens": 640, **pretrain}})


def test_head_detected_from_the_loading_report(tiny_model, tmp_path):
    _, complete = load_mlm(str(tiny_model), False, with_head_report=True)
    assert complete == {"head_complete": True, "head_missing_keys": []}
    headless = headless_copy(tiny_model, tmp_path / "headless")
    _, missing = load_mlm(str(headless), False, with_head_report=True)
    assert not missing["head_complete"]
    assert missing["head_missing_keys"] and all(k.startswith("cls.") for k in missing["head_missing_keys"])
    assert "cls.predictions.transform.dense.weight" in missing["head_missing_keys"]


def corpus():
    return Dataset.from_dict({"text": ["great film boring plot superb acting dull ending " * 8] * 20})


def test_warmup_trains_the_head_and_leaves_the_encoder(tiny_model, tmp_path):
    headless = headless_copy(tiny_model, tmp_path / "headless")
    params = params_for(head_warmup_tokens=640, head_warmup_lr=1e-2)
    model, head = load_mlm(str(headless), False, with_head_report=True)
    tokenizer = AutoTokenizer.from_pretrained(headless)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    done = warm_up_head(model, tokenizer, corpus(), params.pretrain, params.train, head, tmp_path / "head",
                        tmp_path / "main", "r1")
    assert done["done"] and done["tokens"] >= 640 and done["steps"] > 0
    after = model.state_dict()
    encoder = [k for k in before if k.startswith("bert.")]
    own_head = [k for k in before if k.startswith("cls.") and k != "cls.predictions.decoder.weight"]
    assert encoder and own_head
    assert all(torch.equal(before[k], after[k]) for k in encoder), "the warm-up moved encoder weights"
    # the tied decoder is the word-embedding matrix: frozen with the encoder
    assert torch.equal(after["cls.predictions.decoder.weight"], after["bert.embeddings.word_embeddings.weight"])
    changed = [k for k in own_head if not torch.equal(before[k], after[k])]
    assert "cls.predictions.transform.dense.weight" in changed and "cls.predictions.bias" in changed
    assert all(p.requires_grad for p in model.parameters()), "the encoder stayed frozen after the warm-up"


def test_complete_head_skips_the_warmup(tiny_model, tmp_path):
    params = params_for(head_warmup_tokens=640)
    model, head = load_mlm(str(tiny_model), False, with_head_report=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    done = warm_up_head(model, AutoTokenizer.from_pretrained(tiny_model), corpus(), params.pretrain, params.train,
                        head, tmp_path / "head", tmp_path / "main", "r1")
    assert done == {"done": False, "reason": "the checkpoint has a complete MLM head", "tokens": 0}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_embeddings_only_mlm_freezes_the_body(tiny_model, tmp_path):
    """pretrain.trainable: embeddings (Artetxe et al. 2020): the word embeddings and the MLM head learn, every
    other encoder weight (positions, layer norms, attention, feed-forward) stays as it was."""
    from pipeline.mlm import continue_pretraining

    def run(trainable):
        params = params_for(trainable=trainable, lr=1e-2, max_tokens=640)
        model, _ = load_mlm(str(tiny_model), False, with_head_report=True)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        continue_pretraining(model, AutoTokenizer.from_pretrained(tiny_model), corpus(), params.pretrain,
                             params.train, tmp_path / trainable)
        assert all(p.requires_grad for p in model.parameters()), "a weight stayed frozen after MLM"
        return {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}

    words = "bert.embeddings.word_embeddings.weight"
    changed = run("embeddings")
    assert words in changed and "cls.predictions.transform.dense.weight" in changed
    assert not {k for k in changed if k.startswith("bert.") and k != words}, changed
    assert {k for k in run("all") if k.startswith("bert.") and k != words}  # the same run moves the body otherwise


def test_untied_probe_trains_only_the_input_rows(tiny_model, tmp_path):
    """The spike-in probe's --untie: after untie_head, MLM with the body frozen and the head frozen moves the input
    word embeddings and nothing else; the decoder keeps the rows it had (its own copy, no longer the same tensor)."""
    from experiments.spike_in.probe import untie_head
    from pipeline.mlm import continue_pretraining, frozen

    params = params_for(trainable="embeddings", lr=1e-2, max_tokens=640)
    model, _ = load_mlm(str(tiny_model), False, with_head_report=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with frozen(untie_head(model)):
        continue_pretraining(model, AutoTokenizer.from_pretrained(tiny_model), corpus(), params.pretrain,
                             params.train, tmp_path / "untied")
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"bert.embeddings.word_embeddings.weight"}, changed


def test_pretrain_stage_reports_head_only_perplexity(tmp_path):
    project = make_project(tmp_path)
    model_dir = yaml.safe_load((project / "params.yaml").read_text())["model"]["name"]
    headless = headless_copy(model_dir, tmp_path / "headless")
    set_params(project, **{"model.name": str(headless), "pretrain.head_warmup_tokens": 6000,
                           "pretrain.head_warmup_lr": 1e-2, "train.checkpoint_steps": 0})
    for name in ("prepare", "collect", "pretrain"):
        result = subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=project, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
    m = read_metrics(project, "pretrain")
    assert m["head_complete"] is False and m["head_warmup"]["done"] and m["head_warmup"]["tokens"] >= 6000
    # the split of the drop in perplexity: head fitting first, then encoder adaptation
    assert m["perplexity_head_only"] < m["perplexity_before"]
    assert m["perplexity_after"] < m["perplexity_head_only"]
    assert m["tokens_trained"] >= 24_000  # the strategy's own budget, untouched by the warm-up
    assert "head warm-up" in result.stdout
    assert not (project / "models/.pretrain-head-work").exists()


def test_whole_word_mask_masks_every_piece_of_a_word(tmp_path):
    from transformers import BertTokenizer

    from pipeline.mlm import continue_pretraining, mlm_collator, pack

    words = ["unbelievable", "screenplay", "overdramatized", "film", "plot", "everyone"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "film", "plot", "un", "##bel", "##ie", "##vable",
             "screen", "##play", "over", "##dra", "##mat", "##ized", "every", "##one", "."]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    assert tokenizer.is_fast and tokenizer.tokenize("unbelievable") == ["un", "##bel", "##ie", "##vable"]
    rng = __import__("random").Random(0)
    texts = Dataset.from_dict({"text": [" ".join(rng.choice(words) for _ in range(30)) + " ." for _ in range(40)]})

    def split_words(p):
        blocks = pack(texts, tokenizer, 32, offsets=p.whole_word_mask)
        batch = mlm_collator(tokenizer, p)([blocks[i] for i in range(len(blocks))])
        masked = batch["labels"] != -100
        split = 0
        for row, ids in zip(masked.tolist(), [blocks[i]["input_ids"] for i in range(len(blocks))]):
            pieces = tokenizer.convert_ids_to_tokens(ids)
            start = 0
            for j in range(1, len(pieces) + 1):  # a word: a piece and the ## pieces after it
                if j == len(pieces) or not pieces[j].startswith("##"):
                    split += len(set(row[start:j])) > 1
                    start = j
        return split, int(masked.sum())

    whole = params_for(whole_word_mask=True, mlm_probability=0.2).pretrain
    token = params_for(whole_word_mask=False, mlm_probability=0.2).pretrain
    split, n = split_words(whole)
    assert n > 50 and split == 0
    split, n = split_words(token)
    assert n > 50 and split > 5  # per-token masking cuts words: the test can tell them apart

    # and the Trainer keeps the offsets the collator needs (remove_unused_columns would drop them)
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    params = params_for(whole_word_mask=True, block_size=32, max_tokens=512)
    stats = continue_pretraining(model, tokenizer, texts, params.pretrain, params.train, tmp_path / "work")
    assert stats["steps"] == 4 and stats["train_loss"] > 0
