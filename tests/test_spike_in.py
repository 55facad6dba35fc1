"""The spike-in control's vocabulary shift (experiments/spike_in/spike.py) on fixture reviews and a
fixture vocabulary: deterministic, chosen from training labels only, applied to test and corpus but
never to train, and no nonce form is a word any text already holds."""

import gzip
import json
import random
import re
import shutil
import subprocess

import pytest
from transformers import BertTokenizer

from experiments.spike_in import spike
from fixtures import NEGATIVE, NEWS, POSITIVE, REVIEW, ROOT, SPECIAL, news, review, write_jsonl

# rare whole words of the fixture vocabulary that no fixture text holds: the nonce pool
RARE = "zorbit quaffle glimmox vantrel droskel pimbry wuxtor"
CHARS = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'<>/-"))


def make_vocab(directory, extra=RARE.split()):
    vocab = SPECIAL + sorted(set(POSITIVE + NEGATIVE + REVIEW + NEWS + extra)) + CHARS + [f"##{c}" for c in CHARS]
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(directory)
    return directory


def make_xp(root, seed=0, ks=(0, 2, 4), flip_train=False, flip_test=False, placebo_extra="", forms=0):
    """The experiment's inputs under root/src and its params; returns the params dict."""
    rng = random.Random(7)
    src = root / "src"

    def rows(n, flip):
        out = []
        for i in range(n):
            label = i % 2
            out.append({"text": review(rng, label, rng.randint(12, 40)), "label": 1 - label if flip else label})
        return out

    write_jsonl(src / "train.jsonl.gz", rows(200, flip_train))
    write_jsonl(src / "test.jsonl.gz", rows(80, flip_test))
    write_jsonl(src / "unsup.jsonl.gz", [{"text": review(rng, None, 30)} for _ in range(120)])
    write_jsonl(src / "placebo" / "news.jsonl.gz", [{"text": news(rng, 30) + placebo_extra} for _ in range(50)])
    tok = make_vocab(src / "tokenizer")
    return {"spike": {"ks": list(ks), "seed": seed, "min_docs": 5, "forms": forms},
            "source": {"train": str(src / "train.jsonl.gz"), "test": str(src / "test.jsonl.gz"),
                       "unsup": str(src / "unsup.jsonl.gz"), "placebo": str(src / "placebo"),
                       "tokenizer": str(tok)}}


def read(path):
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def build(root, monkeypatch, **kw):
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(root)
    xp = make_xp(root, **kw)
    stats = spike.build(xp)
    table = json.loads((root / spike.DATA / "map.json").read_text())["table"]
    return xp, stats, table


def test_the_map_is_deterministic_given_the_seed(tmp_path, monkeypatch):
    _, _, first = build(tmp_path / "a", monkeypatch)
    _, _, again = build(tmp_path / "b", monkeypatch)
    _, _, other = build(tmp_path / "c", monkeypatch, seed=5)
    assert first == again
    assert [e["word"] for e in other] == [e["word"] for e in first]  # the words come from the data ...
    assert [e["nonce"] for e in other] != [e["nonce"] for e in first]  # ... the nonce forms from the seed
    shifted = [read(tmp_path / d / spike.DATA / "task" / "test_k004.jsonl.gz") for d in ("a", "b")]
    assert shifted[0] == shifted[1]


def test_words_are_chosen_from_training_labels_only(tmp_path, monkeypatch):
    _, _, base = build(tmp_path / "a", monkeypatch)
    _, _, test_flipped = build(tmp_path / "b", monkeypatch, flip_test=True)
    _, _, train_flipped = build(tmp_path / "c", monkeypatch, flip_train=True)
    assert test_flipped == base  # test labels are never read
    polarity = {e["word"]: e["polarity"] for e in base}
    assert set(polarity) <= set(POSITIVE + NEGATIVE)
    assert all((w in POSITIVE) == (p == "positive") for w, p in polarity.items())
    # flipping the training labels flips which words count as positive
    assert all((e["word"] in NEGATIVE) == (e["polarity"] == "positive") for e in train_flipped)


def words_of(rows):
    return [set(re.findall(r"[a-z]+", r["text"].lower())) for r in rows]


