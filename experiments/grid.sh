#!/usr/bin/env bash
# Run a grid of DVC experiments through the project's queue, then `compare` them.
# Every experiment gets COMMON_ARGS (the recipe shared by the whole grid), then
# -S pretrain.source=<strategy> -S seed=<seed> and, when VALUES is set, -S <BY>=<value>.
# Run from the project root; the caller sets (environment):
#   PREFIX       experiment name prefix (names are PREFIX-<strategy>[-<BY value>]-seed<seed>)
#   COMMON_ARGS  the -S options shared by all runs (one string, word-split; no spaces inside values)
#   STRATEGIES   default "none task in_domain cross_domain";  SEEDS  default "1 2 3"
#   BY, VALUES   optional: a param crossed with the strategies, e.g. BY=pretrain.max_tokens VALUES="500000 1000000"
#   OUT          folder for compare's outputs;  EXTRA_EXPS  finished experiments to add to the comparison
#   SHARED       the shared data folder (default ../shared); CORPORA_OUT  where its corpora/local copy goes
#   RECORDS      optional: a folder of run records (pipeline.records) that outlives this clone, e.g. one committed
#                with the code: each run is exported to it as it finishes, a name with a record there is not run
#                again (on a new machine too), and compare reads the records (EXTRA_EXPS is then not read)
#   COMPARE      default 1; 0 runs and exports the grid without comparing it (a part of a larger analysis that is
#                run once all its runs are in, e.g. a pre-registered one whose results are not to be read early)
# Queued experiments run in temporary copies of the repository, so every local path handed to them must be
# absolute: `local_corpora` writes a copy of corpora/local with absolute paths to CORPORA_OUT.
# Running it again resumes it: a name that is already an experiment of this commit (`dvc exp list`) is not queued
# again, only compared, so a grid cut off part-way (a closed laptop, a lost node) costs only the run it was in;
# the tasks its dead queue worker left "Queued" or "Running" are cleared first (below).
# Drop a finished run with `dvc exp remove NAME` to run it again.
set -euo pipefail
: "${PREFIX:?set PREFIX}" "${COMMON_ARGS:?set COMMON_ARGS}" "${OUT:?set OUT}"
ROOT=$(pwd)
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
SEEDS=${SEEDS:-"1 2 3"}
STRATEGIES=${STRATEGIES:-"none task in_domain cross_domain"}
VALUES=${VALUES:-"-"}
if [ -n "${CORPORA_OUT:-}" ]; then
  mkdir -p "$CORPORA_OUT"
  for f in "$ROOT"/corpora/local/*.yaml; do
    sed "s#path: \.\./shared/#path: $SHARED/#" "$f" > "$CORPORA_OUT/$(basename "$f")"
  done
fi
POLL=${POLL:-30}  # seconds between looks at the queue
existing=" $(dvc exp list --name-only 2>/dev/null | tr '\n' ' ') "
if [ -n "${RECORDS:-}" ]; then
  mkdir -p "$RECORDS"
  recorded=$(find "$RECORDS" -maxdepth 1 -name "$PREFIX-*.json" -printf '%f\n' | sed 's/\.json$//')
  existing="$existing$(tr '\n' ' ' <<< "$recorded") "
fi
# export this grid's finished runs to RECORDS, when an experiment has finished since the last look (refs/exps)
exported=-1
export_new() {
  [ -n "${RECORDS:-}" ] || return 0
  local n; n=$(git for-each-ref refs/exps 2>/dev/null | wc -l)
  [ "$n" = "$exported" ] && return 0
  python -m pipeline.records --repo . --prefix "$PREFIX-" --out "$RECORDS" && exported=$n
}
# This project's queue worker, by its process: DVC names it dvc-exp-<first 6 hex of the sha256 of its celery
# folder>-<n>@localhost (dvc/repo/experiments/queue/celery.py). `dvc queue status` asks the worker over celery, and
# a worker that has begun to shut down (it does as soon as the queue is empty, its last task still running) no
# longer answers: the status then lists no running task and "0 active" for the minutes that last run still takes.
# Its process tells the truth (this ended the 2026-12-05 few-label grid at a group's last run, before its result).
node="dvc-exp-$(printf %s "$(pwd -P)/.dvc/tmp/exps/celery" | sha256sum | cut -c1-6)-"
worker_alive() { pgrep -f "exp queue-worker $node" >/dev/null; }
# A queue worker that died with its machine leaves this grid's tasks "Queued", and the one it was in "Running",
# with no worker: with no worker alive, clear them (kill marks a Running one failed, then it is removed), so the
# unfinished ones are queued once below and none runs twice. Only names with this grid's PREFIX are touched.
st=$(dvc queue status 2>/dev/null || true)
if ! worker_alive && grep -q "Worker status: 0 active" <<< "$st"; then
  while read -r task state; do
    [ "$state" = Running ] && dvc queue kill "$task" >/dev/null 2>&1 || true
    dvc queue remove "$task" >/dev/null 2>&1 || true
    echo "cleared task $task ($state with no worker)"
  done < <(awk -v p="$PREFIX-" 'index($2, p) == 1 && ($NF == "Queued" || $NF == "Running") {print $1, $NF}' <<< "$st")
fi
names=()
for seed in $SEEDS; do    # seed-major: the first results already cover every strategy
  for v in $VALUES; do
    for s in $STRATEGIES; do
      name="$PREFIX-$s-seed$seed"; by=()
      if [ "$v" != "-" ]; then name="$PREFIX-$s-$v-seed$seed"; by=(-S "$BY=$v"); fi
      names+=("$name")
      if [[ "$existing" == *" $name "* ]]; then echo "$name: already run, not queued again"; continue; fi
      # shellcheck disable=SC2086  # COMMON_ARGS is a word list by design
      dvc exp run --queue -n "$name" $COMMON_ARGS "${by[@]}" -S pretrain.source="$s" -S seed="$seed"
    done
  done
done
start=$(date +%s)
dvc queue start -j 1
# Wait while a task is queued, or this project's worker process lives, or a task runs with a worker answering: a
# task left "Running" by a worker that died with its machine has no worker, and would otherwise hold the wait for
# ever (`dvc queue remove TASK` clears it).
# (the status is read once into a variable: grep reads a here-string, not dvc's pipe, so -q is safe under pipefail)
busy() {
  local st; st=$(dvc queue status 2>/dev/null || true)
  grep -q Queued <<< "$st" && return 0
  worker_alive && return 0
  grep -q Running <<< "$st" && ! grep -q "Worker status: 0 active" <<< "$st"
}
while busy; do export_new || true; sleep "$POLL"; done
echo "grid wall time: $(( $(date +%s) - start )) s"
dvc queue status
if [ -n "${RECORDS:-}" ]; then exported=-1; export_new; fi  # the last runs' records too
[ "${COMPARE:-1}" = 0 ] && exit
by_arg=()
[ "$VALUES" != "-" ] && by_arg=(--by "$BY")
if [ -n "${RECORDS:-}" ]; then
  records=(); for name in "${names[@]}"; do records+=("$RECORDS/$name.json"); done
  python -m pipeline.compare --runs "${records[@]}" --out "$OUT" "${by_arg[@]}"
  exit
fi
# shellcheck disable=SC2086
python -m pipeline.compare --exps "${names[@]}" ${EXTRA_EXPS:-} --out "$OUT" "${by_arg[@]}"
