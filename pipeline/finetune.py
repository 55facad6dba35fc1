"""Fine-tuning a sequence classifier with the Trainer (Sun et al. 2019 recipe).

lr 2e-5, warmup ratio 0.1 then linear decay, layer-wise lr decay, AdamW without weight
decay on biases and LayerNorm weights, length-grouped batches with dynamic padding, the
best epoch on dev kept.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from sklearn.metrics import accuracy_score, f1_score
from transformers import TrainingArguments

from pipeline.config import Finetune, Train
from pipeline.distributed import accumulation_steps, barrier, world_size
from pipeline.encoding import dynamic_padding
from pipeline.fast_dropout import fast_dropout
from pipeline.precision import resolve_precision
from pipeline.training import (CheckedTrainer, KeepBestEpoch, StopWhenDevStalls, log_every, logged_segments,
                               mean_logged_loss, train_with_resume, training_arguments)

# Layer index in the parameter name, across BERT/RoBERTa/DeBERTa (`encoder.layer.3.`),
# ModernBERT (`layers.3.`), ALBERT-like and DistilBERT (`transformer.layer.3.`).
_LAYER = re.compile(r"\.(?:layer|layers)\.(\d+)\.")
_EMBED = re.compile(r"embed")
_NO_DECAY = re.compile(r"(bias$|norm|LayerNorm)", re.IGNORECASE)


def layer_id(name: str, num_layers: int) -> int:
    """0 for embeddings, i+1 for encoder layer i, num_layers+1 for everything above (pooler, head)."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if _EMBED.search(name):
        return 0
    return num_layers + 1


def layerwise_param_groups(model, lr: float, decay: float, weight_decay: float) -> list[dict]:
    """AdamW groups: layer i of L gets lr * decay**(L + 1 - id), embeddings the lowest; the head
    (pooler, chunk attention, classifier) gets the full lr."""
    num_layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lid = layer_id(name, num_layers)
        no_decay = bool(_NO_DECAY.search(name)) or param.ndim == 1
        key = (lid, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "lr": lr * decay ** (num_layers + 1 - lid),
                           "weight_decay": 0.0 if no_decay else weight_decay, "layer": lid}
        groups[key]["params"].append(param)
    return [groups[k] for k in sorted(groups)]


def make_optimizer(model, recipe: Finetune) -> torch.optim.Optimizer:
    groups = layerwise_param_groups(model, recipe.lr, recipe.layer_decay, recipe.weight_decay)
    return torch.optim.AdamW(groups, lr=recipe.lr, fused=True)  # one fused kernel (CPU and CUDA)


def compute_metrics(eval_pred) -> dict:
    """From the Trainer's (predictions, label_ids), which stay paired whatever the sampler order."""
    preds = np.asarray(eval_pred.predictions).argmax(-1)
    labels = np.asarray(eval_pred.label_ids)
    return {"accuracy": accuracy_score(labels, preds), "macro_f1": f1_score(labels, preds, average="macro")}


def finetune_arguments(output_dir: str | Path, recipe: Finetune, train: Train, seed: int,
                       train_ds: Dataset | None = None, **overrides) -> TrainingArguments:
    """The fine-tuning recipe's TrainingArguments (`recipe`: the finetune section, `train`: the
    train section, `seed`: the fine-tuning seed, `train_ds`: the examples, which set how often to log);
    `overrides` (benchmarks) replace any of them."""
    f = recipe
    steps = f.epochs * math.ceil(len(train_ds) / (f.batch_size * world_size())) if train_ds is not None else 50
    stage_args = dict(
        num_train_epochs=f.epochs,
        per_device_train_batch_size=f.batch_size,
        gradient_accumulation_steps=accumulation_steps(f.batch_size, f.target_batch, "finetune"),
        per_device_eval_batch_size=f.eval_batch_size,
        learning_rate=f.lr,
        warmup_steps=f.warmup,  # a float < 1 is a ratio in transformers 5
        weight_decay=f.weight_decay,
        eval_strategy="epoch",  # the best epoch is kept by KeepBestEpoch
        # about 50 logs a run (each reads the loss on the host, a sync on a GPU), and one at every checkpoint
        # and epoch end (LogAtBoundaries): a resume restores the same segments, and an epoch's train loss is
        # the step-weighted mean of the segments inside it
        logging_strategy="steps",
        logging_steps=log_every(steps),
        train_sampling_strategy="group_by_length" if f.group_by_length else "random",
        length_column_name="length",
    )
    stage_args.update(overrides)
    return training_arguments(output_dir, train, seed=seed, **stage_args)


def batch_stats(recipe: Finetune, train: Train, accumulation: int) -> dict:
    """The precision and batch figures fine-tuning reports: effective batch = per device x processes x
    accumulation steps."""
    return {"precision": resolve_precision(train.precision), "per_device_batch": recipe.batch_size,
            "world_size": world_size(), "gradient_accumulation": accumulation,
            "effective_batch": recipe.batch_size * world_size() * accumulation}


