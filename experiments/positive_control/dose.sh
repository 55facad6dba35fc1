#!/usr/bin/env bash
# Dose-response on the positive-control base: task and in_domain at more MLM budgets, next to the
# grid's 2M-token runs (grid.sh) and its `none` baseline, compared with `compare --by pretrain.max_tokens`.
# Same recipe as grid.sh; only pretrain.max_tokens changes. Run from the project root after grid.sh:
#     bash experiments/positive_control/dose.sh
#     VALUES="250000 1000000 4000000" SEEDS="1 2 3" bash experiments/positive_control/dose.sh
#     STRATEGIES=in_domain VALUES=1000000 bash experiments/positive_control/dose.sh   # one point
set -euo pipefail
ROOT=$(pwd)
HERE=$ROOT/experiments/positive_control
SHARED=${SHARED:-$(cd "$ROOT/../shared" && pwd)}
[ -f "$HERE/model/model.safetensors" ] || { echo "no base model: run 'dvc repro' in $HERE first" >&2; exit 2; }
grid=()   # the grid's finished runs: none (every seed) and the 2M-token points
for seed in 1 2 3; do for s in none task in_domain; do grid+=("control-$s-seed$seed"); done; done
COMMON_ARGS="-S task.dataset=$SHARED/data/imdb -S task.demo.train=1000 -S task.demo.dev=1000 -S task.demo.test=5000
  -S model.name=$HERE/model -S model.max_length=256 -S collect.corpora_dir=$HERE/.grid/corpora
  -S pretrain.lr=5e-4 -S pretrain.eval_max_tokens=50000 -S finetune.lr=3e-4 -S finetune.epochs=6 -S finetune.patience=0" \
PREFIX=dose STRATEGIES=${STRATEGIES:-"task in_domain"} SEEDS=${SEEDS:-1} BY=pretrain.max_tokens VALUES=${VALUES:-"250000 1000000 4000000"} \
CORPORA_OUT=$HERE/.grid/corpora OUT=${OUT:-$HERE/reports-dose} SHARED=$SHARED EXTRA_EXPS="${grid[*]}" \
  bash "$ROOT/experiments/grid.sh"
