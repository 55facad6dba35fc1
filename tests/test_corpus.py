import numpy as np
import pytest
from transformers import AutoTokenizer

from fixtures import make_corpora, write_corpus_specs
from pipeline.config import ConfigError, from_dict
from pipeline.corpus import build_corpus, clean_text, heldout_hashes, load_corpus, normalised_hash
from pipeline.data import prepare_task


@pytest.fixture
def setup(task_dir, tmp_path, tiny_model):
    planted = make_corpora(tmp_path / "corpora_data", task_dir)
    write_corpus_specs(tmp_path / "corpora", tmp_path / "corpora_data")

    def params(source, **pretrain):
        return from_dict({
            "task": {"dataset": str(task_dir), "dev_size": 0.2, "demo": {"enabled": False}},
            "model": {"name": str(tiny_model)},
            "collect": {"corpora_dir": str(tmp_path / "corpora"), "min_chars": 12},
            "pretrain": {"source": source, "max_tokens": pretrain.get("max_tokens", 4000)},
        })

    prepare_task(params("task"), tmp_path / "task_out")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)

    def build(source, **kw):
        out = tmp_path / f"corpus_{source}"
        stats = build_corpus(params(source, **kw), tokenizer, tmp_path / "task_out", out)
        return stats, load_corpus(out)

    return build, planted, tmp_path / "task_out"


def test_clean_text_handles_html_entities_and_space():
    assert clean_text("Good<br /><br />film &amp; cast  here") == "Good\n\nfilm & cast here"
    assert clean_text("<p>x</p>") == "x"
    assert normalised_hash(clean_text("A <b>Film</b>!")) == normalised_hash("a film")


def test_each_rule_removes_and_counts(setup):
    build, planted, task_out = setup
    stats, corpus = build("in_domain", max_tokens=10**6)
    assert stats["leaked_removed"] == planted["leaks"]
    assert stats["duplicates_removed"] == planted["duplicates"]
    assert stats["dropped"]["empty"] == planted["empty"]
    assert stats["dropped"]["too_short"] == planted["too_short"]
    assert not any("<br" in t for t in corpus["text"])
    assert stats["docs"] == 300 and stats["tokens"] == sum(corpus["tokens"])


def test_no_dev_or_test_text_in_any_corpus(setup):
    build, _, task_out = setup
    banned = heldout_hashes(task_out)
    for source in ("task", "in_domain", "cross_domain"):
        _, corpus = build(source, max_tokens=10**6)
        assert len(corpus) > 0
        assert not banned & {normalised_hash(t) for t in corpus["text"]}, source


def test_budget_is_equal_across_strategies(setup):
    build, _, _ = setup
    tokens = [build(s, max_tokens=3000)[0]["tokens"] for s in ("task", "in_domain", "cross_domain")]
    assert all(abs(t - 3000) / 3000 <= 0.05 for t in tokens), tokens


def test_source_weights_are_respected(setup):
    build, _, _ = setup
    stats, corpus = build("cross_domain", max_tokens=8000)
    shares = {name: s["share"] for name, s in stats["sources"].items()}
    assert shares["news_a"] == pytest.approx(0.75, abs=0.02)
    assert shares["news_b"] == pytest.approx(0.25, abs=0.02)
    assert set(corpus["source"]) == {"news_a", "news_b"}


def test_none_writes_an_empty_corpus(setup):
    build, _, _ = setup
    stats, corpus = build("none")
    assert stats["docs"] == 0 and stats["tokens"] == 0 and len(corpus) == 0


def test_vocab_overlap_orders_domains(setup):
    build, _, _ = setup
    overlap = {s: build(s, max_tokens=10**6)[0]["vocab_overlap"] for s in ("task", "in_domain", "cross_domain")}
    assert overlap["task"] == pytest.approx(1.0)
    assert overlap["in_domain"] > overlap["cross_domain"]


def test_bad_corpus_specs_are_named(setup, tmp_path):
    build, _, _ = setup
    (tmp_path / "corpora" / "in_domain.yaml").write_text("sources: []\n")
    with pytest.raises(ConfigError, match=r"in_domain.yaml: `sources` must be a non-empty list"):
        build("in_domain")
    (tmp_path / "corpora" / "in_domain.yaml").write_text("sources:\n  - path: /nowhere/x.jsonl\n")
    with pytest.raises(ConfigError, match=r"in_domain.yaml: sources\[0\]: `/nowhere/x.jsonl` matches no file"):
        build("in_domain")
    (tmp_path / "corpora" / "in_domain.yaml").write_text("sources:\n  - path: task:train\n")
    with pytest.raises(ConfigError, match="belongs in task.yaml only"):
        build("in_domain")
