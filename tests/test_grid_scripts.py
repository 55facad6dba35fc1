"""The registered grid scripts queue the recipe their registration names (docs/results.md): run with stand-ins
for `dvc` and `python` that record their arguments, nothing is trained."""

import os
import re
import subprocess

from fixtures import ROOT


def fixed_epochs(steps, labels, batch):
    out = subprocess.run(["bash", "-c", f'source experiments/fixed_steps.sh && fixed_epochs {steps} {labels} {batch}'],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout)


def stand_ins(tmp_path, dvc_answers: str = ""):
    """Stand-ins for `dvc` and `python` on a PATH folder: each records its arguments in a log, and `dvc` then
    runs `dvc_answers` (shell lines that may print what a subcommand would). Returns (PATH folder, log)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool, answers in (("dvc", dvc_answers), ("python", "")):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n{answers}')
        (bin_dir / tool).chmod(0o755)
    return bin_dir, log


def test_fixed_epochs_are_the_registered_ones():
    # 210 steps at batch 16: 105, 30 and 4 epochs at 32, 100 and 1,000 labels (docs/results.md); a partial
    # last batch is a step
    assert [fixed_epochs(210, n, 16) for n in (32, 100, 1000)] == [105, 30, 4]
    assert fixed_epochs(210, 16, 16) == 210 and fixed_epochs(210, 17, 16) == 105 and fixed_epochs(1, 1000, 16) == 1


def test_prompt_words_grid_queues_the_primaries_first_with_the_registered_recipe(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    bin_dir, log = stand_ins(tmp_path)  # `dvc queue status` then reports an empty queue
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "BASE": str(base), "SHARED": str(tmp_path),
           "LABELS": "32 1000", "SEEDS": "1 2"}
    subprocess.run(["bash", "experiments/prompt_words/grid.sh"], cwd=ROOT, env=env, check=True, capture_output=True)
    calls = log.read_text().splitlines()
    queued = [c for c in calls if c.startswith("dvc exp run --queue")]
    names = [re.search(r"-n (\S+)", c).group(1) for c in queued]
    assert len(queued) == 2 * 2 * 3 * 2  # labels x classifiers x arms x seeds
    # the smallest label count first; in it P1's arm (none: prompt, flat), then P2's (task-tpl), then task
    assert names[:8] == ["pw-32-prompt-none-seed1", "pw-32-prompt-none-seed2", "pw-32-flat-none-seed1",
                         "pw-32-flat-none-seed2", "pw-32-prompt-tpl-task-seed1", "pw-32-prompt-tpl-task-seed2",
                         "pw-32-flat-tpl-task-seed1", "pw-32-flat-tpl-task-seed2"]
    for name, call in zip(names, queued):
        labels, model = re.match(r"pw-(\d+)-(prompt|flat)", name).groups()
        assert f"finetune.model={model}" in call and f"task.demo.train={labels}" in call
        assert f"finetune.epochs={105 if labels == '32' else 4}" in call
        assert f"pretrain.prompt_corpus={'true' if '-tpl-' in name else 'false'}" in call
        assert f"pretrain.source={'none' if '-none-' in name else 'task'}" in call
        for fixed in ("finetune.lr=2e-5", "finetune.keep=last", "finetune.patience=0", "task.demo.test=5000",
                      "pretrain.max_tokens=1000000", "pretrain.lr=1e-4", "model.max_length=128", f"model.name={base}"):
            assert fixed in call
    # the two primaries, Holm over both, read from the compare reports the script writes
    holm = [c for c in calls if c.startswith("python -m pipeline.holm")]
    assert len(holm) == 1 and "prompt-vs-flat/none/compare-by-task.demo.train.json:32:prompt" in holm[0]
    assert "mlm/prompt-task-tpl/compare-by-task.demo.train.json:32:task" in holm[0]


def test_grid_resumes_skipping_finished_runs_and_a_dead_workers_task(tmp_path):
    # A grid cut off part-way is run again: the names `dvc exp list` already holds are compared but not queued
    # again, and a task a dead worker left "Running" (no active worker) does not hold the wait for ever
    bin_dir, log = stand_ins(tmp_path, dvc_answers="""case "$1 $2" in
  "exp list") printf 'g-none-seed1\\ng-task-seed1x\\n' ;;
  "queue status") printf 'Task  Name  Created  Status\\nabc  g-none-seed9  07:46 AM  Running\\n\\nWorker status: 0 active, 0 idle\\n' ;;
