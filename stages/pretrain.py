"""DVC stage `pretrain`: continued MLM on data/corpus -> models/pretrained + metrics/pretrain.json."""

import shutil

import torch

from pipeline.config import ConfigError, check_budget, check_lengths
from pipeline.corpus import load_corpus
from pipeline.data import load_prepared
from pipeline.distributed import is_main_process, world_size
from pipeline.io import atomic_dir, write_csv
from pipeline.lineage import check_lineage
from pipeline.mlm import check_corpus_ids, continue_pretraining, heldout_blocks, mlm_perplexity, warm_up_head
from pipeline.model import load_config, load_mlm, load_tokenizer
from pipeline.stage import run_stage
from pipeline.training import fingerprint

# the resumable checkpoints of the MLM run and of the head warm-up
WORK_DIR, HEAD_WORK_DIR = "models/.pretrain-work", "models/.pretrain-head-work"


def warm_up_head_for_prompt(model, tokenizer, params, head: dict, may_warm: bool) -> dict:
    """`pretrain.source: none` with `finetune.model: prompt` on a checkpoint without an MLM head: the prompt
    classifier reads that head, so it is warmed up (encoder frozen, as for the other strategies) on the task's
    train text, or the stage stops if `finetune.prompt.head_warmup` is false."""
    if not may_warm:
        raise ConfigError(f"model.name: `{params.model.name}` has no trained MLM head ({', '.join(head['head_missing_keys'][:3])} "
                          f"are new), which finetune.model prompt reads, and pretrain.source is none. Set "
                          f"finetune.prompt.head_warmup: true (the head alone is trained on the task's train text, "
                          f"encoder frozen), or use a checkpoint with its MLM head.")
    train_text = load_prepared("train", "data/task").select_columns(["text"])
    run_id = fingerprint({k: getattr(params, k) for k in ("model", "pretrain", "train")}, ["data/task/train.parquet"])
    return warm_up_head(model, tokenizer, train_text, params.pretrain, params.train, head, HEAD_WORK_DIR, WORK_DIR,
                        run_id, num_proc=params.collect.num_proc)


def pretrain(params):
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
        # the prompt classifier reads the MLM head: a head never trained is warmed up, or an error
        reads_head, may_warm = params.finetune.model == "prompt", params.finetune.prompt.head_warmup
        if reads_head and not head["head_complete"]:
            warmup = warm_up_head_for_prompt(model, tokenizer, params, head, may_warm)
            after = head_only = perplexity("head warmed up")
    else:
        corpus = load_corpus("data/corpus")
        check_corpus_ids(corpus, tokenizer)
        # pretrain.prompt_corpus: the documents wrapped in the prompt classifier's template
        template = params.finetune.prompt.template
        template = template if params.pretrain.prompt_corpus else None
        run_id = fingerprint({**{k: getattr(params, k) for k in ("model", "pretrain", "train")}, "template": template},
                             ["data/corpus/corpus.parquet"])
        warmup = warm_up_head(model, tokenizer, corpus, params.pretrain, params.train, head, HEAD_WORK_DIR, WORK_DIR,
                              run_id, num_proc=params.collect.num_proc)
        if warmup["tokens"]:
            head_only = perplexity("head warmed up")
            print(f"[pretrain] head warm-up: {warmup['tokens']:,} tokens, encoder frozen; held-out perplexity "
                  f"{before['perplexity']:,.1f} -> {head_only['perplexity']:,.1f}", flush=True)
        stats = continue_pretraining(model, tokenizer, corpus, params.pretrain, params.train, WORK_DIR, run_id,
                                     num_proc=params.collect.num_proc, template=template)
        after = perplexity("after")
    curve = stats.pop("curve")
    if is_main_process():
        with atomic_dir("models/pretrained") as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
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
    run_stage("pretrain", pretrain, "metrics/pretrain.json", seed=lambda params: params.pretrain.seed,
              checkpoints=(WORK_DIR, HEAD_WORK_DIR), outputs=("models/pretrained", "plots/pretrain_loss.csv"))
