"""Typed params: `params.yaml` -> dataclasses, validated before any expensive work.

Every key has a default here; `params.yaml` overrides them. An unknown key, a wrong type or
an out-of-range value raises `ConfigError` naming the key, the value and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SOURCES = ("none", "task", "in_domain", "cross_domain")
TRUNCATIONS = ("head", "tail", "head_tail")
PRECISIONS = ("auto", "bf16", "fp32")
FINETUNE_MODELS = ("flat", "hierarchical")
POOLINGS = ("mean", "max", "attention")


class ConfigError(ValueError):
    """A params or input problem the user must fix; the message says where and how."""


@dataclass
class Demo:
    enabled: bool = True
    train: int = 1000
    dev: int = 1000
    test: int = 1000


@dataclass
class Task:
    # hub id (e.g. stanfordnlp/imdb) or a local directory holding train.* and test.*
    dataset: str = "stanfordnlp/imdb"
    config: str | None = None
    text_field: str = "text"
    label_field: str = "label"
    train_split: str = "train"
    test_split: str = "test"
    dev_size: float = 0.1
    seed: int = 42  # the data split (dev carve-out, demo subsets): fixed across a seeds grid, so every run sees the same test set
    demo: Demo = field(default_factory=Demo)
    # class names: a list (the i-th names label value i, or the i-th sorted value) or a mapping value -> name
    label_names: list | dict | None = None
    # train texts that copy a dev or test text (exact, or near: MinHash Jaccard >= 0.8): report | drop
    train_overlap: str = "report"


@dataclass
class Model:
    name: str = "google-bert/bert-base-uncased"
    max_length: int = 256
    trust_remote_code: bool = False


@dataclass
class Collect:
    corpora_dir: str = "corpora"
    min_chars: int = 20
    num_proc: int = 1
    # near-duplicates: estimated Jaccard of word shingles at or above which a document is dropped
    near_dup_threshold: float = 0.8
    minhash_perm: int = 64  # MinHash permutations (signature length)
    shingle_words: int = 3  # words per shingle
    # contamination: a document holding this share of one dev/test text's distinct word n-grams is dropped
    leak_ngram: int = 8
    leak_containment: float = 0.1
    # similarity selection (curated TAPT) from the in_domain pool: none | tfidf
    select: str = "none"
    select_pool: int = 100_000  # at most this many in_domain documents are scored
    select_k: int = 10_000  # the nearest this many are kept


@dataclass
class Pretrain:
    source: str = "task"
    seed: int = 42  # corpus sampling, MLM masks and batch order
    max_tokens: int = 1_000_000
    block_size: int = 128
    batch_size: int = 32  # per device
    target_batch: int = 0  # effective batch to reach with gradient accumulation; 0: batch_size x devices
    lr: float = 5e-5
    warmup: float = 0.06
    weight_decay: float = 0.01
    mlm_probability: float = 0.15
    eval_max_tokens: int = 100_000
    masked_only_head: bool = True  # LM head on masked positions only (same loss, less compute)
    whole_word_mask: bool = False  # mask every piece of a chosen word (needs a fast tokenizer); held-out ppl stays per token
    # a head the checkpoint lacks is trained alone first (encoder frozen), on this many tokens of the
    # strategy's corpus, outside max_tokens; 0: off. A complete head skips it.
    head_warmup_tokens: int = 200_000
    head_warmup_lr: float = 1e-3  # the head starts from random: a rate for training from scratch


@dataclass
class Finetune:
    lr: float = 2e-5
    epochs: int = 3
    batch_size: int = 16  # per device
    target_batch: int = 0  # effective batch to reach with gradient accumulation; 0: batch_size x devices
    eval_batch_size: int = 64
    group_by_length: bool = True  # length-grouped batches (little padding); false: plain random batches
    warmup: float = 0.1
    weight_decay: float = 0.01
    layer_decay: float = 0.95  # layer-wise lr decay; 1.0 turns it off
    patience: int = 0  # stop once dev accuracy has not improved for this many epochs (finetune.epochs is the most); 0: off
    truncation: str = "head"  # flat model: head | tail | head_tail
    head_tokens: int = 128
    model: str = "flat"  # flat: one window per text; hierarchical: chunks pooled (Sun et al. 2019)
    pooling: str = "mean"  # hierarchical: mean | max | attention over the chunks' [CLS] states
    max_chunks: int = 4  # hierarchical: chunks of model.max_length tokens per text (the head is kept)
    chunk_overlap: int = 0  # hierarchical: tokens shared by consecutive chunks


@dataclass
class Train:
    precision: str = "auto"  # auto: bf16 where the device has it (CUDA, CPU with bf16 instructions)
    num_workers: int = 0
    compile: bool = False  # torch.compile the model (pays off on GPU for long runs)
    fast_dropout: bool = True  # on CPU: dropout masks from 16 random bits per value (pipeline/fast_dropout.py)
    checkpoint_steps: int = 200  # save a resumable checkpoint every N optimizer steps; 0: never


@dataclass
class Launch:
    """How `dvc repro` starts pretrain and finetune: plain python, or torchrun (DDP)."""
    nproc_per_node: int = 1  # processes (GPUs) per node; > 1 runs torchrun
    nnodes: int = 1  # nodes; > 1 uses torchrun's rendezvous at rdzv_endpoint
    rdzv_endpoint: str = "localhost:29500"  # host:port of the rendezvous (node 0) for multi-node
    rdzv_id: str = "dapt"  # the same on every node of one job


@dataclass
class Tracking:
    wandb_project: str = "dapt-pipeline"


@dataclass
class Params:
    seed: int = 42  # fine-tuning: classifier init, dropout, batch order
    task: Task = field(default_factory=Task)
    model: Model = field(default_factory=Model)
    collect: Collect = field(default_factory=Collect)
    pretrain: Pretrain = field(default_factory=Pretrain)
    finetune: Finetune = field(default_factory=Finetune)
    train: Train = field(default_factory=Train)
    launch: Launch = field(default_factory=Launch)
    tracking: Tracking = field(default_factory=Tracking)


def _coerce(value, typ, key: str, where: str):
    """Check one scalar against its annotation; YAML's `2e-5` (a string in YAML 1.1) is a float."""
    allowed = typing.get_args(typ) if isinstance(typ, types.UnionType) else (typ,)
    if value is None and type(None) in allowed:
        return None
    if float in allowed:
        if isinstance(value, bool):
            pass
        elif isinstance(value, (int, float)):
            return float(value)
        elif isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    if int in allowed and isinstance(value, int) and not isinstance(value, bool):
        return value
    if bool in allowed and isinstance(value, bool):
        return value
    if list in allowed and isinstance(value, list) or dict in allowed and isinstance(value, dict):
        return value
    if str in allowed and isinstance(value, str):
        return value
    names = " or ".join("null" if a is type(None) else a.__name__ for a in allowed)
    raise ConfigError(
        f"{where}: `{key}` must be {names}, got {value!r} ({type(value).__name__}); "
        f"fix the value of `{key}`."
    )


