import gzip
import json
import random

import pytest
import yaml
from transformers import AutoTokenizer

from fixtures import NEWS, REVIEW, heldout_hashes, make_corpora, news, write_corpus_specs, write_jsonl
from pipeline.config import ConfigError, from_dict
from pipeline.artifacts import load_corpus
from pipeline.corpus import build_corpus
from pipeline.corpus_spec import check_sources, load_spec
from pipeline.dedup import clean_text, normalised_hash
from pipeline.data import prepare_task


@pytest.fixture
def setup(task_dir, tmp_path, tiny_model):
    planted = make_corpora(tmp_path / "corpora_data", task_dir)
    write_corpus_specs(tmp_path / "corpora", tmp_path / "corpora_data")

    def params(source, max_tokens=4000, collect=None):
        return from_dict({
            "task": {"dataset": str(task_dir), "dev_size": 0.2, "demo": {"enabled": False}},
            "model": {"name": str(tiny_model)},
            "collect": {"corpora_dir": str(tmp_path / "corpora"), "min_chars": 12, **(collect or {})},
            "pretrain": {"source": source, "max_tokens": max_tokens},
        })

    prepare_task(params("task").task, tmp_path / "task_out")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)

    def build(source, **kw):
        out = tmp_path / f"corpus_{source}"
        p = params(source, **kw)
        stats = build_corpus(p.task, p.collect, p.dedup, p.pretrain, tokenizer, tmp_path / "task_out", out)
        return stats, load_corpus(out)

    return build, planted, tmp_path / "task_out"


def test_clean_text_handles_html_entities_and_space():
    assert clean_text("Good<br /><br />film &amp; cast  here") == "Good\n\nfilm & cast here"
    assert clean_text("<p>x</p>") == "x"
    assert clean_text("Ｆｉｌｍ\u00a0ｃａｓｔ") == "Film cast"  # NFKC: full-width letters, no-break space
    assert normalised_hash(clean_text("A <b>Film</b>!")) == normalised_hash("a film")
    # letters of any script count: two different non-Latin texts are not one "duplicate"
    assert normalised_hash("猫が好きです") != normalised_hash("犬が好きです")
    assert normalised_hash("Ça va, très bien") != normalised_hash("Ca va, tres bien")


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
    for budget in (3000, 6000):
        tokens = [build(s, max_tokens=budget)[0]["tokens"] for s in ("task", "in_domain", "cross_domain")]
        # whole documents, never over the budget, within 1% of it
        assert all(budget * 0.99 <= t <= budget for t in tokens), (budget, tokens)


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


# ---------------------------------------------------------------------------- near duplicates
def shingle_jaccard(a: str, b: str, n: int = 3) -> float:
    def shingles(text):
        words = text.lower().replace(".", " ").split()
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    return len(shingles(a) & shingles(b)) / len(shingles(a) | shingles(b))


def change_words(text: str, positions, rng: random.Random) -> str:
    words = text.rstrip(".").split()
    for p in positions:
        words[p] = rng.choice([w for w in REVIEW if w != words[p].lower()])
    return " ".join(words) + "."


def plant_near_copies(data_dir, task_dir, corpora_dir, seed: int = 7) -> dict:
    """A second in-domain source with near copies of the reviews and of test reviews, and controls.

    Near-duplicates: 3 reviews with one word changed, 2 with two words changed (shingle Jaccard
    >= 0.85). Near leaks: 3 test reviews with one word changed. Controls that must stay: 2
    splices of two different reviews (Jaccard < 0.5) and 2 new reviews with HTML in them.
    """
    rng = random.Random(seed)
    with gzip.open(data_dir / "reviews.jsonl.gz", "rt") as fh:
        reviews = [json.loads(line)["text"] for line in fh][:300]
    tests = [json.loads(line)["text"] for line in (task_dir / "test.jsonl").read_text().splitlines()]
    long_reviews = sorted(reviews, key=lambda t: -len(t.split()))[:9]  # about 80 words each
    long_tests = sorted(tests, key=lambda t: -len(t.split()))[:3]
    near_dups = [change_words(r, [30], rng) for r in long_reviews[:3]]
    near_dups += [change_words(r, [15, 45], rng) for r in long_reviews[3:5]]
    near_leaks = [change_words(t, [30], rng) for t in long_tests[:3]]
    splices = [" ".join(a.split()[:30] + b.split()[30:]) for a, b in zip(long_reviews[5:7], long_reviews[7:9])]
    html_docs = ["Film cast <br /><br />" + " ".join(rng.choice(REVIEW) for _ in range(40)) + " &amp; music."
                 for _ in range(2)]
    originals = long_reviews[:5] + long_tests[:3]
    for copy, original in zip(near_dups + near_leaks, originals):
        assert shingle_jaccard(copy, original) >= 0.85
    assert all(shingle_jaccard(s, r) < 0.5 for s in splices for r in long_reviews[5:9])
    write_jsonl(data_dir / "extra.jsonl", [{"text": t} for t in near_dups + near_leaks + splices + html_docs])
    spec = yaml.safe_load((corpora_dir / "in_domain.yaml").read_text())
    spec["sources"].append({"name": "extra", "path": str(data_dir / "extra.jsonl"), "weight": 1.0,
                            "licence": "synthetic"})
    (corpora_dir / "in_domain.yaml").write_text(yaml.safe_dump(spec))
    return {"near_duplicates": len(near_dups), "near_leaks": len(near_leaks),
            "kept": [clean_text(t) for t in splices + html_docs]}


