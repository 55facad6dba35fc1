"""What a person sees on the console: one progress bar per phase, one summary line per stage, one
result block at the end of the pipeline.

The step metrics (loss, learning rate, dev scores) still go to W&B (`report_to`), to the Trainer's
log history (which exact resume restores and the DVC plots are written from); on the console they
are the bar's postfix. transformers' own ProgressCallback writes every log dict as a line, one per
step at `logging_steps=1`, between redraws of its bar: `PhaseBars` replaces it through the public
callback API (`Trainer.remove_callback` / `add_callback`), the one thing here no library offers.
"""

from __future__ import annotations

import math
from pathlib import Path

from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from pipeline.io import read_json


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


def _int(n) -> str:
    return f"{int(n):,}"


def _ppl(x) -> str:
    return "–" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def summary_line(stage: str, m: dict) -> str:
    """The one line a stage ends with: its key figures and its time (from its metrics)."""
    t = f"in {m.get('seconds', 0):,.0f} s"
    if stage == "prepare":
        return (f"[prepare] {_int(m['train_docs'])} train / {_int(m['dev_docs'])} dev / {_int(m['test_docs'])} test "
                f"examples, {m['classes']} classes, {t}")
    if stage == "collect":
        if not m.get("docs"):
            return f"[collect] no corpus (pretrain.source none) {t}"
        return (f"[collect] {_int(m['docs'])} documents, {_int(m['tokens'])} tokens "
                f"({m.get('budget_coverage', 0):.0%} of the budget); removed {_int(m.get('duplicates_removed', 0))} "
                f"duplicates and {_int(m.get('leaked_removed', 0))} leaks of dev/test text, {t}")
    if stage == "pretrain":
        if not m.get("tokens_trained"):
            return f"[pretrain] no MLM (pretrain.source none) {t}, held-out perplexity {_ppl(m['perplexity_before'])}"
        head = f" -> {_ppl(m['perplexity_head_only'])} (head warmed up)" if m.get("perplexity_head_only") else ""
        return (f"[pretrain] {_int(m['tokens_trained'])} tokens {t}, held-out perplexity "
                f"{_ppl(m['perplexity_before'])}{head} -> {_ppl(m['perplexity_after'])}")
    if stage == "finetune":
        early = ", stopped early" if m.get("stopped_early") else ""
        return (f"[finetune] best dev accuracy {m['dev_accuracy']:.4f} at epoch {m['best_epoch']:.0f} of "
                f"{m['epochs_run']:.0f}{early}, {t}")
    if stage == "evaluate":
        return f"[evaluate] test accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, {t}"
    return f"[{stage}] done {t}"


STAGE_METRICS = {"prepare": "prepare.json", "collect": "corpus.json", "pretrain": "pretrain.json",
                 "finetune": "finetune.json", "evaluate": "eval.json"}


def result_block(strategy: str, metrics_dir: str | Path = "metrics") -> str:
    """The run's result, printed once at the end of the pipeline (by `evaluate`): strategy, test
    accuracy and macro-F1, held-out perplexity before and after MLM, minutes per stage. Display only:
    it reads the other stages' metrics files as they are, a missing one shows as "–"."""
    paths = {stage: Path(metrics_dir) / name for stage, name in STAGE_METRICS.items()}
    m = {stage: read_json(path) if path.exists() else {} for stage, path in paths.items()}
    ev, pre = m["evaluate"], m["pretrain"]
    minutes = ", ".join(f"{s} {m[s]['seconds'] / 60:.1f}" if "seconds" in m[s] else f"{s} –" for s in STAGE_METRICS)
    total = sum(m[s].get("seconds", 0) for s in STAGE_METRICS) / 60
    rule = "-" * 60
    return "\n".join([
        rule,
        f"result   strategy {strategy}: test accuracy {ev.get('accuracy', float('nan')):.4f}, "
        f"macro-F1 {ev.get('macro_f1', float('nan')):.4f}",
        f"         held-out MLM perplexity {_ppl(pre.get('perplexity_before'))} -> {_ppl(pre.get('perplexity_after'))}",
        f"minutes  {minutes} (total {total:.1f})",
        rule])


LEAK_KEYS = ("leaked", "leaked_near", "leaked_ngram")
SHORT_REASONS = {"leaked": "copies of dev/test text (the leak guard)", "too_short": "shorter than min_chars",
                 "too_long": "longer than max_chars", "empty": "empty after cleaning",
                 "duplicate": "exact duplicates", "near_duplicate": "near duplicates"}


def shortfall(report: dict) -> tuple[str, str] | None:
    """(the reason, in words) a source gave under 99% of its share of the budget, or None. The reason is
    each source's `fell_short` in metrics/corpus.json (`corpus.corpus_stats`)."""
    target = report.get("target_tokens")
    # the draw stops at a document's boundary: short only when every kept document was drawn (or was a
    # near duplicate of one drawn) and the tokens still fall under the share
    exhausted = report["docs"] + report["dropped"].get("near_duplicate", 0) >= report["docs_kept"]
    if not target or not exhausted or report["tokens"] >= 0.99 * target:
        return None
    dropped = dict(report["dropped"])
    dropped["leaked"] = sum(dropped.pop(k, 0) for k in LEAK_KEYS)
    lost = {k: v for k, v in dropped.items() if v}
    if report["docs_in"] == 0:
        return "empty", "it has no records"
    why = ", ".join(f"{v:,} {SHORT_REASONS[k]}" for k, v in sorted(lost.items(), key=lambda kv: -kv[1]))
    main = max(lost, key=lost.get) if lost else "exhausted"
    return main, (f"of its {report['docs_in']:,} documents {why} were dropped; the {report['docs_kept']:,} left "
                  f"hold fewer tokens than its share" if lost else
                  f"all its {report['docs_kept']:,} documents were drawn and hold fewer tokens than its share")


def budget_lines(stats: dict) -> list[str]:
    """The console lines on leaks (by source) and on each source that fell short of its share, with why."""
    lines = []
    leaks = {name: sum(r["dropped"][k] for k in LEAK_KEYS) for name, r in stats["sources"].items()}
    if stats["leaked_removed"]:
        lines.append(f"[collect] leak guard: removed {stats['leaked_removed']:,} documents that copy dev/test text "
                     f"(exact {stats['leaked_exact']:,}, near {stats['leaked_near']:,}, 8-gram "
                     f"{stats['leaked_ngram']:,}): " + ", ".join(f"{n} {v:,}" for n, v in leaks.items() if v))
    for name, report in stats["sources"].items():
        if report["fell_short"]:  # the reason; shortfall() also says it in words
            lines.append(f"[collect] warning: source `{name}` gave {report['tokens']:,} of its "
                         f"{report['target_tokens']:,.0f}-token share ({report['fell_short']}): "
                         f"{shortfall(report)[1]}. Its unused share "
                         f"is not given to other sources (budget coverage {stats['budget_coverage']:.0%}): add "
                         f"text to it, lower its weight, or remove it.")
    return lines