def _build(cls, data: dict, prefix: str, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: `{prefix.rstrip('.') or 'params'}` must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean `{prefix}{close[0]}`?" if close else f" Known keys: {', '.join(names)}."
            raise ConfigError(f"{where}: unknown key `{prefix}{key}`.{hint}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        typ, key = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, data[name] or {}, f"{key}.", where)
        else:
            kwargs[name] = _coerce(data[name], typ, key, where)
    return cls(**kwargs)


def _check_ranges(p: Params, where: str) -> None:
    def need(ok: bool, key: str, value, rule: str):
        if not ok:
            raise ConfigError(f"{where}: `{key}` is {value!r}; it must be {rule}.")

    need(p.pretrain.source in SOURCES, "pretrain.source", p.pretrain.source, f"one of {', '.join(SOURCES)}")
    need(p.finetune.truncation in TRUNCATIONS, "finetune.truncation", p.finetune.truncation,
         f"one of {', '.join(TRUNCATIONS)}")
    need(p.train.precision in PRECISIONS, "train.precision", p.train.precision, f"one of {', '.join(PRECISIONS)}")
    need(0.0 < p.task.dev_size < 1.0, "task.dev_size", p.task.dev_size, "a fraction between 0 and 1")
    need(p.task.train_overlap in ("report", "drop"), "task.train_overlap", p.task.train_overlap, "report or drop")
    for key in ("train", "dev", "test"):
        need(getattr(p.task.demo, key) > 0, f"task.demo.{key}", getattr(p.task.demo, key), "a positive count")
    need(p.model.max_length >= 8, "model.max_length", p.model.max_length, "at least 8")
    need(p.pretrain.block_size >= 8, "pretrain.block_size", p.pretrain.block_size, "at least 8")
    need(p.pretrain.max_tokens > 0, "pretrain.max_tokens", p.pretrain.max_tokens, "a positive token count")
    need(0.0 < p.pretrain.mlm_probability < 1.0, "pretrain.mlm_probability", p.pretrain.mlm_probability,
         "a fraction between 0 and 1")
    need(p.pretrain.eval_max_tokens > 0, "pretrain.eval_max_tokens", p.pretrain.eval_max_tokens, "positive")
    need(p.finetune.patience >= 0, "finetune.patience", p.finetune.patience, "a number of epochs (0: off)")
    need(p.pretrain.head_warmup_tokens >= 0, "pretrain.head_warmup_tokens", p.pretrain.head_warmup_tokens,
         "a token count (0: no warm-up)")
    need(p.pretrain.head_warmup_lr > 0, "pretrain.head_warmup_lr", p.pretrain.head_warmup_lr,
         "a positive learning rate")
    for key in ("pretrain.lr", "finetune.lr"):
        value = getattr(getattr(p, key.split(".")[0]), "lr")
        need(value > 0, key, value, "a positive learning rate")
    for key in ("pretrain.warmup", "finetune.warmup"):
        value = getattr(getattr(p, key.split(".")[0]), "warmup")
        need(0.0 <= value < 1.0, key, value, "a warmup ratio in [0, 1)")
    for key in ("pretrain.batch_size", "finetune.batch_size", "finetune.eval_batch_size",
                "finetune.epochs", "collect.num_proc"):
        section, name = key.split(".")
        value = getattr(getattr(p, section), name)
        need(value >= 1, key, value, "at least 1")
    c = p.collect
    need(0.5 <= c.near_dup_threshold <= 0.95, "collect.near_dup_threshold", c.near_dup_threshold,
         "between 0.5 and 0.95 (estimated Jaccard similarity of word shingles)")
    need(16 <= c.minhash_perm <= 512, "collect.minhash_perm", c.minhash_perm, "between 16 and 512")
    need(1 <= c.shingle_words <= 10, "collect.shingle_words", c.shingle_words, "between 1 and 10")
    need(4 <= c.leak_ngram <= 50, "collect.leak_ngram", c.leak_ngram, "between 4 and 50 words")
    need(0.0 < c.leak_containment <= 1.0, "collect.leak_containment", c.leak_containment,
         "in (0, 1]: the share of one dev/test text's n-grams that marks a document as leaked")
    need(c.select in ("none", "tfidf"), "collect.select", c.select, "one of none, tfidf")
    need(c.select_pool >= 1, "collect.select_pool", c.select_pool, "at least 1")
    need(1 <= c.select_k <= c.select_pool, "collect.select_k", c.select_k,
         f"between 1 and collect.select_pool ({c.select_pool})")
    for key in ("launch.nproc_per_node", "launch.nnodes"):
        value = getattr(p.launch, key.split(".")[1])
        need(value >= 1, key, value, "at least 1")
    for key in ("pretrain.target_batch", "finetune.target_batch"):
        value = getattr(getattr(p, key.split(".")[0]), "target_batch")
        need(value >= 0, key, value, "0 (no accumulation) or a positive batch size")
    need(p.train.checkpoint_steps >= 0, "train.checkpoint_steps", p.train.checkpoint_steps, "0 (off) or more")
    need(0.0 < p.finetune.layer_decay <= 1.0, "finetune.layer_decay", p.finetune.layer_decay, "in (0, 1]")
    f = p.finetune
    need(f.model in FINETUNE_MODELS, "finetune.model", f.model, f"one of {', '.join(FINETUNE_MODELS)}")
    need(f.pooling in POOLINGS, "finetune.pooling", f.pooling, f"one of {', '.join(POOLINGS)}")
    need(f.max_chunks >= 1, "finetune.max_chunks", f.max_chunks, "at least 1")
    need(0 <= f.chunk_overlap <= p.model.max_length // 2, "finetune.chunk_overlap", f.chunk_overlap,
         f"between 0 and half of model.max_length ({p.model.max_length // 2})")
    if p.finetune.truncation == "head_tail":
        need(0 < p.finetune.head_tokens < p.model.max_length, "finetune.head_tokens", p.finetune.head_tokens,
             f"between 1 and model.max_length - 1 ({p.model.max_length - 1})")


def from_dict(data: dict | None, where: str = "params") -> Params:
    params = _build(Params, data or {}, "", where)
    _check_ranges(params, where)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found; run from the project root or pass its path.")
    with path.open(encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return from_dict(data, where=str(path))


def to_dict(params: Params) -> dict:
    return dataclasses.asdict(params)


def check_lengths(params: Params, model_config, where: str = "params.yaml") -> None:
    """Raise before any model is built when a length exceeds the position embeddings.

    RoBERTa-style models reserve `pad_token_id + 1` positions, so their usable length is
    `max_position_embeddings - pad_token_id - 1` (514 - 2 = 512).
    """
    limit = getattr(model_config, "max_position_embeddings", None)
    if not limit or limit < 0:
        return  # relative-position models (e.g. DeBERTa with position_biased_input off) have no hard limit
    if getattr(model_config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
        limit -= (model_config.pad_token_id or 0) + 1
    for key, value in (("model.max_length", params.model.max_length),
                       ("pretrain.block_size", params.pretrain.block_size)):
        if value > limit:
            raise ConfigError(
                f"{where}: `{key}` is {value}, but the model `{params.model.name}` has {limit} usable "
                f"position embeddings; set `{key}` to at most {limit} (use finetune.truncation "
                f"head_tail to keep both ends of long texts)."
            )