def test_near_duplicates_and_near_leaks_are_removed_and_counted(setup, tmp_path, task_dir):
    build, planted, _ = setup
    near = plant_near_copies(tmp_path / "corpora_data", task_dir, tmp_path / "corpora")
    stats, corpus = build("in_domain", max_tokens=10**6)
    assert stats["near_duplicates_removed"] == near["near_duplicates"] == 5
    assert stats["exact_duplicates_removed"] == planted["duplicates"]
    assert stats["duplicates_removed"] == planted["duplicates"] + near["near_duplicates"]
    assert stats["leaked_exact"] == planted["leaks"] and stats["leaked_near"] == near["near_leaks"] == 3
    assert stats["leaked_removed"] == planted["leaks"] + near["near_leaks"]
    extra = stats["sources"]["extra"]
    assert extra["dropped"]["near_duplicate"] == 5 and extra["dropped"]["leaked_near"] == 3
    assert extra["docs"] == 4 and set(near["kept"]) <= set(corpus["text"])
    assert stats["docs"] == 300 + 4 and stats["dropped"]["empty"] == planted["empty"]
    assert not any("<br" in t or "&amp;" in t for t in corpus["text"])


def test_near_duplicates_inside_one_source_keep_one_copy(setup, tmp_path):
    build, _, _ = setup
    rng = random.Random(3)
    base = [" ".join(rng.choice(NEWS) for _ in range(70)) + "." for _ in range(20)]
    docs = base + [change_words(d, [35], rng) for d in base[:6]]
    write_jsonl(tmp_path / "corpora_data" / "news_near.jsonl", [{"body": d} for d in docs])
    (tmp_path / "corpora" / "cross_domain.yaml").write_text(yaml.safe_dump({"sources": [
        {"name": "news", "path": str(tmp_path / "corpora_data" / "news_near.jsonl"), "text_field": "body"}]}))
    stats, corpus = build("cross_domain", max_tokens=10**6)
    assert stats["near_duplicates_removed"] == 6 and stats["docs"] == 20


