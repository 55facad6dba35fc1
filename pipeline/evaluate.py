"""Test-set evaluation: metrics, per-class figures, confusion matrix, length buckets, predictions."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score
from transformers import DataCollatorWithPadding, Trainer

from pipeline.config import Train
from pipeline.progress import PhaseBars
from pipeline.encoding import dynamic_padding
from pipeline.training import training_arguments

LENGTH_BUCKETS = ((0, 128, "<=128"), (129, 256, "129-256"), (257, 512, "257-512"), (513, 10**9, ">512"))


def predict(model, tokenizer, encoded: Dataset, train: Train, batch_size: int, work_dir,
            pad_to: int | None = None) -> np.ndarray:
    """Class probabilities in the dataset's order, `batch_size` (`finetune.eval_batch_size`) per
    device, with the `train` section's precision, workers and compile (`train`).

    Batches are formed over the dataset sorted by length (little padding); the order is put
    back with the sort permutation, so row i of the result is example i whatever the sampler.
    `pad_to` pads every batch to that length in dataset order instead (the slow baseline that
    benchmarks and tests compare against).
    """
    if pad_to:
        order = np.arange(len(encoded))
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to)
    else:
        order = np.argsort(np.asarray(encoded["length"]), kind="stable")
        collator = dynamic_padding(tokenizer, model)
    args = training_arguments(work_dir, train, checkpoints=False, per_device_eval_batch_size=batch_size)
    trainer = Trainer(model=model, args=args, data_collator=collator, processing_class=tokenizer)
    PhaseBars.install(trainer, "[evaluate] test")
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in encoded.column_names]
    logits = trainer.predict(encoded.select(order).select_columns(columns)).predictions
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
    out = np.empty_like(probs)
    out[order] = probs
    return out


def bucket_of(length: int) -> str:
    return next(name for lo, hi, name in LENGTH_BUCKETS if lo <= length <= hi)


def ranking_auc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """ROC AUC of the class probabilities: how well the classifier ranks the test texts, wherever its decision
    threshold falls (a zero-shot prompt classifier's threshold can sit far off, docs/results.md); two classes: of
    the second class's probability, more: the macro one-vs-rest mean. None where a class is missing from the labels."""
    k = probs.shape[1]
    if len(np.unique(labels)) < k:
        return None
    if k == 2:
        return float(roc_auc_score(labels == 1, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=range(k)))


def metrics_from_predictions(labels: np.ndarray, preds: np.ndarray, names: list[str],
                             lengths: np.ndarray | None = None, probs: np.ndarray | None = None) -> dict:
    k = len(names)
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=range(k),
                                                                     zero_division=0)
    accuracy = accuracy_score(labels, preds)
    out = {
        "accuracy": float(accuracy),
        "macro_f1": float(f1_score(labels, preds, average="macro", labels=range(k), zero_division=0)),
        "error_rate": float(1.0 - accuracy),
        "examples": int(len(labels)),
        "per_class": {names[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                 "f1": float(f1[i]), "support": int(support[i])} for i in range(k)},
        "confusion_matrix": confusion_matrix(labels, preds, labels=range(k)).tolist(),
    }
    if probs is not None:
        out["roc_auc"] = ranking_auc(labels, probs)
    if lengths is not None:
        buckets = {}
        for lo, hi, name in LENGTH_BUCKETS:
            mask = (lengths >= lo) & (lengths <= hi)
            if mask.any():
                buckets[name] = {"examples": int(mask.sum()),
                                 "accuracy": float((labels[mask] == preds[mask]).mean())}
        out["length_buckets"] = buckets
    return out