def test_the_map_applies_to_test_and_corpus_and_never_to_train(tmp_path, monkeypatch):
    xp, stats, table = build(tmp_path, monkeypatch)
    data = tmp_path / spike.DATA
    assert read(data / "task" / "train.jsonl.gz") == read(xp["source"]["train"])
    assert not (data / "task" / "dev.jsonl.gz").exists()  # dev is carved from the unshifted train by `prepare`
    test_in, unsup_in = read(xp["source"]["test"]), read(xp["source"]["unsup"])
    assert read(data / "task" / "test_k000.jsonl.gz") == test_in  # K = 0: nothing planted
    mapping = spike.map_for(table, 4)
    assert len(mapping) == 4
    for name, original in (("task/test_k004.jsonl.gz", test_in), ("corpus/unsup_k004.jsonl.gz", unsup_in)):
        shifted = read(data / name)
        assert [r.get("label") for r in shifted] == [r.get("label") for r in original]
        before, after = words_of(original), words_of(shifted)
        planted = sum(w in mapping for ws in before for w in ws)
        assert planted > 0
        for ws_before, ws_after in zip(before, after):
            assert not ws_after & set(mapping)  # every mapped word replaced, in any case
            assert {mapping[w] for w in ws_before & set(mapping)} <= ws_after
            assert ws_before - set(mapping) <= ws_after  # nothing else touched
    per_k = stats["per_k"]["k004"]
    assert per_k["test_replacements"] >= per_k["test_reviews_touched"] > 0
    # nested: the map at K = 2 is the first positive and the first negative word of the one at K = 4
    assert spike.map_for(table, 2).items() <= mapping.items()


def test_no_nonce_form_collides_with_a_word_in_any_text(tmp_path, monkeypatch):
    # the placebo text now holds three of the seven rare words: the four words need the other four
    xp, _, table = build(tmp_path, monkeypatch, ks=(0, 4), placebo_extra=" zorbit quaffle glimmox")
    nonces = {e["nonce"] for e in table}
    texts = [r["text"] for key in ("train", "test", "unsup") for r in read(xp["source"][key])]
    texts += [r["text"] for r in read(tmp_path / "src" / "placebo" / "news.jsonl.gz")]
    assert nonces == set(RARE.split()) - {"zorbit", "quaffle", "glimmox"}
    assert not nonces & spike.vocabulary(texts)
    assert len(nonces) == len(table)  # one form per word


def test_shared_forms_stand_for_every_word_of_their_polarity(tmp_path, monkeypatch):
    _, stats, table = build(tmp_path, monkeypatch, ks=(0, 6), forms=1)
    forms = {p: {e["nonce"] for e in table if e["polarity"] == p} for p in ("positive", "negative")}
    assert len(table) == 6 and all(len(f) == 1 for f in forms.values())
    assert forms["positive"] != forms["negative"]
    shifted = read(tmp_path / spike.DATA / "task" / "test_k006.jsonl.gz")
    (pos_form,), (neg_form,) = forms["positive"], forms["negative"]
    mapping = spike.map_for(table, 6)
    for before, after in zip(words_of(read(tmp_path / "src" / "test.jsonl.gz")), words_of(shifted)):
        assert (pos_form in after) == any(mapping.get(w) == pos_form for w in before)
        assert (neg_form in after) == any(mapping.get(w) == neg_form for w in before)


def test_too_few_usable_nonce_forms_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    xp = make_xp(tmp_path, ks=(0, 8))
    make_vocab(tmp_path / "src" / "tokenizer", extra=["zorbit"])
    with pytest.raises(spike.ConfigError, match="vocabulary has only 1 tokens absent"):
        spike.build(xp)


