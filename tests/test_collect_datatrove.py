"""collect on datatrove (pipeline/pool.py, pipeline/collect_steps.py): another executor gives the same corpus,
the cluster stage keeps the earlier source's copy and names why the others went, pretrain packs the ids
collect wrote without tokenising again, and the executor settings reach datatrove."""

import random

import pytest
import yaml
from datasets import Dataset
from test_corpus import change_words, setup  # noqa: F401  (the `setup` fixture: task, corpora, build)

from fixtures import NEWS, write_jsonl
from pipeline.config import ConfigError, from_dict
from pipeline.mlm import check_corpus_ids, pack
from pipeline.pool import check_executor, lsh_banding, make_executor


def test_a_ray_cluster_gives_the_same_corpus_as_one_local_task(setup):  # noqa: F811
    ray = pytest.importorskip("ray", reason="collect.executor: ray needs `pip install -e '.[ray]'` (.ci/run has it)")
    build, _, _ = setup
    one, corpus_one = build("in_domain", max_tokens=5000)
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        two, corpus_two = build("in_domain", max_tokens=5000, collect={"executor": "ray", "num_proc": 2})
    finally:
        ray.shutdown()
    assert list(corpus_one["text"]) == list(corpus_two["text"]) and one == two
    assert list(corpus_one["input_ids"]) == list(corpus_two["input_ids"])


def test_the_earlier_sources_copy_stays_and_each_removal_is_named(setup, tmp_path):  # noqa: F811
    build, _, _ = setup
    rng = random.Random(5)
    base = [" ".join(rng.choice(NEWS) for _ in range(70)) + "." for _ in range(10)]
    write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in base])
    # b: its own 10 documents, an exact copy of a's first (case and markup differ), a one-word edit of its second,
    # and two copies of its own first document
    own = [" ".join(rng.choice(NEWS) for _ in range(70)) + "." for _ in range(10)]
    b_docs = own + [f"<p>{base[0].upper()}</p>", change_words(base[1], [35], rng), own[0], own[0].lower()]
    write_jsonl(tmp_path / "b.jsonl", [{"text": t} for t in b_docs])
    (tmp_path / "corpora" / "cross_domain.yaml").write_text(yaml.safe_dump({"sources": [
        {"name": "a", "path": str(tmp_path / "a.jsonl")}, {"name": "b", "path": str(tmp_path / "b.jsonl")}]}))
    stats, corpus = build("cross_domain", max_tokens=10**6)
    assert stats["sources"]["a"]["docs"] == 10 and stats["sources"]["a"]["dropped"]["duplicate"] == 0
    dropped = stats["sources"]["b"]["dropped"]
    assert (dropped["duplicate"], dropped["near_duplicate"]) == (3, 1), dropped
    assert set(base) <= set(corpus["text"]) and stats["docs"] == 20
    assert stats["near_dup"]["lsh_bands"] * stats["near_dup"]["lsh_rows"] <= stats["near_dup"]["num_perm"]
    assert stats["pool"]["docs"] == 20 and stats["pool"]["confirmed_pairs"] >= 4


class CountingTokenizer:
    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tokenizer(*args, **kwargs)


def test_pretrain_packs_the_ids_collect_wrote_without_tokenising_again(setup, tiny_model):  # noqa: F811
    from transformers import AutoTokenizer

    build, _, _ = setup
    stats, corpus = build("in_domain", max_tokens=6000)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert list(corpus["input_ids"]) == [list(x) for x in tokenizer(list(corpus["text"]))["input_ids"]]
    assert [len(x) for x in corpus["input_ids"]] == list(corpus["tokens"]) and sum(corpus["tokens"]) == stats["tokens"]
    counting = CountingTokenizer(tokenizer)
    from_ids = pack(corpus.select_columns(["input_ids"]), counting, 16)
    assert counting.calls == 0
    from_text = pack(corpus.select_columns(["text"]), tokenizer, 16)
    assert from_ids["input_ids"] == from_text["input_ids"] and len(from_ids) > 10
    check_corpus_ids(corpus, tokenizer)  # the same tokenizer: accepted
    shifted = Dataset.from_dict({"text": list(corpus["text"]),
                                 "input_ids": [[t + 1 for t in ids] for ids in corpus["input_ids"]]})
    with pytest.raises(ConfigError, match="another tokenizer.*rerun `collect`"):
        check_corpus_ids(shifted, tokenizer)


