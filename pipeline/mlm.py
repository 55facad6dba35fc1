"""Continued MLM pretraining with the transformers Trainer, for an exact token budget.

Documents are tokenised, concatenated and cut into blocks of `pretrain.block_size` (packing,
as run_mlm's `group_texts`: no padding). The Trainer runs `max_steps` so that every strategy
trains on the same number of tokens, whatever its corpus size: a small corpus is seen again
with fresh masks (the collator masks at batch time), a large one was sampled by `collect`.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xxhash  # a dependency of `datasets`: a fast, stable hash of the batch's ids
from datasets import Dataset, concatenate_datasets
from datasets.utils.tqdm import tqdm
from transformers import DataCollatorForLanguageModeling
from transformers.modeling_outputs import MaskedLMOutput

from pipeline.compat import has_instance_forward, restore_forward, set_instance_forward
from pipeline.config import ConfigError, Pretrain, Train
from pipeline.distributed import accumulation_steps, is_main_process, main_process_first, world_size
from pipeline.fast_dropout import fast_dropout
from pipeline.precision import autocast, resolve_precision
from pipeline.cloze import MASK, TEXT, mlm_head, split_template
from pipeline.training import (CheckedTrainer, log_every, mean_logged_loss, resumable_checkpoint,
                               train_with_resume, training_arguments)


MASKED_BUCKET = 64  # masked-only head: gather sizes are rounded up to a multiple of this
SMALL_CORPUS = 0.9  # a corpus under this share of pretrain.max_tokens is repeated: say so as a warning


def masked_only_forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                        masked_count: int | None = None):
    """`XForMaskedLM.forward` with the LM head run on masked positions only.

    The standard forward projects every position onto the vocabulary (for BERT: 128 x 30522
    logits per sequence) and then ignores the ~85% that are not masked. Here only the masked
    rows of the encoder output go through the head; the loss is the same mean cross-entropy
    over masked tokens (tests/test_speed_paths.py checks loss and gradients to 1e-5).

    `masked_count` (added by `CountMasked` on the host) gives the gather a static size: no
    device-to-host sync in the middle of the step, which on a GPU stalled the kernel queue and
    made the masked-only head slower than the full one (BENCHMARKS.md).
    """
    kwargs = {"attention_mask": attention_mask}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    hidden = getattr(self, self.base_model_prefix)(input_ids=input_ids, **kwargs).last_hidden_state
    if labels is None:
        return MaskedLMOutput(logits=mlm_head(self)(hidden))
    masked = (labels != -100).flatten()
    if masked_count is None:
        rows = masked.nonzero().squeeze(-1)  # size known only on the device: one sync
        targets = labels.flatten().index_select(0, rows)
    else:
        # The gather's size rounded up to a multiple of MASKED_BUCKET, the extra rows pointing at
        # position 0 with an ignored target: the same loss, and a handful of distinct shapes
        # instead of a new one every step (each new shape of the head's matmul and of its
        # logits left memory behind: RSS grew by ~13 MB a step, BENCHMARKS.md "Memory").
        count = int(masked_count)
        size = min(masked.numel(), -(-count // MASKED_BUCKET) * MASKED_BUCKET) if count else 0
        rows = torch.nonzero_static(masked, size=size, fill_value=0).squeeze(-1)
        targets = labels.flatten().index_select(0, rows)
        if size > count:
            targets = torch.where(torch.arange(size, device=targets.device) < count, targets, -100)
    # the logits are returned in float32, the copy the loss is computed on: under bf16 autocast the Trainer
    # (accelerate's ConvertOutputsToFp32) would otherwise cast the bf16 logits to float32 a second time, a copy
    # of masked rows x vocabulary per step that cost more than the whole loop's own work (bench/bench_steps.py)
    logits = mlm_head(self)(hidden.flatten(0, 1).index_select(0, rows)).float()
    return MaskedLMOutput(loss=F.cross_entropy(logits, targets), logits=logits)


class BatchSeededMasks:
    """Wraps an MLM collator: each batch's masks are drawn from a generator seeded by the seed and
    the batch's token ids, in a forked RNG (the global stream, which dropout uses, is untouched).

    With the global RNG, the masks of a batch depend on when it is collated: the dataloader
    collates one batch ahead, and a resumed run skips batches without collating them and
    restores the RNG at a different point, so it would train on other masks than an
    uninterrupted run. Seeded by content, a batch gets the same masks either way; a batch of
    other blocks (a new epoch's order) gets new ones.
    """

    def __init__(self, collator, seed: int):
        self.collator, self.seed = collator, seed

    def __call__(self, features):
        ids = np.asarray([f["input_ids"] for f in features], dtype=np.int64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(xxhash.xxh64_intdigest(ids.tobytes(), seed=self.seed) & (2**63 - 1))
            return self.collator(features)


class CountMasked:
    """Wraps an MLM collator: adds `masked_count`, counted on the host before the batch moves to
    the device, for `masked_only_forward`'s sync-free gather."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features):
        batch = self.collator(features)
        batch["masked_count"] = int((batch["labels"] != -100).sum())
        return batch


def use_masked_only_head(model, enabled: bool = True):
    """Make `model` compute its MLM loss from masked positions only; returns the model.

    The forward is replaced on this instance, so the model stays a PreTrainedModel: the
    Trainer, DDP and `save_pretrained` (tied embeddings included) handle it as usual.
    ModernBERT does the same natively with `config.sparse_prediction`.
    """
    if hasattr(model.config, "sparse_prediction"):
        model.config.sparse_prediction = enabled
    elif not enabled:
        restore_forward(model)
    elif mlm_head(model) is not None and hasattr(model, getattr(model, "base_model_prefix", "") or "-"):
        set_instance_forward(model, masked_only_forward)
    return model


@contextmanager
def masked_only_head(model, enabled: bool = True):
    """`use_masked_only_head` inside the block, undone on exit: the model leaves as it came (its own
    forward, its config's `sparse_prediction`). Yields whether the masked-only forward is on, so the
    caller knows to count masks for it (`CountMasked`)."""
    sparse = getattr(model.config, "sparse_prediction", None)
    had_forward = has_instance_forward(model)
    use_masked_only_head(model, enabled)
    try:
        yield getattr(model.forward, "__func__", None) is masked_only_forward
    finally:
        if sparse is not None:
            model.config.sparse_prediction = sparse
        if not had_forward:
            restore_forward(model)


def pack(texts: Dataset, tokenizer, block_size: int, num_proc: int | None = None,
         offsets: bool = False) -> Dataset:
    """Tokenise `text` and pack into full blocks of `block_size` ids (the remainder is dropped). A corpus
    that already holds `input_ids` (collect tokenised it with this tokenizer) is packed as it is.

    With `offsets`, each block also carries the tokens' character offsets (`offset_mapping`),
    which the collator's whole-word masking uses to find where words start; offsets restart at
    each document, so a document boundary always starts a new word.
    """
    columns = ["input_ids", "offset_mapping"] if offsets else ["input_ids"]

    def tokenize(batch):
        encoded = tokenizer(batch["text"], return_offsets_mapping=offsets, verbose=False)  # packed into blocks below
        return {c: encoded[c] for c in columns}

    def group(batch):
        out = {}
        for c in columns:
            flat = [t for seq in batch[c] for t in seq]
            n = len(flat) // block_size * block_size
            out[c] = [flat[i:i + block_size] for i in range(0, n, block_size)]
        return out

    if offsets and not getattr(tokenizer, "is_fast", False):
        raise ConfigError("pretrain.whole_word_mask needs a fast tokenizer (offsets of each token); this model's "
                          "tokenizer is a slow one. Set pretrain.whole_word_mask: false or use a fast tokenizer.")
    with main_process_first():
        if "input_ids" in texts.column_names and not offsets:  # collect's ids: the same tokenizer call, done once
            tokenized = texts.select_columns(["input_ids"])
        else:
            tokenized = texts.map(tokenize, batched=True, num_proc=num_proc, remove_columns=texts.column_names,
                                  desc="tokenize")
        return tokenized.map(group, batched=True, batch_size=1000, num_proc=num_proc, desc="pack")


def check_corpus_ids(corpus: Dataset, tokenizer, sample: int = 8) -> None:
    """A corpus `collect` tokenised must have been tokenised by this tokenizer: its first documents are
    tokenised again and compared (a few ms), so a changed model or tokenizer is an error, not silent noise."""
    if "input_ids" not in corpus.column_names or not len(corpus):
        return
    head = corpus.select(range(min(sample, len(corpus))))
    again = tokenizer(list(head["text"]), verbose=False)["input_ids"]
    if [list(x) for x in again] != [list(x) for x in head["input_ids"]]:
        raise ConfigError("data/corpus/corpus.parquet holds token ids from another tokenizer than model.name's; "
                          "rerun `collect` (dvc repro collect) with this model.")


def mlm_collator(tokenizer, p) -> DataCollatorForLanguageModeling:
    """The training collator for `pretrain` params `p`. Whole-word masking is the collator's own
    (a flag in transformers 5, driven by the blocks' `offset_mapping`); it masks with [MASK] only."""
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=p.mlm_probability,
                                           whole_word_mask=p.whole_word_mask,
                                           mask_replace_prob=1.0 if p.whole_word_mask else 0.8,
                                           random_replace_prob=0.0 if p.whole_word_mask else 0.1)


