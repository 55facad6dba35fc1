"""Model inputs from task text, for training and evaluation alike: tokenise, cut (head / tail /
head+tail) or chunk (hierarchical), and pad each batch."""

from __future__ import annotations

from datasets import Dataset
from transformers import DataCollatorWithPadding

from pipeline.config import ConfigError, Finetune
from pipeline.distributed import main_process_first
from pipeline.hierarchical import ChunkCollator, HierarchicalClassifier
from pipeline.text import special_layout, tokenize_for_chunks, tokenize_for_classification


def encode_split(ds: Dataset, tokenizer, max_length: int, f: Finetune, num_proc: int | None = None) -> Dataset:
    """Tokenise in full, then cut (flat) or chunk (hierarchical) to `max_length` (model.max_length) as
    the `finetune` section says; cached by datasets' fingerprint."""
    common = {"tokenizer": tokenizer, "max_length": max_length, "layout": special_layout(tokenizer)}
    if f.model == "hierarchical":
        fn, kwargs = tokenize_for_chunks, {"max_chunks": f.max_chunks, "overlap": f.chunk_overlap}
    elif f.model == "prompt":
        from pipeline.cloze import split_template
        from pipeline.prompt import tokenize_for_prompt

        before, after = split_template(f.prompt.template, tokenizer)
        if max_length - len(before) - len(after) - sum(common["layout"]) < 8:
            raise ConfigError(f"model.max_length {max_length} leaves fewer than 8 tokens of text beside the template "
                              f"`{f.prompt.template}` ({len(before) + len(after)} tokens); raise model.max_length or "
                              f"shorten finetune.prompt.template.")
        fn, kwargs = tokenize_for_prompt, {"mode": f.truncation, "head_tokens": f.head_tokens, "before": before,
                                           "after": after}
    else:
        fn, kwargs = tokenize_for_classification, {"mode": f.truncation, "head_tokens": f.head_tokens}
    with main_process_first():
        return ds.map(fn, batched=True, num_proc=num_proc, desc="tokenize", fn_kwargs={**common, **kwargs})


def dynamic_padding(tokenizer, model=None):
    """Pad each batch to its longest text, rounded up to a multiple of 8 (aligned shapes suit the
    bf16 kernels of CPUs and tensor cores alike); chunked texts for the hierarchical model."""
    if isinstance(model, HierarchicalClassifier):
        return ChunkCollator(tokenizer.pad_token_id, pad_to_multiple_of=8)
    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
