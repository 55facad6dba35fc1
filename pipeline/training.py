"""What both training stages share on top of the Trainer: a non-finite-loss stop, resumable
checkpoints that belong to one set of inputs, and keeping the best epoch across a resume.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from pipeline.compat import LengthGroupedSampler, TrainSamplerHook, learning_rate, use_one_gpu
from pipeline.config import Train
from pipeline.progress import PhaseBars
from pipeline.distributed import barrier, is_main_process
from pipeline.checkpoints import checkpoint_step, last_complete_checkpoint
from pipeline.io import atomic_dir, hash_file
from pipeline.precision import resolve_precision
from pipeline.tracking import report_to


def log_every(steps: int) -> int:
    """`logging_steps` for a run of `steps` optimizer steps: about 50 logs (each reads the loss on the
    host), besides those at checkpoints and epoch ends (LogAtBoundaries)."""
    return max(1, steps // 50)


def training_arguments(output_dir: str | Path, train: Train, seed: int | None = None, checkpoints: bool = True,
                       **stage_args) -> TrainingArguments:
    """The TrainingArguments every Trainer here shares (pretrain, finetune, evaluate's predict):
    precision, device, data-loading workers, compile, linear schedule; for training (`seed` given,
    `checkpoints`) also the seeds, the resumable checkpoints and the tracker. `stage_args` add the
    stage's own. Never nn.DataParallel (`single_device`)."""
    args = dict(output_dir=str(output_dir), bf16=resolve_precision(train.precision) == "bf16",
                use_cpu=not torch.cuda.is_available(), dataloader_num_workers=train.num_workers,
                torch_compile=train.compile, lr_scheduler_type="linear", report_to=[], save_strategy="no",
                # the Trainer's own NaN filter reads every step's loss on the host (a sync per step) to hide
                # non-finite ones; CheckedTrainer stops at them instead, without a sync
                logging_nan_inf_filter=False,
                # batches come from pinned memory: copy them to the GPU without making the host wait
                accelerator_config={"non_blocking": torch.cuda.is_available()})
    if seed is not None:
        args.update(seed=seed, data_seed=seed)
    if checkpoints:
        args.update(save_strategy="steps" if train.checkpoint_steps else "no", save_steps=train.checkpoint_steps or 500,
                    save_total_limit=1, report_to=report_to())
    args.update(stage_args)
    return single_device(TrainingArguments(**args))


def single_device(args):
    """Never nn.DataParallel: with several GPUs visible to one process (no torchrun), the Trainer
    would wrap the model in it (memory piles up on GPU 0, the others idle). Use one GPU and
    say how to use them all."""
    if args.n_gpu > 1:
        print(f"[dapt] {args.n_gpu} GPUs visible to one process: using one. Set launch.nproc_per_node="
              f"{args.n_gpu} to train on all of them with DDP.", file=sys.stderr)
        use_one_gpu(args)
    return args


class NonFiniteLossError(RuntimeError):
    pass


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order, drawn from a generator seeded by (seed, epoch).

    The Trainer's own LengthGroupedSampler draws from the global torch RNG, whose state at an
    epoch's start depends on everything drawn before (dropout included), and a resumed run
    restores it only after the epoch's order was drawn: a resumed run trained on other batches
    than an uninterrupted one. Seeded per epoch (the Trainer calls `set_epoch`), like
    accelerate's SeedableRandomSampler for random batches, the order is the same either way, and
    the same on every DDP rank.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


class LogAtBoundaries(TrainerCallback):
    """Log (the Trainer's mean loss since its last log) at every checkpoint and every epoch's end, besides
    every `logging_steps`. A resumed run then starts right after a log, so its log history (restored from
    the checkpoint) holds the same segments as an uninterrupted run's, and an epoch's loss is the mean of
    whole segments inside it: exact curves and losses without a log, and its host sync, every step."""

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:  # DefaultFlowCallback, which runs first, has decided the save
            control.should_log = True

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_log = True


class CheckedTrainer(TrainSamplerHook):
    """A Trainer that stops at the first NaN or infinite loss, saying where and with what lr, and
    whose length-grouped batches resume exactly (SeededLengthGroupedSampler).

    The check costs no host sync per step: on a GPU, reading the loss every step (`float(loss)`)
    would stall the CPU until the step's kernels finish, so it could never queue the next batch
    ahead. The first non-finite step, its loss and lr and the last finite loss are kept on the
    device and read at the next log, checkpoint or epoch end (`LogAtBoundaries`), before anything
    is saved or evaluated.
    """

    def __init__(self, *args, phase: str = "[train]", per_epoch: bool = False, **kwargs):
        """`phase` names the progress bar (`per_epoch`: one bar per epoch), pipeline.progress.PhaseBars."""
        super().__init__(*args, **kwargs)
        self.add_callback(LogAtBoundaries())
        PhaseBars.install(self, phase, per_epoch)
        self._watch: dict[str, torch.Tensor] | None = None

    def train_sampler(self, sampler):
        if type(sampler) is LengthGroupedSampler:
            return SeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, self.args.data_seed)
        return sampler

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        value = loss.detach().float()
        if self._watch is None:
            self._watch = {"step": torch.full((), -1, dtype=torch.long, device=value.device),
                           "loss": torch.zeros((), device=value.device), "lr": torch.zeros((), device=value.device),
                           "last_finite": torch.full((), float("nan"), device=value.device)}
        w, lr = self._watch, learning_rate(self) if self.lr_scheduler is not None else self.args.learning_rate
        clean = w["step"] < 0  # no non-finite loss seen yet
        first = clean & ~torch.isfinite(value)
        w["step"] = torch.where(first, self.state.global_step + 1, w["step"])
        w["loss"] = torch.where(first, value, w["loss"])
        w["lr"] = torch.where(first, float(lr), w["lr"])  # Python scalars: kernel arguments, no host-to-device copy
        w["last_finite"] = torch.where(clean & ~first, value, w["last_finite"])
        return loss

    def check_finite(self) -> None:
        """Raise NonFiniteLossError if a step's loss was NaN or infinite (one host read)."""
        if self._watch is None or int(self._watch["step"]) < 0:
            return
        w = {k: v.item() for k, v in self._watch.items()}
        last = None if math.isnan(w["last_finite"]) else w["last_finite"]
        raise NonFiniteLossError(
            f"loss is {w['loss']} at step {int(w['step'])} (lr {w['lr']:.3g}); the last finite loss was {last}. "
            f"Lower the learning rate, check the data, or use train.precision: fp32.")

    def log(self, logs, *args, **kwargs):
        self.check_finite()  # every log, and so every checkpoint, epoch end and the end of training
        super().log(logs, *args, **kwargs)


