#!/usr/bin/env bash
# Issue 14, item 6: does the fine-tuning recipe under-train small tasks at 3 epochs, and does
# early stopping on dev (finetune.patience) fix it? The baseline strategy (`none`: the encoder
# fine-tuned as shipped) on two tasks, each with the old default of 3 epochs and with the new one,
# at most 6 epochs stopped after 2 without a better dev accuracy (the best dev epoch kept in both).
#   - the embedded IMDB demo (the defaults: demo/imdb, all-MiniLM-L6-v2, max_length 256);
#   - Amazon product reviews (experiments/tasks/amazon.py): 1000 train / 1000 dev / 2000 test.
#     bash experiments/patience.sh            # SEEDS="1 2 3" for more seeds
set -euo pipefail
ROOT=$(pwd)
WORK=$ROOT/experiments/.patience            # git-ignored: compare outputs
[ -f "$ROOT/experiments/tasks/amazon/train.jsonl.gz" ] || python -m experiments.tasks.amazon --out "$ROOT/experiments/tasks/amazon"
AMAZON="-S task.dataset=$ROOT/experiments/tasks/amazon -S task.dev_size=0.2 -S task.demo.test=2000"
for recipe in "3 0" "6 2"; do
  set -- $recipe
  for task in imdb amazon; do
    args="-S finetune.lr=2e-5 -S finetune.epochs=$1 -S finetune.patience=$2"
    [ "$task" = amazon ] && args="$args $AMAZON"
    COMMON_ARGS="$args" PREFIX="patience-$task-e$1p$2" STRATEGIES=none SEEDS=${SEEDS:-1} \
      OUT="$WORK/$task-e$1p$2" bash "$ROOT/experiments/grid.sh"
  done
done
for task in imdb amazon; do
  names=(); for seed in ${SEEDS:-1}; do names+=("patience-$task-e3p0-none-seed$seed" "patience-$task-e6p2-none-seed$seed"); done
  python -m pipeline.compare --exps "${names[@]}" --by finetune.epochs --out "$WORK/$task"
  for seed in ${SEEDS:-1}; do
    python -m experiments.paired "patience-$task-e6p2-none-seed$seed" "patience-$task-e3p0-none-seed$seed"
  done
done
