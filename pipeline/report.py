"""What `compare` writes: one markdown table, CSV (a DVC plot), JSON and PNG for a strategy grid or for a
grid crossed with a param (`--by`), and the warnings about what the grid cannot detect."""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.io import atomic_file, atomic_write_text, write_csv, write_json
from pipeline.stats import headline, sort_key

WARN_MDE = 0.01  # warn when a comparison cannot detect a 1-point difference: the literature's effects are 0.5 to 2


def groups(summary: dict) -> list[tuple]:
    """(value of --by, that value's summary) pairs; a strategy table is one group with no value."""
    return list(summary["groups"].items()) if "by" in summary else [(None, summary)]


def _pm(mean: float, std: float | None, scale: float = 100.0, digits: int = 2) -> str:
    if math.isnan(mean):
        return "–"
    spread = "–" if std is None else f"{std * scale:,.{digits}f}"
    return f"{mean * scale:,.{digits}f} ± {spread}"


def _ci(d: dict, scale: float = 100.0) -> str:
    return f"{d['diff'] * scale:+.2f} [{d['ci_low'] * scale:+.2f}, {d['ci_high'] * scale:+.2f}]"


def _delta_cells(vs: dict | None) -> list[str]:
    """Δ accuracy [CI], the p of that interval, the MDE in points; †: one paired seed (test sampling only)."""
    if not vs:
        return ["–"] * 3
    shown, mark = headline(vs), "" if vs["power"]["seed_term"] else " †"
    return [_ci(shown) + mark, f"{shown['p_value']:.3f}", f"{vs['power']['mde'] * 100:.2f}{mark}"]


def replicate_label(parts: list[dict]) -> str:
    """What a replicate is in these groups (pipeline.stats.replicates): `seed`, `pretrain.seed` or both."""
    return " / ".join(sorted({g.get("replicates", "seed") for g in parts}))


def _delta_note(summary: dict, parts: list[dict]) -> str:
    """What the Δ accuracy, p and MDE columns cover (both kinds when the table holds both)."""
    kinds = {e["vs_baseline"]["power"]["seed_term"] for g in parts for e in g["strategies"].values()
             if "vs_baseline" in e}
    note = (f"Δ accuracy: the difference in points ± t·SE, the SE covering both the sampling of the "
            f"{summary['test_examples']} test examples and the spread over the paired replicates, "
            f"`{replicate_label(parts)}` (replicates x examples random-effects model, pipeline/variance.py), t at "
            f"its Satterthwaite df (few replicates widen it); "
            f"p: its two-sided p-value. " * (True in kinds))
    note += (f"{'†: ' if True in kinds else 'Δ accuracy: '}one paired seed, no measured seed spread: paired "
             f"bootstrap over the test examples only ({summary['bootstrap_resamples']:,} resamples), p its "
             f"two-sided p-value, the MDE from test sampling only. " * (False in kinds))
    return note + (f"MDE: the smallest true difference detected with 80% power at {summary['confidence']:.0%} "
                   f"confidence (a warning says when it is above {WARN_MDE * 100:g} point).")


def _within_note(summary: dict) -> str:
    """Where a replicate averages several runs (label draws, MLM seeds), what its interval leaves out."""
    over = sorted({p for _, g in groups(summary) for e in g["strategies"].values() for p in e.get("averaged_over", [])})
    if not over:
        return ""
    names = ", ".join(f"`{p}`" for p in over)
    return (f" A replicate here is the mean of its runs over {names}: the interval counts the spread between "
            f"replicates, not the effects those runs share across all replicates (the same MLM models and label "
            f"draws serve every seed), so it holds for these models and draws; their spread is in the ± over runs.")


def markdown(summary: dict) -> str:
    """The table: a row per strategy (and value of `--by`), then a note on what each column covers."""
    by, base, conf = summary.get("by"), summary["baseline"], int(round(summary["confidence"] * 100))
    arm = f"`{summary['arm']}`" if "arm" in summary else "strategy"  # compare --arm: that param's values
    head = [f"`{by}`"] * bool(by) + [arm, f"runs ({replicate_label([g for _, g in groups(summary)])})",
                                     "accuracy %", "macro-F1 %",
                                     f"Δ accuracy vs `{base}` [{conf}% CI]", "p", "MDE (80% power)",
                                     f"Δ macro-F1 vs `{base}` [{conf}% CI]", "held-out MLM ppl before → after",
                                     "minutes per run"]
    align = ["---"] * bool(by) + ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---", "---:"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for value, group in groups(summary):
        for strategy, e in group["strategies"].items():
            vs = e.get("vs_baseline")
            ppl = _pm(e["perplexity_after"], e["perplexity_after_std"], scale=1.0, digits=0)  # – : no MLM
            ppl = ppl if ppl == "–" else f"{e['perplexity_before']:,.0f} → {ppl}"
            cells = [str(value)] * bool(by) + [
                f"`{strategy}`", f"{len(e['runs'])} ({', '.join(map(str, e['seeds']))})",
                _pm(e["accuracy"], e["accuracy_std"]), _pm(e["macro_f1"], e["macro_f1_std"]), *_delta_cells(vs),
                _ci(headline(vs, "macro_f1")) if vs else "–", ppl, _pm(e["minutes"], e["minutes_std"], scale=1.0, digits=1)]
            lines.append("| " + " | ".join(cells) + " |")
    borrowed = summary.get("baseline_borrowed_at")
    lines += ["", (f"Mean ± sample std over runs (– : one run). {f'At each value of `{by}`: ' if by else ''}"
                   f"{_delta_note(summary, [g for _, g in groups(summary)])}{_within_note(summary)} Δ macro-F1: the same "
                   f"interval as Δ accuracy on macro-F1's per-example linearisation (delta method), seeds and test "
                   f"examples; with one paired seed the paired bootstrap over the test examples. Minutes: wall time of a run's pretrain, finetune and evaluate stages (their "
                   f"metrics' `seconds`)."
                   + (f" The `{base}` runs (one value of `{by}`) serve as the baseline at "
                      f"{', '.join(map(str, borrowed))}." if borrowed else ""))]
    return "\n".join(lines) + "\n"


