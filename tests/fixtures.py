"""Self-contained fixtures: synthetic labelled reviews, corpora, a word-level tokenizer, a tiny BERT.

Nothing here reads ../shared or the network, so a fresh clone passes the tests.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

POSITIVE = "great wonderful superb brilliant moving delightful excellent charming".split()
NEGATIVE = "awful terrible boring dull clumsy dreadful tedious weak".split()
REVIEW = ("film movie actor actress plot scene director story cast script ending character "
          "camera music role performance sequel screen drama comedy watch saw the a it was "
          "and this of with in but very really quite").split()
NEWS = ("market shares bank rates government minister election oil prices company profit "
        "percent quarter trade league match reported said officials economy growth the a "
        "and of in to on by").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def review(rng: random.Random, label: int | None, n_words: int) -> str:
    sentiment = {1: POSITIVE, 0: NEGATIVE}.get(label, POSITIVE + NEGATIVE)
    words = [rng.choice(sentiment) if rng.random() < 0.25 else rng.choice(REVIEW) for _ in range(n_words)]
    return " ".join(words).capitalize() + "."


def news(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(NEWS) for _ in range(n_words)).capitalize() + "."


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def make_task(directory: Path, n_train: int = 240, n_test: int = 80, seed: int = 0) -> Path:
    """train.jsonl / test.jsonl with balanced labels; lengths from 10 to 90 words."""
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [{"text": review(rng, i % 2, rng.randint(10, 90)), "label": i % 2} for i in range(n)]
        write_jsonl(directory / f"{split}.jsonl", rows)
    return directory


def make_corpora(directory: Path, task_dir: Path, seed: int = 1, n_docs: int = 300) -> dict:
    """Local in-domain and cross-domain files; the in-domain one has planted leaks and noise.

    Planted in `reviews.jsonl.gz`: 5 copies of test reviews (one wrapped in HTML), 4 exact
    duplicates, 3 empty documents, 2 too-short documents, HTML `<br />` in every 10th review.
    """
    rng = random.Random(seed)
    docs = [review(rng, None, rng.randint(20, 80)) for _ in range(n_docs)]
    docs = [d.replace(". ", ". <br /><br />") if i % 10 == 0 else d for i, d in enumerate(docs)]
    test_texts = [json.loads(line)["text"] for line in (task_dir / "test.jsonl").read_text().splitlines()]
    leaks = test_texts[:4] + [f"<p>{test_texts[4].upper()}</p>"]
    planted = docs + leaks + docs[:4] + ["", "   ", "<br />", "ok", "too short"]
    write_jsonl(directory / "reviews.jsonl.gz", [{"text": t} for t in planted])
    write_jsonl(directory / "news_a.jsonl", [{"body": news(rng, rng.randint(20, 80))} for _ in range(n_docs)])
    write_jsonl(directory / "news_b.jsonl", [{"body": news(rng, rng.randint(20, 80))} for _ in range(n_docs)])
    return {"leaks": len(leaks), "duplicates": 4, "empty": 3, "too_short": 2}


def write_corpus_specs(corpora_dir: Path, data_dir: Path) -> None:
    corpora_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "corpora" / "task.yaml", corpora_dir / "task.yaml")
    specs = {
        "in_domain": [{"name": "reviews", "path": str(data_dir / "reviews.jsonl.gz"), "weight": 1.0,
                       "licence": "synthetic"}],
        "cross_domain": [{"name": "news_a", "path": str(data_dir / "news_a.jsonl"), "text_field": "body",
                          "weight": 0.75, "licence": "synthetic"},
                         {"name": "news_b", "path": str(data_dir / "news_b.jsonl"), "text_field": "body",
                          "weight": 0.25, "licence": "synthetic"}],
    }
    for name, sources in specs.items():
        (corpora_dir / f"{name}.yaml").write_text(yaml.safe_dump({"sources": sources}))


def make_tokenizer(directory: Path):
    """A WordPiece (BERT) tokenizer whose vocabulary is the fixture's words plus characters."""
    from transformers import BertTokenizer

    words = sorted(set(POSITIVE + NEGATIVE + REVIEW + NEWS))
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'<>/-"))
    vocab = SPECIAL + words + chars + [f"##{c}" for c in chars]
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    return tokenizer


