"""The three places this project reaches past transformers' public API, in one module.

Checked against transformers CHECKED_AGAINST; tests/test_compat.py fails loudly, naming the hook,
when a release removes or changes one of them, so an upgrade is a test run and not a silent
change of behaviour. Each has no public equivalent today (transformers 5.24):

- `Trainer._get_train_sampler`: the only place the Trainer builds its train sampler. The
  length-grouped sampler it builds draws from the global torch RNG, so a resumed run trains on
  other batches than an uninterrupted one (pipeline.training.SeededLengthGroupedSampler). No
  TrainingArguments option or callback replaces the sampler.
- `TrainingArguments._n_gpu`: what the Trainer reads to wrap the model in nn.DataParallel. Several
  GPUs visible to one process would otherwise get DataParallel; `n_gpu` is a read-only property.
- A model instance's `forward`: the masked-only MLM head (pipeline.mlm) must run *inside* the
  model's forward, because DDP synchronises gradients through the wrapped module's forward; a
  `compute_loss` override that called the encoder and head itself would bypass DDP's hooks.
  `config.sparse_prediction` (ModernBERT) is the native form where a model has it.
"""

from __future__ import annotations

import types

from transformers import Trainer

CHECKED_AGAINST = "5.24"


class TrainSamplerHook(Trainer):
    """A Trainer whose train sampler passes through `train_sampler(sampler)` (a public method of
    ours) before use."""

    def train_sampler(self, sampler):
        return sampler

    def _get_train_sampler(self, train_dataset=None):
        return self.train_sampler(super()._get_train_sampler(train_dataset))


def use_one_gpu(args) -> None:
    """Make the Trainer built from `args` use one GPU (no nn.DataParallel)."""
    args._n_gpu = 1


def set_instance_forward(model, forward) -> None:
    """Bind `forward(self, ...)` as this model instance's forward (its class keeps its own)."""
    model.forward = types.MethodType(forward, model)


def restore_forward(model) -> None:
    """Undo `set_instance_forward`: the class's forward again."""
    model.__dict__.pop("forward", None)


def has_instance_forward(model) -> bool:
    return "forward" in model.__dict__