def test_dvc_repro_writes_the_shifted_data(tmp_path):
    """The experiment's dvc.yaml runs the stage from the project root on the params' paths."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "pipeline", project / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "experiments", project / "experiments",
                    ignore=shutil.ignore_patterns("__pycache__", "data", "metrics", "reports", ".grid", "dvc.lock",
                                                  "positive_control", "adapted", "base", ".landscape"))
    xp = make_xp(tmp_path)
    params = project / "experiments" / "spike_in" / "params.yaml"
    params.write_text(json.dumps(xp))  # YAML reads JSON
    for cmd in (("git", "init", "-q"), ("dvc", "init", "-q"), ("dvc", "config", "core.analytics", "false")):
        subprocess.run(cmd, cwd=project, check=True, capture_output=True)
    result = subprocess.run(["dvc", "repro"], cwd=project / "experiments" / "spike_in", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = project / "experiments" / "spike_in"
    assert sorted(p.name for p in (out / "data" / "task").iterdir()) == [
        "test_k000.jsonl.gz", "test_k002.jsonl.gz", "test_k004.jsonl.gz", "train.jsonl.gz"]
    metrics = json.loads((out / "metrics" / "shift.json").read_text())
    assert metrics["per_k"]["k004"]["corpus_replacements"] > 0


def test_mechanism_check_reads_a_known_layout():
    """embeddings.similarity on a hand-built matrix: nonce rows equal to their words score 1 on their word,
    sit on their side of the sentiment axis, and the two polarities' forms are as far apart as their words."""
    import torch

    from experiments.spike_in.embeddings import similarity

    vocab = {"great": 0, "awful": 1, "ligand": 2, "masovian": 3, "the": 4}
    mapping, polarity = {"great": "ligand", "awful": "masovian"}, {"great": "positive", "awful": "negative"}
    emb = torch.tensor([[1.0, 0.2, 0.0], [-1.0, 0.2, 0.0], [1.0, 0.2, 0.0], [-1.0, 0.2, 0.0], [0.0, 0.0, 1.0]])
    out = similarity(emb, vocab, mapping, polarity, base=emb.clone())
    assert out["cos_to_own_word"] == pytest.approx(1.0) and out["nearest_is_own_word"] == 1.0
    assert out["nonce_on_own_side_of_sentiment_axis"] == pytest.approx(out["word_on_own_side_of_sentiment_axis"])
    assert out["nonce_on_own_side_of_sentiment_axis"] > 0
    assert out["cos_between_polarity_forms"] == pytest.approx(float(torch.cosine_similarity(emb[0], emb[1], dim=0)))
    assert out["nonce_move_norm"] == 0.0
    swapped = emb.clone()
    swapped[[2, 3]] = emb[[3, 2]]  # each form now holds the other polarity's word
    flipped = similarity(swapped, vocab, mapping, polarity)
    assert flipped["nonce_on_own_side_of_sentiment_axis"] < 0 and flipped["nearest_is_own_word"] == 0.0


class _ClozeStub:
    """A stand-in MLM for cloze_polarity: at every position it favours the positive targets when `cue`
    is in the sequence (else the negative ones), or, with `copy`, it favours the token it is given."""

    def __init__(self, vocab, pos, neg, cue=None, copy=False):
        self.size, self.cue, self.copy, self.training = len(vocab), vocab.get(cue), copy, False
        self.pos, self.neg = [vocab[w] for w in pos], [vocab[w] for w in neg]

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def __call__(self, input_ids, **_):
        from types import SimpleNamespace

        import torch

        logits = torch.zeros(*input_ids.shape, self.size)
        if self.copy:  # reads the input token at each position: only an unmasked target helps it
            logits.scatter_(-1, input_ids.unsqueeze(-1), 5.0)
        else:
            positive = (input_ids == self.cue).any(-1)  # the cue anywhere in the sequence
            for row, is_pos in enumerate(positive.tolist()):
                logits[row, :, self.pos if is_pos else self.neg] += 3.0
        return SimpleNamespace(logits=logits)


def test_cloze_names_the_polarity_the_context_gives_and_masks_the_targets(tmp_path):
    """cloze_polarity scores what the model says at masked target positions: a model that follows a context
    cue is right where the cue agrees with the target and wrong where it does not; a model that could only
    copy the target itself is no better than always answering one polarity, so the targets were masked."""
    from transformers import BertTokenizerFast

    from experiments.spike_in.cloze import cloze_polarity

    tok = BertTokenizerFast.from_pretrained(make_vocab(tmp_path / "tok"))
    vocab = tok.get_vocab()
    targets = {"zorbit": "positive", "quaffle": "negative"}
    agree = ["the plot was zorbit and the cast great", "the plot was quaffle , the film awful"]
    clash = ["the plot was quaffle and the cast great"]
    follows_great = _ClozeStub(vocab, ["zorbit"], ["quaffle"], cue="great")
    out = cloze_polarity(follows_great, tok, agree, targets)
    assert out["positions"] == 2 and out["accuracy"] == 1.0 and out["positive_share"] == 0.5
    assert out["mean_signed_margin"] > 0 and out["auc"] == 1.0
    mixed = cloze_polarity(follows_great, tok, agree + clash, targets)
    assert mixed["accuracy"] == pytest.approx(2 / 3) and mixed["auc"] == 0.75  # one win, one tie of two pairs
    copier = _ClozeStub(vocab, ["zorbit"], ["quaffle"], copy=True)
    copied = cloze_polarity(copier, tok, agree + ["zorbit zorbit quaffle"], targets)
    assert copied["positions"] == 5 and copied["accuracy"] == pytest.approx(1 - copied["positive_share"])
    assert copied["auc"] == 0.5  # every margin ties
    with pytest.raises(ValueError, match="not tokens"):
        cloze_polarity(follows_great, tok, agree, {"notaword": "positive", "quaffle": "negative"})