def in_template(corpus: Dataset, template: str, tokenizer) -> Dataset:
    """Each document as the prompt classifier reads a text (`{text} It was {mask}.`), the slot holding the
    tokenizer's mask token: the collator never picks a special token as a target, so MLM learns the text in the
    template's context and the slot stays a [MASK] input (prompt-based continued pretraining)."""
    split_template(template, tokenizer)  # the template's checks
    filled = template.replace(MASK, tokenizer.mask_token)
    return corpus.select_columns(["text"]).map(
        lambda batch: {"text": [filled.replace(TEXT, t) for t in batch["text"]]}, batched=True, desc="template")


def budget_steps(max_tokens: int, block_size: int, effective_batch: int) -> int:
    """Optimizer steps that cover `max_tokens` training tokens (rounded up to whole batches)."""
    return max(1, math.ceil(max_tokens / (block_size * effective_batch)))


@torch.no_grad()
def mlm_perplexity(model, blocks: Dataset, tokenizer, pretrain: Pretrain, precision: str, mask_seed: int,
                   batch_size: int = 32, desc: str = "held-out perplexity") -> dict:
    """exp(mean masked-token loss) on `blocks`, with masks drawn from a fixed seed.

    The stages pass the data seed (`task.seed`) as `mask_seed`, so every strategy and seed is
    measured on the same masked tokens, before and after pretraining: the figures compare models,
    not masks. `precision` is `train.precision` (auto, bf16, fp32).
    """
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=pretrain.mlm_probability, seed=mask_seed)
    precision = resolve_precision(precision)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, total_masked = 0.0, 0
    with masked_only_head(model, pretrain.masked_only_head):
        for start in tqdm(range(0, len(blocks), batch_size), desc=desc, unit="batch", disable=not is_main_process()):
            rows = blocks[start:start + batch_size]["input_ids"]
            batch = collator([{"input_ids": ids} for ids in rows])
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(precision):
                loss = model(**batch).loss.float().item()
            n = int((batch["labels"] != -100).sum())
            total_loss += loss * n
            total_masked += n
    model.train(was_training)
    mean = total_loss / max(1, total_masked)
    return {"loss": mean, "perplexity": math.exp(min(mean, 50.0)), "masked_tokens": total_masked}


