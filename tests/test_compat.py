"""Every reach past transformers' public API that pipeline/compat.py lists still works on the installed release.

One test per reach, named after it, so an upgrade that removes or changes one fails here, loudly, instead
of silently changing batches, device placement, the logged lr, the MLM loss, the attention or the configs.
"""

import importlib
import inspect
import logging

import torch
import transformers
from datasets import Dataset
from transformers import (AttentionInterface, AttentionMaskInterface, AutoModelForMaskedLM,
                          AutoModelForSequenceClassification, BertConfig, Trainer, TrainingArguments)

from pipeline import compat
from pipeline.config import Train
from pipeline.hierarchical import HierarchicalConfig
from pipeline.model import load_checked
from pipeline.training import CheckedTrainer, SeededLengthGroupedSampler, training_arguments


def major_minor(version: str) -> tuple[str, str]:
    return tuple(version.split(".")[:2])


def test_installed_transformers_is_the_checked_release():
    assert major_minor(transformers.__version__) == major_minor(compat.CHECKED_AGAINST), (
        f"transformers {transformers.__version__}: pipeline/compat.py was checked against "
        f"{compat.CHECKED_AGAINST}; re-check every reach it lists (this file), then update CHECKED_AGAINST")


def grouped_trainer(model_dir, tmp_path, trainer_class=CheckedTrainer):
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    rows = Dataset.from_dict({"input_ids": [[1] * n for n in range(2, 42)], "length": list(range(2, 42)),
                              "labels": [0, 1] * 20})
    args = training_arguments(tmp_path, Train(), seed=3, checkpoints=False,
                              train_sampling_strategy="group_by_length", length_column_name="length",
                              per_device_train_batch_size=4)
    return trainer_class(model=model, args=args, train_dataset=rows)


def test_trainer_get_train_sampler_builds_the_train_sampler(tiny_model, tmp_path):
    assert "_get_train_sampler" in vars(Trainer), "Trainer._get_train_sampler is gone: see pipeline/compat.py"
    trainer = grouped_trainer(tiny_model, tmp_path)
    sampler = trainer.get_train_dataloader().batch_sampler.sampler  # accelerate batches the Trainer's sampler
    assert isinstance(sampler, SeededLengthGroupedSampler), (
        f"the Trainer's train sampler is {type(sampler).__name__}: its _get_train_sampler hook no longer "
        "decides it (pipeline/compat.py TrainSamplerHook)")


def test_trainer_pt_utils_length_grouped_sampler_is_what_group_by_length_builds(tiny_model, tmp_path):
    seen = []

    class Recording(compat.TrainSamplerHook):
        def train_sampler(self, sampler):
            seen.append(type(sampler))
            return sampler

    grouped_trainer(tiny_model, tmp_path, Recording).get_train_dataloader()
    assert seen == [compat.LengthGroupedSampler], (
        f"group_by_length built {seen}, not transformers.trainer_pt_utils.LengthGroupedSampler: "
        "SeededLengthGroupedSampler no longer replaces it (pipeline/compat.py LengthGroupedSampler)")
    assert {"batch_size", "lengths"} <= set(vars(compat.LengthGroupedSampler(4, lengths=[3, 1, 2, 5]))), (
        "LengthGroupedSampler no longer keeps batch_size and lengths, which CheckedTrainer.train_sampler reads")


def test_training_arguments_n_gpu_is_what_the_trainer_reads_for_data_parallel(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    compat.use_one_gpu(args)
    assert args.n_gpu == 1, "TrainingArguments.n_gpu no longer reads _n_gpu (pipeline/compat.py use_one_gpu)"
    wrap = inspect.getsource(Trainer)
    assert "DataParallel" in wrap and "n_gpu > 1" in wrap, (
        "the Trainer no longer decides nn.DataParallel on args.n_gpu > 1: re-check pipeline/compat.py use_one_gpu")


def test_trainer_get_learning_rate_is_the_logged_lr(tiny_model, tmp_path):
    trainer = grouped_trainer(tiny_model, tmp_path)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    assert compat.learning_rate(trainer) == trainer.lr_scheduler.get_last_lr()[0] == trainer.args.learning_rate
    trainer.optimizer.step()
    trainer.lr_scheduler.step()
    assert compat.learning_rate(trainer) == trainer.lr_scheduler.get_last_lr()[0] < trainer.args.learning_rate
    assert '"learning_rate"' in inspect.getsource(Trainer) and "self._get_learning_rate()" in inspect.getsource(
        Trainer), "the Trainer no longer logs Trainer._get_learning_rate(): re-check pipeline/compat.py learning_rate"


def test_an_instance_forward_is_what_calling_the_model_runs(tiny_model):
    model = AutoModelForMaskedLM.from_pretrained(tiny_model)
    calls = []

    def forward(self, **batch):
        calls.append(self)
        return type(self).forward(self, **batch)

    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]])}
    compat.set_instance_forward(model, forward)
    assert compat.has_instance_forward(model)
    model(**batch)
    assert calls == [model]
    compat.restore_forward(model)
    model(**batch)
    assert calls == [model] and not compat.has_instance_forward(model)