def zero_shot(model, tokenizer, dev_ds: Dataset, recipe: Finetune, train: Train, args):
    """`finetune.epochs: 0` (a prompt classifier): no training step; the classifier as it is, scored on dev."""
    trainer = CheckedTrainer(model=model, args=args, eval_dataset=dev_ds, data_collator=dynamic_padding(tokenizer, model),
                             processing_class=tokenizer, compute_metrics=compute_metrics, phase="[finetune] zero-shot")
    dev = trainer.evaluate()
    stats = {"train_seconds": 0.0, "train_loss": None, "best_epoch": 0, "epochs_run": 0, "stopped_early": False,
             "dev_accuracy": dev["eval_accuracy"], "dev_macro_f1": dev["eval_macro_f1"], "steps": 0, "zero_shot": True,
             "train_examples": 0, "resumed_from_step": 0, **batch_stats(recipe, train, accumulation=1)}
    curve = [{"epoch": 0, "dev_accuracy": dev["eval_accuracy"], "dev_macro_f1": dev["eval_macro_f1"],
              "dev_loss": dev["eval_loss"], "train_loss": float("nan")}]
    return trainer, stats, curve


def finetune(model, tokenizer, train_ds: Dataset, dev_ds: Dataset, recipe: Finetune, train: Train, seed: int,
             work_dir: str | Path, run_id: str = "", callbacks: tuple = ()):
    """Train `model` in place on `train_ds` with the `recipe` (the finetune section), `train` (the
    train section) and `seed`; the best epoch on `dev_ds` is loaded at the end (`recipe.keep` best), or the
    last epoch's weights are kept (last).

    A rerun with the same `run_id` (params and data) resumes from the last checkpoint in
    `work_dir`. `callbacks`: more TrainerCallbacks (bench/bench_steps.py times the steps with one).
    Returns (trainer, stats, curve).
    """
    args = finetune_arguments(work_dir, recipe, train, seed, train_ds)
    # Classification heads take **kwargs but ignore `num_items_in_batch`, while transformers 5.24's
    # Trainer, seeing **kwargs, multiplies the loss by the number of processes (expecting a sum
    # over items) and skips the gradient-accumulation division: under DDP the gradients would
    # be `world_size` times too large. Declaring that the model takes no loss kwargs keeps the
    # mean loss, averaged across processes by DDP, and divided by the accumulation steps.
    model.accepts_loss_kwargs = False
    if recipe.epochs == 0:
        return zero_shot(model, tokenizer, dev_ds, recipe, train, args)
    keep_best = KeepBestEpoch(work_dir) if recipe.keep == "best" else None  # last: the weights as trained
    stalls = StopWhenDevStalls(recipe.patience)
    start = time.time()
    with fast_dropout(model, train.fast_dropout):  # undone on exit: the saved model is a plain one
        trainer = CheckedTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
                                 data_collator=dynamic_padding(tokenizer, model), processing_class=tokenizer,
                                 compute_metrics=compute_metrics, optimizers=(make_optimizer(model, recipe), None),
                                 callbacks=[c for c in (keep_best, stalls, *callbacks) if c is not None],
                                 phase="[finetune]", per_epoch=True)
        result, resumed_from = train_with_resume(trainer, work_dir, run_id, name="finetune")
    seconds = time.time() - start
    barrier()  # rank 0 has written the best weights
    if keep_best is not None:
        keep_best.load_into(model)
        barrier()  # every rank has read them before rank 0 may remove the work dir (stages/finetune.py)
    evals = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    by_epoch: dict[int, list[tuple[int, float]]] = {}
    for epoch, steps, loss in logged_segments(trainer):  # a log carries the fraction of epochs done at its end
        by_epoch.setdefault(math.ceil(round(epoch, 6)), []).append((steps, loss))

    def epoch_loss(epoch: int) -> float:
        parts = by_epoch.get(epoch, [])
        return sum(n * x for n, x in parts) / sum(n for n, _ in parts) if parts else float("nan")

    curve = [{"epoch": h["epoch"], "dev_accuracy": h["eval_accuracy"], "dev_macro_f1": h["eval_macro_f1"],
              "dev_loss": h["eval_loss"], "train_loss": epoch_loss(round(h["epoch"]))} for h in evals]
    best = max(evals, key=lambda h: h["eval_accuracy"]) if recipe.keep == "best" else evals[-1]  # the kept epoch
    stats = {"train_seconds": seconds, "train_loss": mean_logged_loss(trainer, result),
             "best_epoch": best["epoch"], "kept": recipe.keep, "epochs_run": evals[-1]["epoch"],
             "stopped_early": stalls.stopped_at is not None,
             "dev_accuracy": best["eval_accuracy"],
             "dev_macro_f1": best["eval_macro_f1"], "steps": trainer.state.global_step,
             "train_examples": len(train_ds), "resumed_from_step": resumed_from,
             **batch_stats(recipe, train, args.gradient_accumulation_steps)}
    return trainer, stats, curve
