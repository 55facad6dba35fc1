"""What a person sees on the console: one summary line per stage, one result block at the end of the
pipeline. The progress bars are pipeline/progress.py's; `collect`'s lines on leaks and short sources are
pipeline/corpus.py's. Light on purpose (every stage imports it): no torch, transformers or datasets.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.io import read_json


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
        if m.get("zero_shot"):
            return f"[finetune] zero-shot: dev accuracy {m['dev_accuracy']:.4f}, no training step, {t}"
        kept = "last epoch's dev accuracy" if m.get("kept") == "last" else "best dev accuracy"
        return (f"[finetune] {kept} {m['dev_accuracy']:.4f} at epoch {m['best_epoch']:.0f} of "
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