esac
""")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SHARED": str(tmp_path), "PREFIX": "g",
           "COMMON_ARGS": "-S seed=0", "OUT": str(tmp_path / "out"), "STRATEGIES": "none task", "SEEDS": "1 2"}
    subprocess.run(["bash", "experiments/grid.sh"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    calls = log.read_text().splitlines()
    queued = [re.search(r"-n (\S+)", c).group(1) for c in calls if c.startswith("dvc exp run --queue")]
    assert queued == ["g-task-seed1", "g-none-seed2", "g-task-seed2"]  # g-none-seed1 exists; g-task-seed1x is not it
    compare = [c for c in calls if c.startswith("python -m pipeline.compare")]
    assert len(compare) == 1 and "--exps g-none-seed1 g-task-seed1 g-none-seed2 g-task-seed2 --out" in compare[0]
    # the dead worker's task is cleared before anything is queued: killed (it was Running), then removed
    first_queue = next(i for i, c in enumerate(calls) if c.startswith("dvc exp run --queue"))
    assert calls.index("dvc queue kill abc") < calls.index("dvc queue remove abc") < first_queue


def test_grid_clears_only_its_own_stale_tasks_and_only_with_no_worker(tmp_path):
    # Queued and Running tasks of this grid's PREFIX are cleared when no worker is alive; another grid's tasks
    # and finished ones are left; with a live worker nothing is cleared (the queue is running them)
    status = ("Task  Name  Created  Status\\nq1  g-task-seed2  07:46 AM  Queued\\nr1  g-none-seed2  07:46 AM  Running\\n"
              "o1  other-none-seed1  07:46 AM  Queued\\ns1  g-none-seed1  07:40 AM  Success\\n\\nWorker status: {} active, 0 idle\\n")
    for workers, cleared in (("0", ["dvc queue kill r1", "dvc queue remove q1", "dvc queue remove r1"]), ("1", [])):
        case = tmp_path / workers
        case.mkdir()
        # the status answers `workers` active the first time, then an empty queue (so the wait ends)
        bin_dir, log = stand_ins(case, dvc_answers=f"""case "$1 $2" in
  "queue status") if [ ! -e {case}/asked ]; then touch {case}/asked; printf '{status.format(workers)}'; else
    printf 'Worker status: 0 active, 0 idle\\n'; fi ;;
esac
""")
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SHARED": str(case), "PREFIX": "g",
               "COMMON_ARGS": "-S seed=0", "OUT": str(case / "out"), "STRATEGIES": "none task", "SEEDS": "1 2"}
        subprocess.run(["bash", "experiments/grid.sh"], cwd=ROOT, env=env, check=True, capture_output=True,
                       timeout=120)
        calls = log.read_text().splitlines()
        assert sorted(c for c in calls if c.startswith(("dvc queue kill", "dvc queue remove"))) == cleared


def test_grid_waits_for_a_worker_that_stopped_answering_the_status(tmp_path):
    # DVC's temporary worker begins to shut down once the queue is empty, its last task still running, and from then
    # on `dvc queue status` lists no task and "0 active" (it asks the worker over celery). The wait must hold until
    # the worker's process ends, or compare reads a grid without its last run (what ended a real grid).
    import hashlib
    import sys

    node = "dvc-exp-" + hashlib.sha256(os.path.realpath(ROOT / ".dvc/tmp/exps/celery").encode()).hexdigest()[:6]
    finished = tmp_path / "finished"
    worker = (f"{sys.executable} -c 'import sys, time; time.sleep(3); open(sys.argv[1], \"w\").write(\"g-none-seed1\\\\n\")' "
              f"{finished} exp queue-worker {node}-1@localhost")
    bin_dir, log = stand_ins(tmp_path, dvc_answers=f"""case "$1 $2" in
  "exp list") cat {finished} 2>/dev/null || true ;;
  "queue start") {worker} >/dev/null 2>&1 & ;;
  "queue status") printf 'Task  Name  Created  Status\\n\\nWorker status: 0 active, 0 idle\\n' ;;