# ---------------------------------------------------------------------------- contamination (n-gram containment)
def replace_at_rate(text: str, every: int, rng: random.Random) -> str:
    """Each word replaced with probability 1/every (at least one), by a word no review uses."""
    words = text.rstrip(".").split()
    hits = [i for i in range(len(words)) if rng.random() < 1.0 / every] or [len(words) // 2]
    for i in hits:
        words[i] = f"zq{rng.randrange(10**6)}"
    return " ".join(words) + "."


def plant_contamination(data_dir, task_dir, corpora_dir, seed: int = 11) -> dict:
    """A source of edited copies of long test reviews, in the five forms, and unrelated controls.

    Forms (8 test reviews each): exact; case and whitespace changed; one word in 30 replaced;
    one word in 15 replaced; half a review embedded in a news document. Controls (200): news
    documents each quoting one 10-word run of a test review, as reviews share stock phrases:
    they share 8-grams with the test text, so a rule of "any shared n-gram" would drop them all.
    """
    rng = random.Random(seed)
    tests = [clean_text(json.loads(line)["text"]) for line in (task_dir / "test.jsonl").read_text().splitlines()]
    long_tests = [t for t in tests if len(t.split()) >= 60]
    assert len(long_tests) >= 24
    forms = {
        "exact": long_tests[:8],
        "case_whitespace": ["   ".join(t.upper().split()) for t in long_tests[8:16]],
        "replace_1_in_30": [replace_at_rate(t, 30, rng) for t in long_tests[:8]],
        "replace_1_in_15": [replace_at_rate(t, 15, rng) for t in long_tests[8:16]],
        "half_embedded": [],
    }
    for t in long_tests[16:24]:
        words = t.split()
        start = rng.randrange(0, len(words) // 2)
        forms["half_embedded"].append(" ".join(
            [news(rng, 40), " ".join(words[start:start + len(words) // 2]), news(rng, 40)]))
    controls = []
    for i in range(200):
        words = long_tests[i % len(long_tests)].rstrip(".").split()
        start = rng.randrange(0, len(words) - 10)
        controls.append(" ".join([news(rng, 30), " ".join(words[start:start + 10]), news(rng, 30)]))
    docs = [d for docs in forms.values() for d in docs]
    write_jsonl(data_dir / "contaminated.jsonl", [{"text": t} for t in docs + controls])
    spec = yaml.safe_load((corpora_dir / "in_domain.yaml").read_text())
    spec["sources"].append({"name": "contaminated", "path": str(data_dir / "contaminated.jsonl"), "weight": 1.0,
                            "licence": "synthetic"})
    (corpora_dir / "in_domain.yaml").write_text(yaml.safe_dump(spec))
    return {"forms": {k: [clean_text(d) for d in v] for k, v in forms.items()},
            "controls": [clean_text(c) for c in controls], "tests": tests}


def test_contamination_guard_removes_every_planted_form_and_keeps_unrelated_text(setup, tmp_path, task_dir):
    build, _, _ = setup
    planted = plant_contamination(tmp_path / "corpora_data", task_dir, tmp_path / "corpora")
    # the controls do share 8-grams with the test text: the guard must judge by share, not by any match
    test_grams = set()
    for t in planted["tests"]:
        w = t.lower().rstrip(".").split()
        test_grams |= {tuple(w[i:i + 8]) for i in range(len(w) - 7)}
    assert all(any(tuple(c.lower().split()[i:i + 8]) in test_grams for i in range(len(c.split()) - 7))
               for c in planted["controls"])

    stats, corpus = build("in_domain", max_tokens=10**6)
    kept = set(corpus["text"])
    for form, docs in planted["forms"].items():
        assert not kept & set(docs), f"{form}: planted copies got into the corpus"
    dropped_controls = sum(c not in kept for c in planted["controls"])
    assert dropped_controls < 0.01 * len(planted["controls"])
    contaminated = stats["sources"]["contaminated"]["dropped"]
    # exact and case/whitespace copies: the exact check; the rest: MinHash or n-gram containment
    assert contaminated["leaked"] == 16
    assert contaminated["leaked_near"] + contaminated["leaked_ngram"] == 24
    assert contaminated["leaked_ngram"] >= 8  # at least every half-embedded review (Jaccard with a whole review < 0.5)
    assert stats["leaked_ngram"] == contaminated["leaked_ngram"]
    assert stats["leak_guard"]["ngram"] == 8 and stats["leak_guard"]["containment"] == 0.1


def test_containment_is_measured_per_heldout_text():
    from pipeline.dedup import ContainmentIndex
    rng = random.Random(5)
    stock = "one of the worst films i have ever seen in my life"
    heldout = [" ".join(rng.choice(REVIEW) for _ in range(100)) + " " + stock for _ in range(50)]
    index = ContainmentIndex(heldout, n=8, threshold=0.1)
    # a stock phrase shared with all 50 held-out texts: a small share of each one
    assert 0 < index.score(f"{news(rng, 50)} {stock} {news(rng, 50)}") < 0.1
    half = heldout[3].split()[:55]
    assert index.score(f"{news(rng, 200)} {' '.join(half)} {news(rng, 200)}") >= 0.45
    assert index.score(heldout[7].upper()) == 1.0
    assert index.score("too short to hold an eight word run") == 0.0
    assert ContainmentIndex([], n=8, threshold=0.1).score(heldout[0]) == 0.0


# ---------------------------------------------------------------------------- the task's test split
def test_a_source_that_is_the_task_test_split_is_a_config_error(setup, tmp_path, task_dir):
    build, _, _ = setup
    for path in (task_dir / "test.jsonl", task_dir, task_dir / "*.jsonl"):
        (tmp_path / "corpora" / "in_domain.yaml").write_text(yaml.safe_dump(
            {"sources": [{"name": "oops", "path": str(path)}]}))
        with pytest.raises(ConfigError, match=r"in_domain.yaml: sources\[0\] \(`oops`\): .* the task's test split"):
            build("in_domain")
    # the same for a hub id: the task's dataset with its test split (sliced or not), before any download
    hub = tmp_path / "hub_corpora"
    hub.mkdir()
    params = from_dict({"task": {"dataset": "stanfordnlp/imdb"}, "pretrain": {"source": "in_domain"}})
    # (and its train split outside task.yaml: the task's text, dev included, under another name; round four)
    for split, bad in (("test", "test"), ("test[:1000]", "test"), ("unsupervised", None), ("train", "train")):
        (hub / "in_domain.yaml").write_text(yaml.safe_dump(
            {"sources": [{"name": "imdb", "path": "stanfordnlp/imdb", "split": split}]}))
        spec = load_spec(hub, "in_domain")
        if bad:
            with pytest.raises(ConfigError, match=rf"in_domain.yaml: sources\[0\] \(`imdb`\): `stanfordnlp/imdb` "
                                                  rf"split `{bad}.*` is the task's {bad} split.*Remove this source"):
                check_sources(spec, params.task, params.pretrain.source)
        else:
            check_sources(spec, params.task, params.pretrain.source)


# ---------------------------------------------------------------------------- selection
def use_reviews_and_news_as_in_domain(tmp_path):
    data = tmp_path / "corpora_data"
    (tmp_path / "corpora" / "in_domain.yaml").write_text(yaml.safe_dump({"sources": [
        {"name": "reviews", "path": str(data / "reviews.jsonl.gz"), "weight": 0.5},
        {"name": "news", "path": str(data / "news_a.jsonl"), "text_field": "body", "weight": 0.5}]}))


def test_tfidf_selection_keeps_the_documents_nearest_to_the_task(setup, tmp_path):
    build, _, _ = setup
    use_reviews_and_news_as_in_domain(tmp_path)
    stats, corpus = build("in_domain", max_tokens=10**6,
                          collect={"select": "tfidf", "select_pool": 1000, "select_k": 150})
    sel = stats["selection"]
    assert sel["method"] == "tfidf" and sel["pool"] == 300 + 300 and sel["selected"] == 150
    assert sel["per_source"] == {"reviews": 150} and set(corpus["source"]) == {"reviews"}
    assert sel["similarity_selected_min"] > sel["similarity_pool_mean"]
    assert stats["docs"] == 150 and stats["sources"]["news"]["docs"] == 0
    # the pool is capped and sampled with the seed; the budget is then met from the selected documents
    stats, corpus = build("in_domain", max_tokens=3000,
                          collect={"select": "tfidf", "select_pool": 200, "select_k": 80})
    assert stats["selection"]["pool"] == 200 and stats["selection"]["selected"] == 80
    assert 2970 <= stats["tokens"] <= 3000 and stats["docs"] < 80
    # without selection the same spec mixes both sources by weight
    stats, _ = build("in_domain", max_tokens=3000)
    assert stats["selection"] == {"method": "none"}
    assert stats["sources"]["news"]["share"] == pytest.approx(0.5, abs=0.02)


def test_selection_applies_to_in_domain_only(setup):
    build, _, _ = setup
    stats, corpus = build("task", max_tokens=3000, collect={"select": "tfidf", "select_pool": 100, "select_k": 10})
    assert stats["selection"]["method"] == "none" and "in_domain only" in stats["selection"]["note"]
    assert stats["docs"] > 10


# ---------------------------------------------------------------------------- specs and params
def test_text_field_may_join_several_fields(setup, tmp_path):
    build, _, _ = setup
    rows = [{"title": f"Question {i} about trade",
             "body": " ".join(random.Random(i).choice(NEWS) for _ in range(30)),
             "answer": None if i % 2 else "The market said so."} for i in range(40)]
    write_jsonl(tmp_path / "corpora_data" / "qa.jsonl", rows)
    (tmp_path / "corpora" / "cross_domain.yaml").write_text(yaml.safe_dump({"sources": [
        {"name": "qa", "path": str(tmp_path / "corpora_data" / "qa.jsonl"),
         "text_field": ["title", "body", "answer"]}]}))
    stats, corpus = build("cross_domain", max_tokens=10**6)
    assert stats["docs"] == 40
    texts = set(corpus["text"])
    assert f"Question 0 about trade\n{rows[0]['body']}\nThe market said so." in texts
    assert f"Question 1 about trade\n{rows[1]['body']}" in texts


def test_collect_params_are_range_checked():
    for section, values, key in (("collect", {"select": "knn"}, "collect.select"),
                                 ("collect", {"select_k": 10, "select_pool": 5}, "collect.select_k"),
                                 ("dedup", {"near_dup_threshold": 1.0}, "dedup.near_dup_threshold"),
                                 ("dedup", {"minhash_perm": 8}, "dedup.minhash_perm"),
                                 ("dedup", {"shingle_words": 0}, "dedup.shingle_words")):
        with pytest.raises(ConfigError, match=f"`{key}` is"):
            from_dict({section: values})


@pytest.mark.parametrize("key", ["near_dup_threshold", "minhash_perm", "shingle_words"])
def test_a_dedup_key_left_under_collect_names_its_new_home(key):
    with pytest.raises(ConfigError, match=rf"`collect\.{key}` has moved to `dedup\.{key}` \(read by prepare and "
                                          rf"collect\); move it there"):
        from_dict({"collect": {key: 3}})


def test_the_repository_corpus_specs_are_valid():
    from fixtures import ROOT

    for folder in (ROOT / "corpora", ROOT / "corpora" / "local", ROOT / "corpora" / "demo"):
        for source in ("task", "in_domain", "cross_domain"):
            spec = load_spec(folder, source)
            assert all(s.get("licence") for s in spec["sources"]), (folder, source)
    names = [s["name"] for s in load_spec(ROOT / "corpora", "cross_domain")["sources"]]
    assert "yahoo_answers" in names  # news, encyclopedia and question text


def test_num_proc_does_not_change_the_corpus(setup):
    import datasets

    build, _, _ = setup
    datasets.disable_caching()  # num_proc is not part of the map fingerprint: really run both ways
    try:
        one, corpus_one = build("in_domain", max_tokens=5000)
        two, corpus_two = build("in_domain", max_tokens=5000, collect={"num_proc": 2})
    finally:
        datasets.enable_caching()
    assert corpus_one["text"] == corpus_two["text"] and one == two


def test_a_source_whose_share_goes_unused_is_named_with_why_and_leaks_get_a_line(setup, tmp_path, task_dir, capsys):
    build, _, _ = setup
    copy = [{"text": json.loads(line)["text"]} for line in (task_dir / "test.jsonl").read_text().splitlines()]
    write_jsonl(tmp_path / "copied.jsonl", copy)  # the test reviews under another name: only the guard sees them
    (tmp_path / "corpora" / "in_domain.yaml").write_text(yaml.safe_dump({"sources": [
        {"name": "reviews", "path": str(tmp_path / "corpora_data" / "reviews.jsonl.gz"), "weight": 0.5},
        {"name": "copied", "path": str(tmp_path / "copied.jsonl"), "weight": 0.5}]}))
    stats, _ = build("in_domain", max_tokens=2000)
    out = capsys.readouterr().out
    assert stats["sources"]["copied"]["tokens"] == 0 and stats["sources"]["copied"]["fell_short"] == "leaked"
    assert stats["sources"]["copied"]["files"] == {str(tmp_path / "copied.jsonl"): {"records": 80, "blank_lines": 0,
                                                                                   "read": 80}}
    assert stats["sources"]["reviews"]["fell_short"] is None, (stats["sources"]["reviews"], out)
    assert f"[collect] leak guard: removed {stats['leaked_removed']:,} documents" in out and "copied 80" in out
    assert ("[collect] warning: source `copied` gave 0 of its 1,000-token share (leaked): of its 80 documents 80 "
            "copies of dev/test text (the leak guard) were dropped") in out
    assert f"budget coverage {stats['budget_coverage']:.0%}" in out and "reviews" not in out.split("warning:")[1]
    assert out.count("warning:") == 1