def make_tiny_bert(directory: Path, max_position_embeddings: int = 128, seed: int = 0, dropout: float = 0.1) -> Path:
    """A 2-layer, 32-wide BertForMaskedLM with its tokenizer, saved as safetensors (a few hundred KB)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = make_tokenizer(directory)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_position_embeddings,
                        pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    BertForMaskedLM(config).save_pretrained(directory)
    return directory


def tiny_params(task_dir: Path, model_dir: Path, corpora_dir: Path, **overrides) -> dict:
    """params.yaml for a run that takes seconds per stage."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["task"].update({"dataset": str(task_dir), "demo": {"enabled": True, "train": 160, "dev": 40,
                                                              "test": 80}, "dev_size": 0.2})
    params["model"].update({"name": str(model_dir), "max_length": 64})
    params["collect"].update({"corpora_dir": str(corpora_dir), "min_chars": 12})
    params["pretrain"].update({"max_tokens": 24_000, "block_size": 32, "batch_size": 16, "lr": 2e-3,
                               "eval_max_tokens": 4096})
    # 6 epochs: with 4, whether the tiny classifier "takes off" before the end depended on the
    # seed's dropout draws (bimodal: 0.5 or 0.99 accuracy), for torch's and the fast dropout alike
    # (patience 0: a late take-off must not be cut short by early stopping)
    params["finetune"].update({"lr": 3e-3, "epochs": 6, "batch_size": 16, "layer_decay": 0.9, "patience": 0})
    params["train"].update({"precision": "fp32"})
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition(".")
        node = params
        for part in filter(None, section.split(".")):
            node = node[part]
        node[key] = value
    return params


def make_project(root: Path, dropout: float = 0.1, encoder: str = "bert", **overrides) -> Path:
    """A DVC project in `root`: the repo's dvc.yaml, stages and library, fixture data and tiny model
    (`encoder`: bert with a WordPiece tokenizer, or deberta with a SentencePiece one)."""
    fixtures = root / "fixtures"
    task_dir = make_task(fixtures / "task")
    make_corpora(fixtures / "corpora_data", task_dir)
    if encoder == "deberta":
        texts = [json.loads(line)["text"] for line in (task_dir / "train.jsonl").read_text().splitlines()]
        model_dir = make_tiny_deberta(fixtures / "model", texts)
    else:
        model_dir = make_tiny_bert(fixtures / "model", dropout=dropout)
    project = root / "project"
    project.mkdir()
    for name in ("stages", "pipeline"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    write_corpus_specs(project / "corpora", fixtures / "corpora_data")
    params = tiny_params(task_dir, model_dir, Path("corpora"), **overrides)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = lambda *cmd: subprocess.run(cmd, cwd=project, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q")
    run("git", "config", "user.email", "test@example.com")
    run("git", "config", "user.name", "test")
    run("dvc", "init", "-q")
    run("dvc", "config", "core.analytics", "false")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "fixture project")
    return project


def set_params(project: Path, **changes) -> None:
    """Edit a fixture project's params.yaml: set_params(p, **{"finetune.epochs": 2})."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def read_metrics(project: Path, name: str) -> dict:
    return json.loads((project / "metrics" / f"{name}.json").read_text())


def make_tiny_deberta(directory: Path, texts: list[str], seed: int = 0, vocab_size: int = 120) -> Path:
    """A 2-layer DeBERTa-v2 MLM whose tokenizer is a SentencePiece unigram model trained here on `texts`.

    transformers 5 ignores `DebertaV2Tokenizer(vocab_file=...)` (it returns a 7-token
    tokenizer), so the tokenizer is built from the trained model's pieces and scores.
    """
    import io

    import sentencepiece as spm
    import torch
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM, DebertaV2Tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=buffer, vocab_size=vocab_size,
                                   model_type="unigram", pad_id=0, unk_id=1, bos_id=2, eos_id=3,
                                   pad_piece="[PAD]", unk_piece="[UNK]", bos_piece="[CLS]", eos_piece="[SEP]",
                                   user_defined_symbols=["[MASK]"], hard_vocab_limit=False, num_threads=1,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buffer.getvalue())
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tokenizer = DebertaV2Tokenizer(vocab=vocab, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", bos_token="[CLS]", eos_token="[SEP]")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    config = DebertaV2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                             relative_attention=True, position_buckets=32, pos_att_type=["p2c", "c2p"])
    DebertaV2ForMaskedLM(config).save_pretrained(directory)
    return directory


def heldout_hashes(task_dir) -> set[str]:
    """Normalised hashes of a prepared task's dev and test text: what no corpus may contain."""
    from pipeline.artifacts import load_prepared
    from pipeline.dedup import clean_text, normalised_hash

    return {normalised_hash(clean_text(t)) for split in ("dev", "test") for t in load_prepared(split, task_dir)["text"]}