esac
""")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SHARED": str(tmp_path), "PREFIX": "g",
           "COMMON_ARGS": "-S seed=0", "OUT": str(tmp_path / "out"), "STRATEGIES": "none", "SEEDS": "1", "POLL": "0.2"}
    subprocess.run(["bash", "experiments/grid.sh"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    calls = log.read_text().splitlines()
    assert any(c.startswith("python -m pipeline.compare --exps g-none-seed1") for c in calls)
    # the worker's run had finished when the wait ended: the status was asked again after it wrote its result
    statuses = [i for i, c in enumerate(calls) if c == "dvc queue status"]
    assert finished.exists() and len(statuses) > 3, calls


def test_grid_with_records_skips_recorded_runs_exports_finished_ones_and_compares_the_records(tmp_path):
    # RECORDS outlives the clone (it is committed): a run recorded there is not run again on a new machine, each
    # finished run is exported to it, and compare reads the records, the ones of earlier machines included
    records = tmp_path / "records"
    records.mkdir()
    (records / "g-none-seed1.json").write_text("{}")
    (records / "other-task-seed2.json").write_text("{}")  # another grid's: not this one's business
    bin_dir, log = stand_ins(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SHARED": str(tmp_path), "PREFIX": "g",
           "COMMON_ARGS": "-S seed=0", "OUT": str(tmp_path / "out"), "STRATEGIES": "none task", "SEEDS": "1 2",
           "RECORDS": str(records)}
    subprocess.run(["bash", "experiments/grid.sh"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    calls = log.read_text().splitlines()
    queued = [re.search(r"-n (\S+)", c).group(1) for c in calls if c.startswith("dvc exp run --queue")]
    assert queued == ["g-task-seed1", "g-none-seed2", "g-task-seed2"]
    export = f"python -m pipeline.records --repo . --prefix g- --out {records}"
    exports = [i for i, c in enumerate(calls) if c == export]
    compare = [i for i, c in enumerate(calls) if c.startswith("python -m pipeline.compare")]
    assert exports and len(compare) == 1 and exports[-1] < compare[0]
    wanted = " ".join(f"{records}/g-{s}-seed{n}.json" for n in (1, 2) for s in ("none", "task"))
    assert f"python -m pipeline.compare --runs {wanted} --out" in calls[compare[0]]
    # COMPARE=0 (part of a larger analysis run once all its runs are in): the same runs and exports, no compare
    log.unlink()
    subprocess.run(["bash", "experiments/grid.sh"], cwd=ROOT, env={**env, "COMPARE": "0"}, check=True,
                   capture_output=True, timeout=120)
    calls = log.read_text().splitlines()
    assert export in calls and not any(c.startswith("python -m pipeline.compare") for c in calls)


def test_few_label_queues_the_registered_recipe_and_skips_runs_recorded_in_git(tmp_path):
    # experiments/few_label.sh's defaults are the pre-registered replication (docs/results.md); a run with a record
    # in RECORDS (committed with the code) is not run again, so the grid resumes on a machine that has only git
    records = tmp_path / "records"
    records.mkdir()
    (records / "fewlabel-d1-p1-none-100-seed1.json").write_text("{}")
    bin_dir, log = stand_ins(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SHARED": str(tmp_path), "MODEL_DIR": "/m",
           "RECORDS": str(records), "SEEDS": "1 2"}
    subprocess.run(["bash", "experiments/few_label.sh"], cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=120)
    queued = [c for c in log.read_text().splitlines() if c.startswith("dvc exp run --queue")]
    names = [re.search(r"-n (\S+)", c).group(1) for c in queued]
    # 2 draws; MLM seed 1: none, task, in_domain; MLM seed 2: task, in_domain (none trains no MLM); a pretrained
    # model at a time: all seeds of one strategy before the next
    assert names[:5] == ["fewlabel-d1-p1-none-100-seed2", "fewlabel-d1-p1-task-100-seed1",
                         "fewlabel-d1-p1-task-100-seed2", "fewlabel-d1-p1-in_domain-100-seed1",
                         "fewlabel-d1-p1-in_domain-100-seed2"]
    assert names[5:7] == ["fewlabel-d1-p2-task-100-seed1", "fewlabel-d1-p2-task-100-seed2"]
    assert len(names) == 2 * (3 + 2) * 2 - 1 and "fewlabel-d1-p1-none-100-seed1" not in names
    assert sum("-none-" in n for n in names) == 3 and not any(re.match(r"fewlabel-d\d-p2-none", n) for n in names)
    # no group is compared while the grid runs: the registered analysis reads the records once all are in
    assert not any(c.startswith("python -m pipeline.compare") for c in log.read_text().splitlines())
    for name, call in zip(names, queued):
        draw, pseed = re.match(r"fewlabel-d(\d)-p(\d)-", name).groups()
        for fixed in ("task.demo.train=100", "task.demo.dev=100", "task.demo.test=5000", f"task.demo.train_seed={draw}",
                      f"pretrain.seed={pseed}", "pretrain.max_tokens=2000000", "pretrain.head_warmup_tokens=200000",
                      "finetune.lr=2e-5", "finetune.batch_size=16", "finetune.epochs=30", "finetune.patience=0",
                      "finetune.keep=last", "model.max_length=128", "model.name=/m"):
            assert fixed in call.split(), (fixed, name)