def logged_segments(trainer: Trainer) -> list[tuple[float, int, float]]:
    """(epoch at its end, steps, mean loss) of each logged stretch of training: the steps since the
    previous loss log (LogAtBoundaries makes each lie inside one epoch)."""
    segments, last = [], 0
    for h in trainer.state.log_history:
        if "loss" in h:
            segments.append((h["epoch"], h["step"] - last, h["loss"]))
            last = h["step"]
    return segments


def mean_logged_loss(trainer: Trainer, result) -> float:
    """Mean training loss per step, from the log history's segments.

    The log history is checkpointed, so after a resume this still covers the whole run;
    the Trainer's own `training_loss` counts only the steps since the resume.
    """
    segments = logged_segments(trainer)
    steps = sum(n for _, n, _ in segments)
    return float(sum(n * loss for _, n, loss in segments) / steps) if steps else float(result.training_loss)


def fingerprint(config: dict, files: list[str | Path]) -> str:
    """Identity of a training run's inputs: the params that shape it and its data files."""
    def plain(value):  # a params section (pydantic model) by its values
        return value.model_dump() if hasattr(value, "model_dump") else str(value)

    h = hashlib.blake2b(json.dumps(config, sort_keys=True, default=plain).encode(), digest_size=16)
    for path in files:
        hash_file(h, path)
    return h.hexdigest()


def _written_for(work_dir: Path, run_id: str) -> bool:
    """Whether `work_dir`'s stamp says it was written for these inputs (`run_id`)."""
    stamp = work_dir / "run_id"
    return stamp.exists() and stamp.read_text().strip() == run_id


def claim_work_dir(work_dir: str | Path, run_id: str) -> None:
    """Keep `work_dir` only if it was written for the same inputs (`run_id`), else empty it.

    So a changed experiment never resumes from a stranger's checkpoint. Main process only.
    """
    work_dir = Path(work_dir)
    if work_dir.exists() and not _written_for(work_dir, run_id):
        shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "run_id").write_text(run_id)