def heldout_blocks(dev_texts: Dataset, tokenizer, pretrain: Pretrain, shuffle_seed: int) -> Dataset:
    """Dev text (shuffled with `shuffle_seed`, the data seed: prepared splits are in source order)
    packed into `pretrain.block_size` blocks, capped at `pretrain.eval_max_tokens`."""
    blocks = pack(dev_texts.shuffle(seed=shuffle_seed).select_columns(["text"]), tokenizer, pretrain.block_size)
    cap = max(1, pretrain.eval_max_tokens // pretrain.block_size)
    return blocks.select(range(min(cap, len(blocks))))


def fit_to_budget(blocks: Dataset, p: Pretrain, effective_batch: int) -> tuple[Dataset, int, int, float]:
    """The packed corpus (repeated up to one batch if smaller), the optimizer steps of the token budget,
    the distinct blocks and the passes over them; says how the corpus covers the budget."""
    if len(blocks) == 0:
        raise ConfigError(f"the corpus holds fewer than pretrain.block_size={p.block_size} tokens; "
                          f"add text or lower pretrain.block_size.")
    distinct = len(blocks)  # the real text, before any tiling below
    if len(blocks) < effective_batch:  # too small for one batch: repeat it (fresh masks each time)
        blocks = concatenate_datasets([blocks] * math.ceil(effective_batch / len(blocks)))
    steps = budget_steps(p.max_tokens, p.block_size, effective_batch)
    corpus_epochs = steps * effective_batch / distinct  # passes over the real text
    coverage = distinct * p.block_size / p.max_tokens
    if is_main_process():  # a corpus drawn to the budget covers ~100% (whole documents, whole blocks)
        print(f"[pretrain] {'warning: ' if coverage < SMALL_CORPUS else ''}the corpus holds "
              f"{distinct * p.block_size:,} tokens ({distinct:,} blocks of {p.block_size}), {coverage:.0%} of "
              f"pretrain.max_tokens {p.max_tokens:,}: {steps:,} steps pass over it {corpus_epochs:.1f} times"
              f"{', each time with fresh masks' if corpus_epochs > 1.05 else ''}.", flush=True)
    return blocks, steps, distinct, corpus_epochs


def continue_pretraining(model, tokenizer, corpus: Dataset, pretrain: Pretrain, train: Train,
                         work_dir: str | Path, run_id: str = "", num_proc: int | None = None,
                         phase: str = "[pretrain] MLM", callbacks: tuple = (), template: str | None = None) -> dict:
    """Train `model` in place on `corpus` for exactly the budget (`pretrain`); return the training stats.

    `train` is the `train` section (precision, workers, compile, checkpoints); `num_proc`
    (`pretrain.num_proc`) the processes that tokenise the corpus. Checkpoints go to `work_dir` every
    `train.checkpoint_steps`; a rerun with the same `run_id` (params and data) resumes from the
    last one: model, optimizer, scheduler, RNG, data position. `callbacks`: more TrainerCallbacks. `template`
    (`pretrain.prompt_corpus`): each document wrapped in the prompt template first (`in_template`).
    """
    p = pretrain
    num_proc = num_proc if num_proc and num_proc > 1 else None
    if template is not None:
        corpus = in_template(corpus, template, tokenizer)
    ids = "input_ids" in corpus.column_names and not p.whole_word_mask  # whole-word masks need offsets: tokenise
    blocks = pack(corpus.select_columns(["input_ids" if ids else "text"]), tokenizer, p.block_size, num_proc,
                  offsets=p.whole_word_mask)
    accumulation = accumulation_steps(p.batch_size, p.target_batch, "pretrain")
    effective_batch = p.batch_size * world_size() * accumulation
    blocks, steps, distinct, corpus_epochs = fit_to_budget(blocks, p, effective_batch)
    precision = resolve_precision(train.precision)
    args = training_arguments(
        work_dir, train, seed=p.seed,
        max_steps=steps,
        per_device_train_batch_size=p.batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=p.lr,
        warmup_steps=p.warmup,  # a float < 1 is a ratio in transformers 5
        weight_decay=p.weight_decay,
        logging_steps=log_every(steps),
        dataloader_drop_last=True,
        remove_unused_columns=False,  # the blocks hold only what the collator reads (ids, offsets for whole-word masks)
        optim="adamw_torch_fused",  # one fused kernel for all parameters (CPU and CUDA)
        disable_tqdm=False,
    )
    collator = BatchSeededMasks(mlm_collator(tokenizer, p), p.seed)
    start = time.time()
    body = [] if p.trainable == "all" else body_weights(model)
    # all three undone on exit: the saved model is a plain one
    with fast_dropout(model, train.fast_dropout), frozen(body), masked_only_head(model, p.masked_only_head) as sparse:
        collator = CountMasked(collator) if sparse else collator
        trainer = CheckedTrainer(model=model, args=args, train_dataset=blocks, data_collator=collator,
                                 processing_class=tokenizer, callbacks=list(callbacks), phase=phase)
        result, resumed_from = train_with_resume(trainer, work_dir, run_id, name="pretrain")
    seconds = time.time() - start
    tokens = steps * effective_batch * p.block_size
    curve = [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": steps, "tokens_trained": tokens, "effective_batch": effective_batch,
        "per_device_batch": p.batch_size, "world_size": world_size(), "gradient_accumulation": accumulation,
        "block_size": p.block_size,
        "corpus_blocks": distinct, "corpus_epochs": corpus_epochs, "precision": precision,
        "train_loss": mean_logged_loss(trainer, result), "train_seconds": seconds, "resumed_from_step": resumed_from,
        "tokens_per_second": tokens * (1 - resumed_from / steps) / seconds if seconds else float("nan"),
        "curve": curve,
    }



def body_weights(model) -> list:
    """The encoder's weights except the word-embedding matrix (`pretrain.trainable: embeddings` freezes them)."""
    words = model.get_input_embeddings().weight
    return [w for w in getattr(model, model.base_model_prefix).parameters() if w is not words]


@contextmanager
def frozen(weights):
    """`weights` take no gradient inside the block (the Trainer's optimizer skips them); restored on exit."""
    weights = [w for w in weights if w.requires_grad]
    for w in weights:
        w.requires_grad_(False)
    try:
        yield
    finally:
        for w in weights:
            w.requires_grad_(True)


def warm_up_head(model, tokenizer, corpus: Dataset, pretrain: Pretrain, train: Train, head: dict,
                 work_dir: str | Path, main_work_dir: str | Path, run_id: str = "",
                 num_proc: int | None = None) -> dict:
    """Train only the MLM head (encoder frozen) on `pretrain.head_warmup_tokens` of `corpus`, when
    the checkpoint lacked it (`head`: `pipeline.model.head_report`); returns what was done.

    A random head's first gradients flow into the encoder and distort it before the head fits
    (Kumar et al. 2022 show the same for a random classifier head); training the head alone
    first removes that. The warm-up is not part of the strategy's `max_tokens` budget: it changes
    no encoder weight, every strategy gets the same, and `none` (no MLM) needs none. The tied
    decoder is the word-embedding matrix, so it stays frozen with the encoder.
    """
    p = pretrain
    if head["head_complete"]:
        return {"done": False, "reason": "the checkpoint has a complete MLM head", "tokens": 0}
    if p.head_warmup_tokens == 0:
        return {"done": False, "reason": "pretrain.head_warmup_tokens is 0", "tokens": 0}
    if resumable_checkpoint(main_work_dir, run_id):
        # the main run's checkpoint holds the warmed-up head: resuming it needs no second warm-up
        return {"done": True, "reason": "resumed after the warm-up", "tokens": 0}
    encoder = getattr(model, model.base_model_prefix)
    warm = p.model_copy(update={"max_tokens": p.head_warmup_tokens, "lr": p.head_warmup_lr})
    with frozen(encoder.parameters()):
        stats = continue_pretraining(model, tokenizer, corpus, warm, train, work_dir, f"head-{run_id}", num_proc,
                                     phase="[pretrain] head warm-up")
    return {"done": True, "reason": f"newly initialised head weights: {', '.join(head['head_missing_keys'])}",
            "tokens": stats["tokens_trained"], "steps": stats["steps"], "seconds": stats["train_seconds"],
            "train_loss": stats["train_loss"]}