def test_executor_settings_reach_datatrove(tmp_path, monkeypatch):
    import shutil

    from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")  # a Slurm login node

    c = from_dict({"collect": {"executor": "slurm", "num_proc": 16,
                               "slurm": {"partition": "cpu", "time": "02:00:00", "cpus_per_task": 2,
                                         "mem_per_cpu_gb": 3}}}).collect
    check_executor(c)
    slurm = make_executor(c, "sign", [], 16, tmp_path)
    assert isinstance(slurm, SlurmPipelineExecutor)
    assert (slurm.partition, slurm.time, slurm.tasks, slurm.cpus_per_task, slurm.mem_per_cpu_gb) == \
        ("cpu", "02:00:00", 16, 2, 3)
    local = make_executor(from_dict({"collect": {"num_proc": 2}}).collect, "buckets", [], 9, tmp_path)
    assert isinstance(local, LocalPipelineExecutor) and (local.tasks, local.workers) == (9, 2)
    with pytest.raises(ConfigError, match="collect.slurm.partition"):
        check_executor(from_dict({"collect": {"executor": "slurm"}}).collect)
    with pytest.raises(ConfigError, match="collect.executor"):
        from_dict({"collect": {"executor": "kubernetes"}})


def test_slurm_settings_are_checked_and_sbatch_must_exist(monkeypatch):
    import shutil

    # a misspelt key under collect.slurm stops like any other key, whatever the executor (round four: ignored)
    with pytest.raises(ConfigError, match=r"unknown key `collect.slurm.partion`. Did you mean `collect.slurm.partition`"):
        from_dict({"collect": {"executor": "local", "slurm": {"partion": "cpu"}}})
    with pytest.raises(ConfigError, match=r"collect.ray.adress"):
        from_dict({"collect": {"ray": {"adress": "auto"}}})
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)  # no Slurm client (was a FileNotFoundError)
    with pytest.raises(ConfigError, match=r"`sbatch` is not on this machine's PATH"):
        check_executor(from_dict({"collect": {"executor": "slurm", "slurm": {"partition": "cpu"}}}).collect)


def test_the_banding_keeps_the_threshold_meaning():
    """The bands datatrove's bucket stage uses are datasketch's for the threshold (candidates favour recall;
    every candidate is then confirmed by the estimated Jaccard)."""
    d = from_dict({}).dedup
    bands, rows = lsh_banding(d)
    assert bands * rows <= d.minhash_perm
    assert 1 - (1 - 0.8 ** rows) ** bands > 0.85  # a true 0.8 pair is a candidate in most bands draws


def test_ray_without_ray_installed_is_a_config_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"Ray is not installed: pip install -e '.\[ray\]'"):
        check_executor(from_dict({"collect": {"executor": "ray"}}).collect)


def test_reading_and_writing_in_pieces_does_not_change_the_corpus(setup, monkeypatch):  # noqa: F811
    """The reader maps each source afresh every REMAP_ROWS rows, the pool is assembled SIDE_CHUNK side records
    at a time, and the draw writes its shuffle a piece at a time (flat RSS: bench/bench_corpus.py); none of
    them may change a document, a count or the order."""
    import pickle
    from types import SimpleNamespace

    from pipeline import collect_steps, corpus, pool

    build, _, _ = setup
    whole_stats, whole = build("in_domain", max_tokens=5000)
    remaps = []
    counting = SimpleNamespace(dumps=pickle.dumps, loads=lambda b: remaps.append(1) or pickle.loads(b))
    monkeypatch.setattr(collect_steps, "pickle", counting)  # one task runs in this process: the count is seen
    monkeypatch.setattr(collect_steps, "READ_BATCH", 3)
    monkeypatch.setattr(collect_steps, "REMAP_ROWS", 6)
    monkeypatch.setattr(corpus, "SHUFFLE_PIECE", 5)
    monkeypatch.setattr(corpus, "MAX_PIECES", 3)  # pieces above SHUFFLE_PIECE rows, too
    monkeypatch.setattr(pool, "SIDE_CHUNK", 4)
    monkeypatch.setattr(collect_steps, "GATHER_ROWS", 3)
    pieces_stats, pieces = build("in_domain", max_tokens=5000)
    assert len(remaps) >= 4 and len(whole) > 2 * 5
    assert list(whole["text"]) == list(pieces["text"]) and list(whole["input_ids"]) == list(pieces["input_ids"])
    assert {k: v for k, v in whole_stats.items() if k != "seconds"} == \
        {k: v for k, v in pieces_stats.items() if k != "seconds"}
