"""DVC stage `pretrain`: continued MLM on data/corpus -> models/pretrained + metrics/pretrain.json."""

import shutil

import torch

from pipeline.config import check_budget, check_lengths
from pipeline.artifacts import load_corpus, load_prepared
from pipeline.distributed import is_main_process, world_size
from pipeline.io import atomic_dir, write_csv, write_json
from pipeline.lineage import check_lineage
from pipeline.mlm import check_corpus_ids, continue_pretraining, heldout_blocks, mlm_perplexity, warm_up_head
from pipeline.model import load_config, load_mlm, load_tokenizer
from pipeline.cloze import MLM_HEAD_RECORD
from pipeline.stage import run_stage
from pipeline.training import fingerprint

# the resumable checkpoints of the MLM run and of the head warm-up
WORK_DIR, HEAD_WORK_DIR = "models/.pretrain-work", "models/.pretrain-head-work"


def warm_up_head_on_task_text(model, tokenizer, params, head: dict) -> dict:
    """`pretrain.source: none` on a checkpoint without an MLM head: the head alone (encoder frozen, as for the
    other strategies) on `pretrain.head_warmup_tokens` of the task's train text. The encoder, all a [CLS]
    classifier loads, passes through unchanged."""
    train_text = load_prepared("train", "data/task").select_columns(["text"])
    run_id = fingerprint({k: getattr(params, k) for k in ("model", "pretrain", "train")}, ["data/task/train.parquet"])
    return warm_up_head(model, tokenizer, train_text, params.pretrain, params.train, head, HEAD_WORK_DIR, WORK_DIR,
                        run_id, num_proc=params.pretrain.num_proc)


def run(params):
    name, trust_remote_code = params.model.name, params.model.trust_remote_code
    check_lengths(params, load_config(name, trust_remote_code))
    if params.pretrain.source != "none":
        check_budget(params.pretrain, world_size())
    check_lineage(params, "task")
    if params.pretrain.source != "none":
        check_lineage(params, "corpus")
    tokenizer = load_tokenizer(name, trust_remote_code)
    # seeded: a fresh head is the same on every run
    model, head = load_mlm(name, trust_remote_code, with_head_report=True, hub_kernels=params.train.hub_kernels)
    if torch.cuda.is_available():
        model.to("cuda")
    blocks = heldout_blocks(load_prepared("dev", "data/task"), tokenizer, params.pretrain, params.task.seed)

    def perplexity(desc: str) -> dict:  # masks drawn from the data seed: the same masked tokens for every run
        return mlm_perplexity(model, blocks, tokenizer, params.pretrain, params.train.precision, params.task.seed,
                              desc=f"held-out perplexity, {desc}")

    before = perplexity("before")
    head_only = None
    if params.pretrain.source == "none":  # the baseline: the base model's encoder passes through unchanged
        after, stats = before, {"steps": 0, "tokens_trained": 0, "curve": [{"step": 0, "loss": before["loss"]}]}
        warmup = {"done": False, "reason": "pretrain.source is none: no MLM training", "tokens": 0}
        if not head["head_complete"] and params.pretrain.head_warmup_tokens:
            # a checkpoint without an MLM head: warmed up on the task's train text, encoder frozen, so that a
            # prompt classifier (finetune.model prompt) reads a trained head; a [CLS] classifier never loads it
            warmup = warm_up_head_on_task_text(model, tokenizer, params, head)
            after = head_only = perplexity("head warmed up")
    else:
        corpus = load_corpus("data/corpus")
        check_corpus_ids(corpus, tokenizer)
        # pretrain.prompt_corpus: the documents wrapped in the prompt classifier's template
        template = params.finetune.prompt.template if params.pretrain.prompt_corpus else None
        run_id = fingerprint({**{k: getattr(params, k) for k in ("model", "pretrain", "train")}, "template": template},
                             ["data/corpus/corpus.parquet"])
        warmup = warm_up_head(model, tokenizer, corpus, params.pretrain, params.train, head, HEAD_WORK_DIR, WORK_DIR,
                              run_id, num_proc=params.pretrain.num_proc)
        if warmup["tokens"]:
            head_only = perplexity("head warmed up")
            print(f"[pretrain] head warm-up: {warmup['tokens']:,} tokens, encoder frozen; held-out perplexity "
                  f"{before['perplexity']:,.1f} -> {head_only['perplexity']:,.1f}", flush=True)
        stats = continue_pretraining(model, tokenizer, corpus, params.pretrain, params.train, WORK_DIR, run_id,
                                     num_proc=params.pretrain.num_proc, template=template)
        after = perplexity("after")
    curve = stats.pop("curve")
    if is_main_process():
        with atomic_dir("models/pretrained") as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            # whether the saved MLM head was ever trained: a prompt classifier refuses one that was not
            write_json(tmp / MLM_HEAD_RECORD, {"trained": bool(head["head_complete"] or warmup["done"]),
                                               "warmup": warmup["reason"]})
        write_csv("plots/pretrain_loss.csv", curve, ["step", "loss"])
        shutil.rmtree(WORK_DIR, ignore_errors=True)
        shutil.rmtree(HEAD_WORK_DIR, ignore_errors=True)
    return {"perplexity_before": before["perplexity"],
            "perplexity_head_only": head_only["perplexity"] if head_only else None,
            "perplexity_after": after["perplexity"],
            "loss_before": before["loss"], "loss_after": after["loss"],
            "head_complete": head["head_complete"], "head_missing_keys": head["head_missing_keys"],
            "head_warmup": warmup,
            "heldout_masked_tokens": before["masked_tokens"], "hub_kernels": params.train.hub_kernels, **stats}


if __name__ == "__main__":
    run_stage("pretrain", run, "metrics/pretrain.json", seed=lambda params: params.pretrain.seed,
              checkpoints=(WORK_DIR, HEAD_WORK_DIR), outputs=("models/pretrained", "plots/pretrain_loss.csv"))
