"""Reading finished DVC experiments for `compare`, `power` and `labels`: this checkout's reader
(`pipeline.runs.dvc_experiments`: experiment refs, dvc.lock from git, outs from the local DVC cache)
against the reader it replaced (`Repo.experiments.show(all_commits=True)` for params and metrics, then
`dvc.api.read` per experiment for its predictions), in one process on the same repo and names.

    python bench/bench_read_exps.py --repo PATH [--names NAME ...] [--rounds 1]

Both readers must return the same runs (names, params, metrics, predictions): the bench checks before
it prints. Times are seconds of wall clock; the figure to report is the ratio, old / new, on one machine
with nothing else running (pause a grid with `kill -STOP` first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.runs import METRIC_FILES, dvc_experiments, make_run  # noqa: E402


def old_reader(repo: str, names: list[str] | None):
    """The reader of pipeline/runs.py before this bench (git show 9b06c05:pipeline/runs.py), trimmed to
    its reading: DVC's experiment table, then dvc.api.read of each experiment's predictions."""
    import dvc.api
    from dvc.repo import Repo

    with Repo.open(repo) as dvc_repo:
        states = [state.dumpd() for state in dvc_repo.experiments.show(all_commits=True)]
    found = {}
    for baseline in states:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                has_eval = bool((((rev.get("data") or {}).get("metrics") or {}).get("metrics/eval.json") or {})
                                .get("data")) and not rev.get("error")
                if rev.get("name") and rev.get("rev") and has_eval:
                    found[rev["name"]] = rev
    runs = []
    for name in sorted(names or found):
        data = found[name].get("data") or {}
        metrics = {m: ((data.get("metrics") or {}).get(f"metrics/{m}.json") or {}).get("data") for m in METRIC_FILES}
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        predictions = dvc.api.read("outputs/predictions.csv", repo=repo, rev=found[name]["rev"])
        runs.append(make_run(name, params, {m: v for m, v in metrics.items() if v}, predictions))
    return runs


def same(new, old) -> bool:
    """The same runs, params, metrics and predictions. DVC's table is JSON (mapping keys become strings)
    and drops list values from metrics (a confusion matrix comes back None): those are compared as such."""
    def agree(x, y):
        return (json.loads(json.dumps(x.params)) == y.params and x.predictions.equals(y.predictions)
                and all(x.metrics[f].get(k) == v for f in y.metrics for k, v in y.metrics[f].items() if v is not None))
    return [r.name for r in new] == [r.name for r in old] and all(agree(x, y) for x, y in zip(new, old))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=".")
    parser.add_argument("--names", nargs="*", default=None, help="experiments to read (default: all finished)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        new = dvc_experiments(args.repo, args.names)
        t_new = time.perf_counter() - start
        start = time.perf_counter()
        old = old_reader(args.repo, args.names)
        t_old = time.perf_counter() - start
        if not same(new, old):
            print("the two readers disagree: not timing them", file=sys.stderr)
            return 1
        rows.append((len(new), t_old, t_new))
    print("| experiments | old reader (s) | this reader (s) | old / new |")
    print("|---:|---:|---:|---:|")
    for n, t_old, t_new in rows:
        print(f"| {n} | {t_old:.1f} | {t_new:.1f} | {t_old / t_new:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