def test_the_review_label_reference_answers_the_label_at_every_target(tmp_path):
    """review_label_reference: labels that match every target's polarity score 1, reversed labels 0, and a
    review holding both polarities scores one right and one wrong."""
    from transformers import BertTokenizerFast

    from experiments.spike_in.cloze import review_label_reference

    tok = BertTokenizerFast.from_pretrained(make_vocab(tmp_path / "tok"))
    targets = {"great": "positive", "awful": "negative"}
    texts = ["the film was great", "the plot was awful and awful"]
    right = review_label_reference(tok, texts, [1, 0], targets)
    assert right["positions"] == 3 and right["accuracy"] == 1.0 and right["auc"] == 1.0
    assert review_label_reference(tok, texts, [0, 1], targets)["auc"] == 0.0
    both = review_label_reference(tok, ["great cast , awful plot"], [1], targets)
    assert both["positions"] == 2 and both["accuracy"] == 0.5


def test_landscape_masks_leave_the_forms_visible_and_never_targets():
    """fixed_masks: the same seed gives the same masks; no nonce form or special token is masked or a target;
    every target is the token that stood there, replaced by [MASK] in the inputs; about p of the rest is masked."""
    import torch

    from experiments.spike_in.landscape import fixed_masks

    ids = torch.randint(10, 200, (64, 32), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1], ids[:, 5::7] = 2, 3, 7  # [CLS], [SEP] and a form every seventh position
    inputs, labels = fixed_masks(ids, [7], [2, 3], mask_id=4, p=0.3, seed=1)
    again = fixed_masks(ids, [7], [2, 3], mask_id=4, p=0.3, seed=1)
    assert torch.equal(inputs, again[0]) and torch.equal(labels, again[1])
    assert not torch.equal(inputs, fixed_masks(ids, [7], [2, 3], mask_id=4, p=0.3, seed=2)[0])
    targets = labels != -100
    assert not targets[torch.isin(ids, torch.tensor([7, 2, 3]))].any()
    assert torch.equal(inputs[targets], torch.full_like(inputs[targets], 4))
    assert torch.equal(labels[targets], ids[targets]) and torch.equal(inputs[~targets], ids[~targets])
    eligible = ~torch.isin(ids, torch.tensor([7, 2, 3]))
    assert 0.25 < targets.sum() / eligible.sum() < 0.35


