"""Every place this project reaches past transformers' public API, in one module.

Checked against transformers CHECKED_AGAINST (major.minor); tests/test_compat.py has one test per reach
below, named after it, and fails loudly when a release removes or changes one, so an upgrade is a test
run and not a silent change of behaviour. None has a public equivalent today (transformers 5.25).

Routed through this module (the call site uses the name in brackets):

- `Trainer._get_train_sampler` (pipeline/training.py, CheckedTrainer) [TrainSamplerHook]: the only place
  the Trainer builds its train sampler. The length-grouped sampler it builds draws from the global torch
  RNG, so a resumed run trains on other batches than an uninterrupted one
  (pipeline.training.SeededLengthGroupedSampler). No TrainingArguments option or callback replaces the
  sampler.
- `transformers.trainer_pt_utils.LengthGroupedSampler` (pipeline/training.py) [LengthGroupedSampler]: the
  sampler that hook receives for `group_by_length`, which SeededLengthGroupedSampler subclasses and
  replaces. Not exported from `transformers`.
- `TrainingArguments._n_gpu` (pipeline/training.py, single_device) [use_one_gpu]: what the Trainer reads
  to wrap the model in nn.DataParallel. Several GPUs visible to one process would otherwise get
  DataParallel; `n_gpu` is a read-only property.
- `Trainer._get_learning_rate` (pipeline/training.py, CheckedTrainer.training_step) [learning_rate]: the
  lr of the step as the Trainer logs it (`learning_rate`), so the non-finite-loss message names the lr the
  logs show. The public `lr_scheduler.get_last_lr()` lacks its DeepSpeed and ReduceLROnPlateau cases.
- A model instance's `forward` (pipeline/mlm.py) [set_instance_forward, restore_forward,
  has_instance_forward]: the masked-only MLM head must run *inside* the model's forward, because DDP
  synchronises gradients through the wrapped module's forward; a `compute_loss` override that called the
  encoder and head itself would bypass DDP's hooks. `config.sparse_prediction` (ModernBERT) is the
  native form where a model has it.
- `PreTrainedConfig._attn_implementation` (pipeline/fast_dropout.py) [attn_implementation]: the attention
  implementation `from_pretrained` resolved, put back after the CPU-dropout attention. The setter,
  `PreTrainedModel.set_attn_implementation`, is public; there is no public getter.
- `transformers.integrations.sdpa_attention.sdpa_attention_forward` and `transformers.masking_utils.sdpa_mask`
  (pipeline/fast_dropout.py) [sdpa_attention_forward, sdpa_mask]: SDPA's attention function, which the
  CPU-dropout attention falls back to, and its mask function, registered for that attention (without one
  transformers builds no mask and padding is attended to). Not exported from `transformers`; transformers'
  own attention-interface guide imports them from these modules.
- `transformers.configuration_utils.SubConfigSpec` (pipeline/hierarchical.py, pipeline/prompt.py)
  [SubConfigSpec]: declares a nested config (`sub_configs_defaults`) with the model_type it defaults to.
  Not exported; the older `sub_configs` mapping takes a class only and is kept for backward compatibility.

Listed, not routed (the call site is in a module that keeps its own imports):

- Internal module logger names `transformers.modeling_utils`, `transformers.utils.loading_report` and
  `transformers.distributed.tensor_parallel` (pipeline/model.py, `_quiet_load_report`): raised to ERROR
  around a load to silence the MISSING / UNEXPECTED table. `transformers.logging.set_verbosity_error()`
  is the public switch, but it silences every transformers logger, not the load report alone.

Not reaches (the documented API; named so that the list above is seen to be complete):

- A PreTrainedModel subclass overriding `_init_weights` and setting `_supports_sdpa`
  (pipeline/hierarchical.py, pipeline/prompt.py): the documented way to write a custom model, not a
  reach into transformers' internals.
- `transformers.modeling_outputs` (SequenceClassifierOutput, MaskedLMOutput): a documented public module.
- `PreTrainedModel.all_tied_weights_keys` (pipeline/training.py, KeepBestEpoch.load_into): the public
  {tied parameter: source} map, nested models' included; it replaced a read of the private
  `_tied_weights_keys`.
"""

from __future__ import annotations

import types

from transformers import Trainer
from transformers.configuration_utils import SubConfigSpec
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask
from transformers.trainer_pt_utils import LengthGroupedSampler

CHECKED_AGAINST = "5.25"

__all__ = ["CHECKED_AGAINST", "LengthGroupedSampler", "SubConfigSpec", "TrainSamplerHook", "attn_implementation",
           "has_instance_forward", "learning_rate", "restore_forward", "sdpa_attention_forward", "sdpa_mask",
           "set_instance_forward", "use_one_gpu"]


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


def learning_rate(trainer) -> float:
    """The current learning rate, as `trainer` logs it (its scheduler must exist)."""
    return trainer._get_learning_rate()


def attn_implementation(model) -> str | None:
    """The attention implementation `model` runs ("sdpa", "eager", ...; None before one is resolved)."""
    return model.config._attn_implementation


def set_instance_forward(model, forward) -> None:
    """Bind `forward(self, ...)` as this model instance's forward (its class keeps its own)."""
    model.forward = types.MethodType(forward, model)


def restore_forward(model) -> None:
    """Undo `set_instance_forward`: the class's forward again."""
    model.__dict__.pop("forward", None)


def has_instance_forward(model) -> bool:
    return "forward" in model.__dict__