class KeepBestEpoch(TrainerCallback):
    """Save the model of the best dev evaluation to `work_dir/best`, across resumes.

    Used instead of `load_best_model_at_end`, which needs checkpoints and evaluations on the
    same schedule; here checkpoints come every N steps (for resume) and evaluation every epoch.
    """

    def __init__(self, work_dir: str | Path, metric: str = "eval_accuracy"):
        self.dir = Path(work_dir) / "best"
        self.metric = metric

    def best(self) -> dict | None:
        path = self.dir / "best.json"
        return json.loads(path.read_text()) if path.exists() else None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not state.is_world_process_zero or metrics is None or self.metric not in metrics:
            return
        best = self.best()
        if best is None or metrics[self.metric] > best["value"]:
            with atomic_dir(self.dir) as tmp:  # a kill mid-save keeps the previous best intact
                model.save_pretrained(tmp)
                (tmp / "best.json").write_text(json.dumps({"value": metrics[self.metric], "epoch": state.epoch,
                                                           "step": state.global_step}))

    def load_into(self, model) -> dict | None:
        """Copy the best weights into `model` (every rank reads the same file)."""
        best = self.best()
        if best is not None:
            from safetensors.torch import load_file

            state = {}
            for f in sorted(self.dir.glob("*.safetensors")):
                state.update(load_file(str(f)))
            missing, unexpected = model.load_state_dict(state, strict=False)
            # tied weights are stored once (safetensors keeps one name of tensors sharing memory, also in a model
            # nested in another, as the prompt classifier's MLM); anything else missing is a real mismatch
            tied = set(getattr(model, "all_tied_weights_keys", None) or ())
            by_memory: dict[int, list[str]] = {}
            for key, tensor in model.state_dict().items():
                by_memory.setdefault(tensor.data_ptr(), []).append(key)
            tied |= {k for keys in by_memory.values() if len(keys) > 1 and any(x in state for x in keys) for k in keys}
            if unexpected or [k for k in missing if k not in tied]:
                raise RuntimeError(f"best checkpoint does not match the model: missing {missing}, "
                                   f"unexpected {unexpected}")
        return best


class StopWhenDevStalls(TrainerCallback):
    """Stop fine-tuning once dev accuracy has not improved for `patience` evaluations (epochs).

    Not transformers' EarlyStoppingCallback: that one needs `load_best_model_at_end`, which needs
    checkpoints on the evaluation schedule, while here checkpoints come every N steps for resume
    and KeepBestEpoch keeps the best weights. The decision reads the Trainer's log history, which
    every rank holds alike and every checkpoint restores, so a resumed run stops where an
    uninterrupted one does.
    """

    def __init__(self, patience: int, metric: str = "eval_accuracy"):
        self.patience, self.metric = patience, metric
        self.stopped_at: float | None = None

    def on_evaluate(self, args, state, control, **kwargs):
        scores = [h[self.metric] for h in state.log_history if self.metric in h]
        if self.patience and scores:
            best = max(range(len(scores)), key=scores.__getitem__)  # the first of equal bests
            if len(scores) - 1 - best >= self.patience:
                control.should_training_stop = True
                self.stopped_at = state.epoch


def resumable_checkpoint(work_dir: str | Path, run_id: str) -> str | None:
    """The last checkpoint in `work_dir` if it was written for these inputs (`run_id`), else None."""
    return last_complete_checkpoint(work_dir) if _written_for(Path(work_dir), run_id) else None


def train_with_resume(trainer: Trainer, work_dir: str | Path, run_id: str, name: str = "train"):
    """`trainer.train()`, resumed from the last matching checkpoint in `work_dir` if any, saying so.
    Returns (TrainOutput, the step it resumed from or 0)."""
    if is_main_process():
        claim_work_dir(work_dir, run_id)
    barrier()
    checkpoint = last_complete_checkpoint(work_dir)
    resumed = checkpoint_step(checkpoint) if checkpoint else 0
    if checkpoint and is_main_process():
        print(f"[{name}] resuming from {checkpoint} (step {resumed}): the same inputs were interrupted there; "
              f"the steps before it are not repeated", flush=True)
    return trainer.train(resume_from_checkpoint=checkpoint), resumed
