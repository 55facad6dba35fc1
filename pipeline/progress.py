"""One progress bar per training phase, the step metrics (loss, learning rate, dev scores) in its postfix.

The step metrics still go to W&B (`report_to`) and to the Trainer's log history (which exact resume restores
and the DVC plots are written from). transformers' own ProgressCallback writes every log dict as a line
between redraws of its bar: `PhaseBars` replaces it through the public callback API
(`Trainer.remove_callback` / `add_callback`), the one thing here no library offers.
"""

from __future__ import annotations

import math

from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, TrainerCallback


class PhaseBars(TrainerCallback):
    """A bar per training phase (`per_epoch`: one per epoch, `phase epoch i/N`), loss, lr and dev
    accuracy in its postfix, the ETA from tqdm; evaluation batches in a transient bar."""

    def __init__(self, phase: str, per_epoch: bool = False):
        self.phase, self.per_epoch = phase, per_epoch
        self.bar = self.eval_bar = None
        self.shown = 0  # the global step the bar has counted up to
        self.training = False
        self.postfix: dict[str, str] = {}

    @staticmethod
    def install(trainer, phase: str, per_epoch: bool = False) -> None:
        """Replace the Trainer's step printers with a PhaseBars (nothing is shown if `disable_tqdm`)."""
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)  # what the Trainer installs instead when disable_tqdm is set
        if not trainer.args.disable_tqdm:
            trainer.add_callback(PhaseBars(phase, per_epoch))

    def _open(self, total: int, done: int, desc: str) -> None:
        self.close()
        self.bar = tqdm(total=total, initial=done, desc=desc, dynamic_ncols=True, leave=True)
        self.postfix = {}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.close()
            self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.shown, self.training = state.global_step, True  # after a resume: the steps done before it
        if state.is_world_process_zero and not self.per_epoch:
            self._open(state.max_steps, state.global_step, self.phase)

    def on_epoch_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.per_epoch:
            epochs = max(1, math.ceil(args.num_train_epochs))
            per_epoch = math.ceil(state.max_steps / epochs)
            epoch = min(epochs, int(state.global_step // per_epoch) + 1)
            self._open(per_epoch, state.global_step - (epoch - 1) * per_epoch, f"{self.phase} epoch {epoch}/{epochs}")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.shown)
        self.shown = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            self.postfix.update(loss=f"{logs['loss']:.3f}", lr=f"{logs.get('learning_rate', 0):.1e}")
        if "eval_accuracy" in logs:
            self.postfix["dev_acc"] = f"{logs['eval_accuracy']:.3f}"
        self.bar.set_postfix(self.postfix, refresh=False)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero or eval_dataloader is None:
            return
        if self.eval_bar is None:  # dev evaluation inside training: transient; a test prediction: kept
            total = len(eval_dataloader) if hasattr(eval_dataloader, "__len__") else None
            self.eval_bar = tqdm(total=total, desc=f"{self.phase} dev" if self.training else self.phase,
                                 leave=not self.training, dynamic_ncols=True)
        self.eval_bar.update(1)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.eval_bar is not None:
            self.eval_bar.close()
            self.eval_bar = None
        if self.per_epoch:  # the epoch's bar ends with its dev accuracy
            self.close()

    def on_predict(self, args, state, control, **kwargs):
        self.on_evaluate(args, state, control)

    def on_train_end(self, args, state, control, **kwargs):
        self.close()
        self.training = False
