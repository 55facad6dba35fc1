"""finetune.model: prompt (issue 43): classification through the MLM head, a template with one mask slot and a
verbalizer; zero-shot with finetune.epochs 0."""

from __future__ import annotations

import subprocess

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForMaskedLM

from fixtures import make_project, read_metrics
from pipeline.config import ConfigError, from_dict
from pipeline.encoding import dynamic_padding, encode_split
from pipeline.cloze import split_template
from pipeline.prompt import PromptClassifier, label_word_ids, prompt_for

LABELS = {"names": ["0", "1"], "values": ["0", "1"]}


def recipe(**prompt):
    return from_dict({"finetune": {"model": "prompt", "prompt": prompt}, "model": {"max_length": 32}}).finetune


@pytest.fixture
def parts(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    mlm = BertForMaskedLM.from_pretrained(tiny_model).eval()
    words, mask = prompt_for(tokenizer, recipe(), LABELS)
    return tokenizer, mlm, words, mask


def test_the_class_scores_are_the_heads_label_word_logits_at_the_mask(parts):
    tokenizer, mlm, words, mask = parts
    model = PromptClassifier.from_mlm(mlm, words, mask, num_labels=2).eval()
    data = encode_split(Dataset.from_dict({"text": ["a great film", "an awful dull plot"], "label": [1, 0]}),
                        tokenizer, 32, recipe())
    ids = torch.tensor(data["input_ids"][0])[None]
    with torch.no_grad():
        scores = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
        vocab = mlm(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
    at = int((ids[0] == tokenizer.mask_token_id).nonzero())
    expected = torch.stack([vocab[at, w].mean() for w in words])
    assert torch.allclose(scores, expected, atol=1e-5), (scores, expected)


def test_truncation_cuts_the_text_never_the_template(parts):
    tokenizer, _, _, _ = parts
    long = " ".join(["the film was great and the plot was dull"] * 20)
    for mode in ("head", "tail", "head_tail"):
        f = from_dict({"finetune": {"model": "prompt", "truncation": mode, "head_tokens": 8},
                       "model": {"max_length": 32}}).finetune
        row = encode_split(Dataset.from_dict({"text": [long], "label": [1]}), tokenizer, 32, f)[0]
        before, after = split_template(f.prompt.template, tokenizer)
        assert len(row["input_ids"]) == 32 and row["input_ids"].count(tokenizer.mask_token_id) == 1
        assert row["input_ids"][-1 - len(after):-1] == after  # the template's end, then [SEP]
        assert row["full_length"] > 32


@pytest.mark.parametrize("prompt, message", [
    ({"template": "{text} It was good."}, r"must hold `\{mask\}` exactly once"),
    ({"template": "It was {mask}."}, r"must hold `\{text\}` exactly once"),
    ({"verbalizer": {"0": ["terrible"]}}, r"no label words for the class `1`"),
    ({"verbalizer": {"0": "terrible", "1": "great", "2": "fine"}}, r"\['2'\] are not classes of the task"),
    ({"verbalizer": {"0": "terrible", "1": "greatness"}}, r"the label word `greatness` \(class `1`\) is \d+ tokens"),
])
def test_template_and_verbalizer_errors_name_what_to_fix(parts, prompt, message):
    tokenizer = parts[0]
    with pytest.raises(ConfigError, match=message):
        prompt_for(tokenizer, recipe(**prompt), LABELS)


def test_zero_shot_is_only_for_the_prompt_model():
    with pytest.raises(ConfigError, match=r"`finetune.epochs` is 0; .*zero-shot: finetune.model prompt only"):
        from_dict({"finetune": {"epochs": 0}})
    assert from_dict({"finetune": {"epochs": 0, "model": "prompt"}}).finetune.epochs == 0


def test_zero_shot_runs_no_training_step_and_round_trips(parts, tmp_path):
    from pipeline.finetune import finetune

    tokenizer, mlm, words, mask = parts
    params = from_dict({"model": {"max_length": 32}, "train": {"precision": "fp32", "checkpoint_steps": 0},
                        "finetune": {"model": "prompt", "epochs": 0}})
    data = encode_split(Dataset.from_dict({"text": ["a great film", "an awful plot"] * 4, "label": [1, 0] * 4}),
                        tokenizer, 32, params.finetune)
    model = PromptClassifier.from_mlm(mlm, words, mask, num_labels=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer, stats, curve = finetune(model, tokenizer, data, data, params.finetune, params.train, 0, tmp_path / "w")
    assert stats["steps"] == 0 and stats["zero_shot"] and len(curve) == 1 and 0 <= stats["dev_accuracy"] <= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    trainer.save_model(str(tmp_path / "saved"))
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    assert isinstance(loaded, PromptClassifier) and loaded.config.label_word_ids == words
    ids = torch.tensor(data["input_ids"][:1])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits, atol=1e-6)


def test_a_tiny_end_to_end_run_through_dvc_exp_run(tmp_path):
    project = make_project(tmp_path, **{"train.checkpoint_steps": 0, "pretrain.source": "none"})
    done = subprocess.run(["dvc", "exp", "run", "-S", "finetune.model=prompt"], cwd=project, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    finetuned, evaluated = read_metrics(project, "finetune"), read_metrics(project, "eval")
    assert finetuned["steps"] > 0 and evaluated["examples"] == 80 and evaluated["accuracy"] > 0.6
    assert "calibration" not in finetuned
    # zero-shot, calibrated: only finetune and evaluate re-run; the scores saved with the classifier
    done = subprocess.run(["dvc", "exp", "run", "-S", "finetune.model=prompt", "-S", "finetune.epochs=0",
                           "-S", "finetune.prompt.calibrate=content_free"], cwd=project, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert "Running stage 'pretrain'" not in done.stdout and "Running stage 'finetune'" in done.stdout
    finetuned = read_metrics(project, "finetune")
    assert finetuned["steps"] == 0 and len(finetuned["calibration"]) == 2
    saved = AutoModelForSequenceClassification.from_pretrained(project / "models" / "classifier")
    assert saved.config.calibration == finetuned["calibration"]


def test_calibration_makes_content_free_texts_score_the_classes_alike_and_keeps_the_ranking(parts):
    from pipeline.prompt import calibrate

    tokenizer, mlm, words, mask = parts
    model = PromptClassifier.from_mlm(mlm, words, mask, num_labels=2).eval()
    zero_shot = lambda **prompt: from_dict({"finetune": {"model": "prompt", "epochs": 0, "prompt": prompt},  # noqa: E731
                                            "model": {"max_length": 32}}).finetune
    f = zero_shot(calibrate="content_free", content_free=["N/A"])
    texts = ["a great film", "an awful dull plot", "fine", "N/A"]
    data = encode_split(Dataset.from_dict({"text": texts}), tokenizer, 32, f)
    batch = dynamic_padding(tokenizer, model)([{k: r[k] for k in ("input_ids", "attention_mask")} for r in data])
    with torch.no_grad():
        raw = model(**batch).logits
    shift = calibrate(model, tokenizer, f, 32)
    with torch.no_grad():
        calibrated = model(**batch).logits
    assert model.config.calibration == shift and torch.allclose(torch.tensor(shift), raw[3], atol=1e-5)
    assert torch.allclose(calibrated[3], torch.zeros(2), atol=1e-5)  # "N/A" itself: the classes alike
    assert torch.allclose(calibrated, raw - raw[3], atol=1e-5)
    margins = lambda x: (x[:, 1] - x[:, 0]).argsort()  # noqa: E731
    assert torch.equal(margins(raw), margins(calibrated))
    two = zero_shot(calibrate="content_free", content_free=["N/A", ""])
    assert calibrate(model, tokenizer, two, 32) != shift  # the mean over both texts


def test_calibration_is_for_an_untrained_prompt_classifier():
    with pytest.raises(ConfigError, match=r"`finetune.prompt.calibrate` is 'content_free'; .*finetune.epochs 0"):
        from_dict({"finetune": {"model": "prompt", "epochs": 2, "prompt": {"calibrate": "content_free"}}})
    assert from_dict({"finetune": {"model": "prompt", "epochs": 0,
                                   "prompt": {"calibrate": "content_free"}}}).finetune.prompt.calibrate == "content_free"


def test_prompt_based_continued_pretraining_wraps_each_document_and_never_targets_the_slot(tiny_model, tmp_path):
    from pipeline.mlm import continue_pretraining, in_template, mlm_collator, pack

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    params = from_dict({"pretrain": {"max_tokens": 640, "block_size": 16, "batch_size": 4, "prompt_corpus": True,
                                     "mlm_probability": 0.9},
                        "train": {"precision": "fp32", "checkpoint_steps": 0}})
    corpus = Dataset.from_dict({"text": ["a great film", "an awful plot and a dull ending"] * 10})
    wrapped = in_template(corpus, "{text} It was {mask}.", tokenizer)
    assert wrapped[0]["text"] == f"a great film It was {tokenizer.mask_token}."
    blocks = pack(wrapped, tokenizer, 16)
    batch = mlm_collator(tokenizer, params.pretrain)([{"input_ids": b} for b in blocks["input_ids"]])
    slots = torch.tensor(blocks["input_ids"]) == tokenizer.mask_token_id
    assert slots.any() and (batch["labels"][slots] == -100).all()  # the slot is an input, never a target
    model = BertForMaskedLM.from_pretrained(tiny_model)
    stats = continue_pretraining(model, tokenizer, corpus, params.pretrain, params.train, tmp_path / "w",
                                 template=params.finetune.prompt.template)
    assert stats["tokens_trained"] >= 640


def test_a_prompt_classifier_refuses_an_mlm_head_that_was_never_trained(parts, tmp_path):
    import json

    tokenizer = parts[0]
    (tmp_path / "mlm_head.json").write_text(json.dumps({"trained": False, "warmup": "pretrain.head_warmup_tokens is 0"}))
    with pytest.raises(ConfigError, match=r"reads the MLM head of .*, which was never trained.*head_warmup_tokens"):
        prompt_for(tokenizer, recipe(), LABELS, tmp_path)
    (tmp_path / "mlm_head.json").write_text(json.dumps({"trained": True, "warmup": "complete"}))
    assert prompt_for(tokenizer, recipe(), LABELS, tmp_path) is not None
