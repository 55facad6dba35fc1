"""pipeline.compat's three hooks into transformers' internals still work on the installed release.

Each test names the hook it checks, so an upgrade that removes or changes one fails here, loudly,
instead of silently changing batches, device placement or the MLM loss.
"""

import inspect

import torch
import transformers
from datasets import Dataset
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, Trainer, TrainingArguments

from pipeline import compat
from pipeline.training import CheckedTrainer, SeededLengthGroupedSampler, training_arguments
from pipeline.config import Train


def test_installed_transformers_is_the_checked_major_release():
    major = transformers.__version__.split(".")[0]
    assert major == compat.CHECKED_AGAINST.split(".")[0], (
        f"transformers {transformers.__version__}: pipeline/compat.py was checked against "
        f"{compat.CHECKED_AGAINST}; re-check its three hooks, then update CHECKED_AGAINST")


def test_trainer_builds_its_train_sampler_through_get_train_sampler(tiny_model, tmp_path):
    assert "_get_train_sampler" in vars(Trainer), "Trainer._get_train_sampler is gone: see pipeline/compat.py"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    rows = Dataset.from_dict({"input_ids": [[1] * n for n in range(2, 42)], "length": list(range(2, 42)), "labels": [0, 1] * 20})
    args = training_arguments(tmp_path, Train(), seed=3, checkpoints=False,
                              train_sampling_strategy="group_by_length", length_column_name="length",
                              per_device_train_batch_size=4)
    trainer = CheckedTrainer(model=model, args=args, train_dataset=rows)
    sampler = trainer.get_train_dataloader().batch_sampler.sampler  # accelerate batches the Trainer's sampler
    assert isinstance(sampler, SeededLengthGroupedSampler), (
        f"the Trainer's train sampler is {type(sampler).__name__}: its _get_train_sampler hook no longer "
        "decides it (pipeline/compat.py TrainSamplerHook)")


def test_n_gpu_is_what_the_trainer_reads_for_data_parallel(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    compat.use_one_gpu(args)
    assert args.n_gpu == 1, "TrainingArguments.n_gpu no longer reads _n_gpu (pipeline/compat.py use_one_gpu)"
    wrap = inspect.getsource(Trainer)
    assert "DataParallel" in wrap and "n_gpu > 1" in wrap, (
        "the Trainer no longer decides nn.DataParallel on args.n_gpu > 1: re-check pipeline/compat.py use_one_gpu")


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