def test_landscape_loss_is_the_models_own_and_the_fit_moves_only_the_rows(tmp_path):
    """RowLoss at the rows the matrix already holds equals the MLM's own masked loss; fitting lowers it, changes
    no weight of the model, and a row the loss does not depend on (a form absent from the windows) stays put."""
    import torch
    from transformers import BertForMaskedLM

    from experiments.spike_in.landscape import RowLoss, fit, fixed_masks
    from fixtures import make_tiny_bert

    model = BertForMaskedLM.from_pretrained(make_tiny_bert(tmp_path / "m", dropout=0.0)).eval()
    with torch.no_grad():  # the random init's tied rows are ~0.02 wide: logits too flat for the loss to move
        model.get_input_embeddings().weight.mul_(30)
    before = {n: w.detach().clone() for n, w in model.state_dict().items()}
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (24, 16), generator=torch.Generator().manual_seed(0))
    forms = [6, vocab - 1]  # one form in every window, one that never occurs
    ids = ids.masked_fill(ids == forms[1], 5)
    ids[:, ::4] = forms[0]
    inputs, labels = fixed_masks(ids, forms, [0, 1, 2, 3, 4], mask_id=4, p=0.2, seed=0)
    labels[labels != -100] = 9  # a target the visible form can learn to announce: the loss has a lower point
    loss = RowLoss(model, forms)
    own = model.get_input_embeddings().weight[forms].detach()
    with torch.no_grad():
        expected = model(input_ids=inputs, attention_mask=torch.ones_like(inputs), labels=labels).loss
    assert loss.mean(own, inputs, labels, batch=24) == pytest.approx(float(expected), rel=1e-5)
    assert loss.mean(own, inputs, labels, batch=5) == pytest.approx(float(expected), rel=1e-5)
    rows = fit(loss, own, (inputs, labels), epochs=30, lr=0.5, batch=8, seed=0)
    assert loss.mean(rows, inputs, labels, 24) < float(expected) - 0.01  # deterministic: no dropout, fixed masks
    assert torch.equal(rows[1], own[1]) and not torch.equal(rows[0], own[0])
    assert all(torch.equal(w, before[n]) for n, w in model.state_dict().items())


def test_the_adapted_base_learns_the_head_then_the_body_on_the_unshifted_corpus(tmp_path, monkeypatch):
    """adapt_base on a checkpoint without an MLM head: the head is warmed up (body frozen), then MLM trains the
    body on the K = 0 corpus; with tokens 0 the body is the checkpoint's. The result loads with a complete head,
    so the grid's strategies skip their own warm-up."""
    import torch
    from transformers import BertForMaskedLM, BertModel

    from experiments.spike_in.adapt import adapt_base
    from fixtures import make_tiny_bert
    from pipeline.model import head_report

    build(tmp_path / "xp", monkeypatch, ks=(0, 2))
    mlm_dir = make_tiny_bert(tmp_path / "mlm", dropout=0.0)
    body_dir = tmp_path / "body"
    BertModel.from_pretrained(mlm_dir, add_pooling_layer=False).save_pretrained(body_dir)  # no MLM head
    for f in mlm_dir.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special")):
            shutil.copy2(f, body_dir / f.name)
    layer = "bert.encoder.layer.0.attention.self.query.weight"
    original = BertForMaskedLM.from_pretrained(mlm_dir).state_dict()[layer]
    head_only = adapt_base(str(body_dir), tmp_path / "warm", tokens=0, lr=1e-3, warmup_tokens=8192, docs=100)
    full = adapt_base(str(body_dir), tmp_path / "adapted", tokens=8192, lr=1e-3, warmup_tokens=8192, docs=100)
    assert head_only["head_warmup"]["done"] and head_only["mlm_tokens"] == 0 and full["mlm_tokens"] >= 8192
    warm, info = BertForMaskedLM.from_pretrained(tmp_path / "warm", output_loading_info=True)
    assert head_report(warm, info)["head_complete"]
    assert torch.equal(warm.state_dict()[layer], original)
    assert not torch.equal(BertForMaskedLM.from_pretrained(tmp_path / "adapted").state_dict()[layer], original)


def test_the_adapt_stage_reads_a_folder_of_texts_for_a_base_that_saw_no_reviews(tmp_path):
    from experiments.spike_in.adapt import text_corpus

    write_jsonl(tmp_path / "news" / "a.jsonl.gz", [{"text": f"a{i}"} for i in range(5)])
    write_jsonl(tmp_path / "news" / "sub" / "b.jsonl.gz", [{"text": f"b{i}"} for i in range(5)])
    corpus = text_corpus(tmp_path / "news", 6)
    assert len(corpus) == 6 and set(corpus["text"]) < {f"{x}{i}" for x in "ab" for i in range(5)}
    assert corpus["text"] == text_corpus(tmp_path / "news", 6)["text"]  # seeded: the same draw each time
    every = text_corpus(tmp_path / "news", 100)["text"]  # both files, nested too, and shuffled
    assert sorted(every) == sorted(f"{x}{i}" for x in "ab" for i in range(5)) and every != sorted(every)
    with pytest.raises(SystemExit, match=r"no \.jsonl\.gz file under .*empty \(--corpus\)"):
        text_corpus(tmp_path / "empty", 3)