def power_warnings(summary: dict, plan_flags: str = "") -> list[str]:
    """A line per comparison whose MDE is above WARN_MDE, and per comparison paired in seed order."""
    lines = []
    for value, group in groups(summary):
        for strategy, e in group["strategies"].items():
            pw = e.get("vs_baseline", {}).get("power")
            what = f"{strategy} vs {summary['baseline']}" + (f" at {summary['by']}={value}" if "by" in summary else "")
            if pw and pw["paired_by"] == "order":
                lines.append(f"[compare] note: {what}: no fine-tuning seed in common; Δ accuracy pairs "
                             f"{pw['seeds']} run(s) of each in seed order")
            if pw and pw["mde"] > WARN_MDE:
                lines.append(f"[compare] warning: {what}: this grid can only detect differences of "
                             f"{pw['mde'] * 100:.1f} points or more (80% power"
                             f"{'' if pw['seed_term'] else '; test sampling only, one seed'}); the literature's "
                             f"effects are 0.5 to 2 points. Plan a larger grid: python -m pipeline.power --test "
                             f"{group['test_examples']} --seeds {pw['seeds']} --target-mde {WARN_MDE:g}{plan_flags}")
    return lines


def _csv_rows(summary: dict) -> list[dict]:
    """A row per strategy (and value): accuracy and macro-F1, the Δ accuracy the table shows and its MDE
    (points), perplexity, minutes."""
    by, rows = summary.get("by"), []
    for value, group in groups(summary):
        for strategy, e in group["strategies"].items():
            vs = e.get("vs_baseline")
            shown = headline(vs) if vs else {}
            rows.append({**({by: value} if by else {}), "strategy": strategy, "runs": len(e["runs"]),
                         "accuracy": round(e["accuracy"] * 100, 3),
                         "accuracy_std": None if e["accuracy_std"] is None else round(e["accuracy_std"] * 100, 3),
                         "macro_f1": round(e["macro_f1"] * 100, 3),
                         **{col: round(shown[key] * 100, 3) if vs else (None if by else 0.0)
                            for col, key in (("delta_accuracy", "diff"), ("ci_low", "ci_low"), ("ci_high", "ci_high"))},
                         "mde": round(vs["power"]["mde"] * 100, 3) if vs else None,
                         "perplexity_after": e["perplexity_after"], "minutes": round(e["minutes"], 2)})
    return rows


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_strategies(summary: dict, runs, path: Path) -> None:
    """Per strategy: accuracy (mean ± std, a dot per seed), Δ from the baseline with its interval, and the
    held-out perplexity before and after MLM."""
    plt = _pyplot()
    strategies = list(summary["strategies"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    for x, s in enumerate(strategies):
        e = summary["strategies"][s]
        ax.errorbar(x, e["accuracy"] * 100, yerr=(e["accuracy_std"] or 0.0) * 100, fmt="o", capsize=6, color="C0")
        ax.scatter([x] * len(e["runs"]), [r.accuracy * 100 for r in runs if r.strategy == s],
                   color="C1", s=12, zorder=3)
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_ylabel("test accuracy % (mean ± std; dots: seeds)")
    ax = axes[1]
    rows = [(x, summary["strategies"][s].get("vs_baseline")) for x, s in enumerate(strategies)]
    for x, vs in rows:
        if vs:
            a = headline(vs)
            ax.errorbar(x, a["diff"] * 100, yerr=[[(a["diff"] - a["ci_low"]) * 100], [(a["ci_high"] - a["diff"]) * 100]],
                        fmt="s", capsize=6, color="C2")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_ylabel(f"Δ accuracy vs {summary['baseline']} (points, {int(summary['confidence'] * 100)}% CI)")
    ax = axes[2]
    floor = min((summary["strategies"][s]["perplexity_after"] for s in strategies
                 if not math.isnan(summary["strategies"][s]["perplexity_after"])), default=1.0)
    for x, s in enumerate(strategies):
        e = summary["strategies"][s]
        if not math.isnan(e["perplexity_after"]):
            ax.bar(x - 0.2, e["perplexity_before"], width=0.4, color="C7", label="before" if x == 0 else None)
            ax.bar(x + 0.2, e["perplexity_after"], width=0.4, color="C3", label="after" if x == 0 else None)
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(1.0, floor / 2))
    ax.set_xticks(range(len(strategies)), strategies)
    ax.set_ylabel("held-out task MLM perplexity")
    ax.legend()
    _save(fig, path)


def plot_by(summary: dict, path: Path) -> None:
    """Against the param's values, a line per strategy (the baseline dashed): test accuracy with each
    point's minutes per run written beside it, the difference from the baseline with its interval,
    and, when the runs did MLM, the held-out perplexity after it (a dose-response reads all three)."""
    plt = _pyplot()
    values = summary["values"]
    numeric = all(sort_key(v)[0] == 0 for v in values)
    xs = [float(v) for v in values] if numeric else list(range(len(values)))
    strategies = list(dict.fromkeys(s for g in summary["groups"].values() for s in g["strategies"]))
    with_ppl = any(not math.isnan(e["perplexity_after"]) for g in summary["groups"].values()
                   for e in g["strategies"].values())
    fig, axes = plt.subplots(1, 3 if with_ppl else 2, figsize=(16 if with_ppl else 11, 4))
    for i, strategy in enumerate(strategies):
        pts = [(x, g["strategies"][strategy]) for x, g in zip(xs, summary["groups"].values())
               if strategy in g["strategies"]]
        style = dict(color=f"C{i}", capsize=4, marker="o", label=strategy,
                     linestyle="--" if strategy == summary["baseline"] else "-")
        axes[0].errorbar([x for x, _ in pts], [e["accuracy"] * 100 for _, e in pts],
                         yerr=[(e["accuracy_std"] or 0.0) * 100 for _, e in pts], **style)
        if strategy != summary["baseline"]:  # the baseline's minutes are the same run at every value
            for x, e in pts:
                if not math.isnan(e["minutes"]):
                    axes[0].annotate(f"{e['minutes']:.0f} min", (x, e["accuracy"] * 100), fontsize=7,
                                     color=f"C{i}", textcoords="offset points", xytext=(4, 4))
        vs = [(x, headline(e["vs_baseline"])) for x, e in pts if e.get("vs_baseline")]
        if vs:
            axes[1].errorbar([x for x, _ in vs], [a["diff"] * 100 for _, a in vs],
                             yerr=[[(a["diff"] - a["ci_low"]) * 100 for _, a in vs],
                                   [(a["ci_high"] - a["diff"]) * 100 for _, a in vs]], **style)
        ppl = [(x, e) for x, e in pts if not math.isnan(e["perplexity_after"])]
        if with_ppl and ppl:
            axes[2].errorbar([x for x, _ in ppl], [e["perplexity_after"] for _, e in ppl],
                             yerr=[e["perplexity_after_std"] or 0.0 for _, e in ppl], **style)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[0].set_ylabel("test accuracy % (mean ± std over seeds; minutes per run)")
    axes[1].set_ylabel(f"Δ accuracy vs {summary['baseline']} (points, {int(summary['confidence'] * 100)}% CI)")
    if with_ppl:
        axes[2].set_ylabel("held-out MLM perplexity after pretraining")
        axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel(summary["by"])
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in values])
        ax.legend(fontsize=8)
    _save(fig, path)


def write_report(summary: dict, runs, out: str | Path) -> dict:
    """reports/compare.{md,json,csv,png}, or reports/compare-by-<param>.* with `--by` (the strategy
    table's files are then left as they are); the csv is the DVC plot (`dvc plots show`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by = summary.get("by")
    stem = f"compare-by-{by}" if by else "compare"
    paths = {kind: out / f"{stem}.{ext}" for kind, ext in (("markdown", "md"), ("json", "json"), ("csv", "csv"),
                                                           ("png", "png"))}
    atomic_write_text(paths["markdown"], markdown(summary))
    if by:  # values may be numbers: JSON keys are strings
        write_json(paths["json"], {**summary, "values": [str(v) for v in summary["values"]],
                                   "groups": {str(k): g for k, g in summary["groups"].items()},
                                   "baseline_borrowed_at": [str(v) for v in summary["baseline_borrowed_at"]]})
    else:
        write_json(paths["json"], summary)
    rows = _csv_rows(summary)
    write_csv(paths["csv"], rows, list(rows[0]))
    if by:
        plot_by(summary, paths["png"])
    else:
        plot_strategies(summary, runs, paths["png"])
    return paths