def test_config_attn_implementation_is_the_resolved_attention(tiny_model):
    model = AutoModelForMaskedLM.from_pretrained(tiny_model)
    assert compat.attn_implementation(model) == "sdpa", (
        "config._attn_implementation no longer names the attention from_pretrained resolved "
        "(pipeline/compat.py attn_implementation)")
    model.set_attn_implementation("eager")
    assert compat.attn_implementation(model) == "eager"


def test_integrations_sdpa_attention_forward_is_the_sdpa_attention():
    assert AttentionInterface()["sdpa"] is compat.sdpa_attention_forward, (
        "transformers.integrations.sdpa_attention.sdpa_attention_forward is no longer the registered `sdpa` "
        "attention (pipeline/compat.py, pipeline/fast_dropout.py)")
    assert {"module", "query", "key", "value", "attention_mask", "dropout", "scaling"} <= set(
        inspect.signature(compat.sdpa_attention_forward).parameters)


def test_masking_utils_sdpa_mask_is_the_sdpa_mask():
    assert AttentionMaskInterface()["sdpa"] is compat.sdpa_mask, (
        "transformers.masking_utils.sdpa_mask is no longer the registered `sdpa` mask function "
        "(pipeline/compat.py, pipeline/fast_dropout.py)")


def test_configuration_utils_sub_config_spec_gives_a_nested_config_its_default_model_type():
    config = HierarchicalConfig(encoder={"hidden_size": 64})  # no model_type: SubConfigSpec's default, bert
    assert type(config.encoder) is BertConfig and config.encoder.hidden_size == 64, (
        "SubConfigSpec(model_type=...) no longer resolves a nested config (pipeline/compat.py SubConfigSpec)")
    again = HierarchicalConfig.from_dict(config.to_dict())
    assert type(again.encoder) is BertConfig and again.encoder.hidden_size == 64


def test_module_loggers_carry_the_load_report(tiny_model):
    """pipeline/model.py `_quiet_load_report` raises the loggers of transformers.modeling_utils,
    transformers.utils.loading_report and transformers.distributed.tensor_parallel to ERROR."""
    quieted = ("transformers.modeling_utils", "transformers.utils.loading_report",
               "transformers.distributed.tensor_parallel")
    for name in quieted:
        importlib.import_module(name)  # a logger named after a module that is gone would silence nothing

    class Reports(logging.Handler):
        def __init__(self):
            super().__init__()
            self.loggers = []

        def emit(self, record):
            if "LOAD REPORT" in record.getMessage():
                self.loggers.append(record.name)

    reports, root = Reports(), logging.getLogger("transformers")
    root.addHandler(reports)
    try:
        AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)  # an MLM checkpoint: a new head
        assert reports.loggers and set(reports.loggers) <= set(quieted), (
            f"the load report comes from {reports.loggers or 'no logger'}, not one pipeline/model.py "
            f"`_quiet_load_report` silences")
        reports.loggers.clear()
        load_checked(AutoModelForSequenceClassification, str(tiny_model), False, num_labels=2)
        assert not reports.loggers, "pipeline/model.py `_quiet_load_report` no longer silences the load report"
    finally:
        root.removeHandler(reports)


def test_all_tied_weights_keys_lists_the_tied_mlm_decoder(tiny_model):
    """Public, not a reach: KeepBestEpoch.load_into reads it."""
    model = AutoModelForMaskedLM.from_pretrained(tiny_model)
    assert "cls.predictions.decoder.weight" in model.all_tied_weights_keys
